"""A backend with fixed data, for driving every screen without DuckDB,
SQLite or a network, and a scripted engine event stream."""

from __future__ import annotations

import asyncio
import csv
import re
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from connector.events import (
    BatchSent,
    Event,
    JobFinished,
    PhaseStarted,
    PlanReady,
    PreviewReady,
    RateLimitWait,
    RowsRejected,
    RunFinished,
    RunStarted,
)
from connector.findings import Finding
from connector.models import Check, ContactList, SyncStatus
from store.records import (
    Batch,
    Column,
    Destination,
    FieldMapping,
    Person,
    PlanRecord,
    RejectedRecord,
    Run,
    RunDetail,
    Segment,
    SegmentCount,
    SyncAlert,
    SyncEvent,
)
from tui.backend import (
    BackendError,
    DestinationForm,
    DestinationRow,
    ExportSettings,
    PlanReview,
    SyncForm,
    WorkspaceChoice,
)

NOW = datetime(2026, 11, 28, 9, 30)
LONG_NAME = "Maximiliane-Alexandra-Konstantina von Hohenzollern-Sigmaringen"

COLUMNS = [
    Column("customer_id", "BIGINT"),
    Column("email", "VARCHAR"),
    Column("first_name", "VARCHAR"),
    Column("last_name", "VARCHAR"),
    Column("country", "VARCHAR"),
    Column("email_opt_in", "BOOLEAN"),
    Column("lifetime_value", "DOUBLE"),
]
ROWS = [
    {
        "customer_id": 1,
        "email": "anna@example.com",
        "first_name": "Anna",
        "last_name": "Schmidt",
        "country": "DE",
        "email_opt_in": True,
        "lifetime_value": 812.5,
    },
    {
        "customer_id": 2,
        "email": "JOSE@example.com ",
        "first_name": "José",
        "last_name": LONG_NAME,
        "country": "ES",
        "email_opt_in": True,
        "lifetime_value": 40.0,
    },
    {
        "customer_id": 3,
        "email": None,
        "first_name": "美咲",
        "last_name": "佐藤",
        "country": "JP",
        "email_opt_in": False,
        "lifetime_value": 1200.0,
    },
]
SEGMENTS = [
    Segment("high_value", "lifetime_value >= 500", "Customers who spent 500 or more"),
    Segment("newsletter_de", "email_opt_in AND country = 'DE'", "German newsletter"),
    Segment("broken", "lifetime_valu > 1", "A typo in the column name"),
]
COUNTS = [
    SegmentCount("high_value", 1240),
    SegmentCount("newsletter_de", 388),
    SegmentCount(
        "broken",
        None,
        'Binder Error: Referenced column "lifetime_valu" '
        'not found in FROM clause! Candidate bindings: "lifetime_value"',
    ),
]
PLAN_COUNTS = {
    "selected": 1500,
    "no_consent": 120,
    "no_email": 12,
    "invalid_email": 9,
    "too_long": 3,
    "duplicate": 16,
    "unchanged": 0,
    "skipped": 0,
    "to_send": 1340,
    "to_remove": 0,
}


def sync_status(
    sync_id: int,
    name: str,
    destination: str,
    segments: tuple[str, ...],
    mode: str,
    trigger: str,
    **state: Any,
) -> SyncStatus:
    """A line of the syncs table; ``state``: paused, running, last_*, next_run_at, ..."""
    return SyncStatus(
        id=sync_id,
        name=name,
        destination=destination,
        workspace="sample_data",
        segments=segments,
        mode=mode,
        incremental=False,
        trigger=trigger,
        last_success_at=None,
        **state,
    )


def sync_alert(
    sync_id: int, sync: str, result: str, at: datetime, run_id: int | None, message: str
) -> SyncAlert:
    """A failure of sync ``sync_id`` nobody acknowledged, as history returns it."""
    event = SyncEvent(
        sync_id * 100, sync_id, "run", result, at, None, 1, run_id, message, True, None
    )
    return SyncAlert(sync_id, sync, event)


def sample_syncs() -> list[SyncStatus]:
    """A failed nightly cron sync, an interval one that worked, a paused one
    waiting for a refresh that never ran."""
    return [
        sync_status(
            1,
            "nightly",
            "Newsletter",
            ("high_value",),
            "upsert",
            "cron 0 2 * * * (Europe/Berlin)",
            paused=False,
            running=False,
            last_attempt_at=datetime(2026, 11, 28, 2, 0),
            last_result="refused",
            last_run_id=7,
            last_message="would remove 420 contacts; at most 100 allowed (--allow-removals)",
            next_run_at=datetime(2026, 11, 29, 2, 0),
            waiting_for="",
            alerts=1,
        ),
        sync_status(
            2,
            "hourly_de",
            "Demo",
            ("newsletter_de",),
            "upsert",
            "every 1h",
            paused=False,
            running=False,
            last_attempt_at=datetime(2026, 11, 28, 9, 0),
            last_result="succeeded",
            last_run_id=5,
            last_message="",
            next_run_at=datetime(2026, 11, 28, 10, 0),
            waiting_for="",
            alerts=0,
        ),
        sync_status(
            3,
            "on_change",
            "Newsletter",
            ("high_value", "newsletter_de"),
            "mirror",
            "on refresh",
            paused=True,
            running=False,
            last_attempt_at=None,
            last_result=None,
            last_run_id=None,
            last_message="",
            next_run_at=None,
            waiting_for="the next change of the profile source",
            alerts=0,
        ),
    ]


PLAN_ID = 7  # the plan every scripted preview stores
PEOPLE = [
    Person("anna@example.com", "1", "added", None),
    Person("old@example.com", None, "removed", None),
    Person("bad@@example", "17", "rejected", "invalid_email: not an email address"),
]


EVERY = re.compile(r"\d+[smhdw]")


def preview_events(run_id: int, settings: ExportSettings) -> list[Event]:
    return [
        RunStarted(run_id, "Newsletter", settings.segments, settings.mode, True),
        PhaseStarted(run_id, "planning"),
        PlanReady(run_id, PLAN_COUNTS, 1),
        PreviewReady(
            run_id,
            PLAN_COUNTS,
            (
                {"email": "anna@example.com", "first_name": "Anna", "country": "DE"},
                {"email": "jose@example.com", "first_name": "José", "country": "ES"},
            ),
            (
                ("bad@@example", "invalid_email", "not an email address"),
                ("", "no_email", ""),
                ("jose2@example.com", "too_long", "last_name is 62 characters, at most 50"),
            ),
            '{"list_ids":["list-1"],"contacts":[{"email":"anna@example.com"}]}',
            plan_id=PLAN_ID,
        ),
        RunFinished(run_id, "dry_run", PLAN_COUNTS, "", 0.4),
    ]


def export_events(run_id: int, settings: ExportSettings, undo_of: int | None = None) -> list[Event]:
    counts = dict(PLAN_COUNTS, sent=1340, created=1000, updated=338, errored=2)
    return [
        RunStarted(
            run_id,
            "Newsletter",
            settings.segments,
            settings.mode,
            False,
            resumed=settings.resume_run is not None,
            undo_of=undo_of,
        ),
        PhaseStarted(run_id, "planning"),
        PlanReady(run_id, PLAN_COUNTS, 2),
        PhaseStarted(run_id, "uploading", total=1340),
        BatchSent(run_id, 1, 1000, 91_000, "job-0001", 1000, 1340),
        RateLimitWait(run_id, 12.0, "PUT /v3/marketing/contacts"),
        BatchSent(run_id, 2, 340, 30_000, "job-0002", 1340, 1340),
        PhaseStarted(run_id, "confirming", total=2),
        JobFinished(run_id, 1, "job-0001", "completed", 800, 200, 0),
        JobFinished(run_id, 2, "job-0002", "errored", 200, 138, 2),
        RowsRejected(
            run_id,
            2,
            (("x@example.com", "invalid [email] value"), ("y@example.com", "invalid phone")),
        ),
        PhaseStarted(run_id, "recording"),
        RunFinished(run_id, "partial", counts, "2 rows were rejected by SendGrid.", 83.0),
    ]


def stored_run(
    run_id: int,
    destination: str,
    segments: tuple[str, ...],
    mode: str,
    dry_run: bool,
    status: str,
    started_at: datetime,
    ended_at: datetime | None,
    operator: str,
    counts: dict[str, int],
    destination_id: int,
    message: str | None = None,
) -> Run:
    """A run as history returns it, with what the screens do not show left plain."""
    return Run(
        id=run_id,
        destination_id=destination_id,
        destination_name=destination,
        segments=segments,
        mode=mode,
        incremental=False,
        dry_run=dry_run,
        status=status,
        config={},
        counts=counts,
        message=message,
        operator=operator,
        host="db-1",
        pid=4242,
        started_at=started_at,
        ended_at=ended_at,
        resumed_from=None,
    )


def stored_batch(
    run_id: int, seq: int, contacts: int, job_id: str, status: str, counts: tuple[int, int, int]
) -> Batch:
    """A finished batch; ``counts``: created, updated, errored."""
    return Batch(run_id, seq, contacts, contacts * 91, "", "", job_id, status, *counts, NOW, NOW)


def stored_plan(
    plan_id: int, kind: str, counts: dict[str, int], undo_of: int | None = None
) -> PlanRecord:
    """A plan for destination 1 (Newsletter) waiting to be applied."""
    return PlanRecord(
        id=plan_id,
        destination_id=1,
        destination_name="Newsletter",
        segments=("high_value",) if kind == "export" else (),
        mode="upsert",
        incremental=False,
        kind=kind,
        undo_of=undo_of,
        counts=counts,
        basis={},
        status="ready",
        applied_run_id=None,
        operator="ops",
        host="db-1",
        created_at=NOW,
    )


def stored_destination(
    destination_id: int,
    name: str,
    list_id: str,
    list_name: str,
    base_url: str = "http://127.0.0.1:8025",
    cap: int = 100_000,
    consent_by: str | None = None,
) -> Destination:
    """A destination as history returns it; consent recorded at NOW by ``consent_by``."""
    return Destination(
        id=destination_id,
        name=name,
        list_id=list_id,
        list_name=list_name,
        base_url=base_url,
        api_key_env=None,
        key_storage="file",
        cap=cap,
        consent_by=consent_by,
        consent_at=NOW if consent_by else None,
        consent_text="wording" if consent_by else None,
        created_at=NOW,
        removed_at=None,
    )


def with_destination(row: DestinationRow, **changes: Any) -> DestinationRow:
    """The row with some of its destination's fields changed."""
    return replace(row, destination=replace(row.destination, **changes))


@dataclass
class FakeBackend:
    """Fixed data; records what the app asked for so tests can assert on it."""

    workspace_label: str = "sample_data"
    destinations_data: list[DestinationRow] = field(
        default_factory=lambda: [
            DestinationRow(
                stored_destination(1, "Newsletter", "list-1", "Newsletter DE", consent_by="ops"),
                "SG.ab…3xYz",
                stored_run(
                    7,
                    "Newsletter",
                    ("high_value",),
                    "upsert",
                    False,
                    "succeeded",
                    NOW,
                    NOW,
                    "ops",
                    {},
                    1,
                ),
            ),
            DestinationRow(stored_destination(2, "Demo", "list-2", "Demo list"), "SG.cd…9qQq"),
        ]
    )
    # Newsletter's mapping is saved (the suggestion), Demo has none yet
    mappings: dict[int, FieldMapping] = field(
        default_factory=lambda: {
            1: FieldMapping(
                email="email",
                reserved={
                    "first_name": "first_name",
                    "last_name": "last_name",
                    "country": "country",
                },
                consent_column="email_opt_in",
            )
        }
    )
    runs_data: list[Run] = field(
        default_factory=lambda: [
            stored_run(
                7,
                "Newsletter",
                ("high_value",),
                "upsert",
                False,
                "partial",
                NOW,
                datetime(2026, 11, 28, 9, 31, 23),
                "ops",
                {"selected": 1500, "sent": 1340, "errored": 2},
                1,
            ),
            stored_run(
                6,
                "Newsletter",
                ("high_value", "newsletter_de"),
                "mirror",
                False,
                "interrupted",
                datetime(2026, 11, 27, 18, 5),
                None,
                "ops",
                {"selected": 1800, "to_send": 1700},
                1,
                message="the process stopped (killed?) during uploading; resume it",
            ),
            stored_run(
                5,
                "Demo",
                ("newsletter_de",),
                "upsert",
                True,
                "dry_run",
                datetime(2026, 11, 26, 8, 0),
                datetime(2026, 11, 26, 8, 0, 2),
                "ann",
                {"selected": 388, "to_send": 380},
                2,
            ),
        ]
    )
    saved_selections: dict[int, tuple[str, ...]] = field(default_factory=dict)
    exports: list[ExportSettings] = field(default_factory=list)
    undone: dict[int, int] = field(default_factory=dict)  # undo plan id -> run it undoes
    plans_read: list[int] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)
    plan_removals: int = 0  # how many people the stored plan would remove
    consents: list[tuple[int, str]] = field(default_factory=list)
    saved_forms: list[DestinationForm] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    events_for: Callable[[int, ExportSettings], list[Event]] | None = None
    event_delay: float = 0.0
    gate: threading.Event | None = None  # export waits for it before each batch
    syncs_data: list[SyncStatus] = field(default_factory=sample_syncs)
    # none by default: a banner over every screen would be in every snapshot
    sync_alerts_data: list[SyncAlert] = field(default_factory=list)
    acknowledged: list[tuple[int, ...]] = field(default_factory=list)
    added_syncs: list[SyncForm] = field(default_factory=list)
    syncs_run: list[int] = field(default_factory=list)
    sync_gate: threading.Event | None = None  # run_sync_now waits for it
    sync_result: str = "succeeded"  # what the next run_sync_now ends with
    sync_cancels: int = 0  # calls of cancel_sync_runs
    # what the account and the plan would refuse (cap, fields, guardrails...):
    # a test scripts them; mapping, segments and privacy are derived below
    account_findings: list[Finding] = field(default_factory=list)
    preflights: list[ExportSettings] = field(default_factory=list)
    preflight_gate: threading.Event | None = None  # preflight waits for it
    created_fields: list[int] = field(default_factory=list)
    caps: list[tuple[int, int]] = field(default_factory=list)
    # remembered between launches: the last call to remember() wins
    remembered_id: int | None = None
    remembered: list[tuple[int | None, tuple[str, ...]]] = field(default_factory=list)
    known_workspaces: list[str] = field(default_factory=lambda: ["/data/crm"])
    switched: list[str] = field(default_factory=list)
    remembered_selections: dict[tuple[str, int], tuple[str, ...]] = field(default_factory=dict)

    def remembered_destination(self) -> int | None:
        return self.remembered_id

    def remember(self, destination_id: int | None, segments: tuple[str, ...]) -> None:
        self.remembered.append((destination_id, segments))
        self.remembered_id = destination_id
        if destination_id is not None:
            key = (self.workspace_label, destination_id)
            self.remembered_selections[key] = segments

    def workspaces(self) -> list[WorkspaceChoice]:
        return [WorkspaceChoice(self.workspace_label, True)] + [
            WorkspaceChoice(p) for p in self.known_workspaces if p != self.workspace_label
        ]

    def switch_workspace(self, path: str) -> str:
        self.switched.append(path)
        if not path.startswith("/"):
            raise BackendError(f"{path}: not a workspace folder (no segments.toml)")
        self.workspace_label = path
        return path

    def destinations(self) -> list[DestinationRow]:
        return list(self.destinations_data)

    def list_contact_count(self, destination_id: int) -> int:
        if destination_id == 2:
            raise BackendError("SendGrid says: [access forbidden] check the key's scopes")
        return 4_210

    def account_lists(self, form: DestinationForm) -> list[ContactList]:
        if not form.api_key:
            raise BackendError("Enter the API key first.")
        return [ContactList("list-1", "Newsletter DE", 4210), ContactList("list-9", "VIP", 12)]

    def test_connection(self, form: DestinationForm) -> list[Check]:
        ok = form.api_key == "SG.good"
        return [
            Check(
                "API key",
                ok,
                "key accepted"
                if ok
                else "The provided authorization grant is invalid, expired, or revoked",
            ),
            Check("scopes", ok, "marketing.read, marketing.write" if ok else "not checked"),
            Check(
                "list",
                ok and form.list_id is not None,
                "Newsletter DE exists" if ok else "not checked",
            ),
        ]

    def save_destination(self, form: DestinationForm) -> DestinationRow:
        self.saved_forms.append(form)
        stored = [row.destination for row in self.destinations_data]
        if any(d.name == form.name and d.id != form.id for d in stored):
            raise BackendError(f"A destination named {form.name} exists; pick another name.")
        new_id = form.id or max(d.id for d in stored) + 1
        destination = stored_destination(
            new_id,
            form.name,
            form.list_id or "list-new",
            form.new_list_name or "Newsletter DE",
            form.base_url,
            form.cap,
        )
        row = DestinationRow(destination, "SG.go…good")
        self.destinations_data = [
            r for r in self.destinations_data if r.destination.id != new_id
        ] + [row]
        return row

    def record_consent(self, destination_id: int, wording: str) -> Destination:
        self.consents.append((destination_id, wording))
        consent = {"consent_by": "tester", "consent_at": NOW, "consent_text": wording}
        self.destinations_data = [
            with_destination(r, **consent) if r.destination.id == destination_id else r
            for r in self.destinations_data
        ]
        return next(
            r.destination for r in self.destinations_data if r.destination.id == destination_id
        )

    def remove_destination(self, destination_id: int) -> None:
        self.removed.append(destination_id)
        self.destinations_data = [
            r for r in self.destinations_data if r.destination.id != destination_id
        ]

    def segments(self) -> list[Segment]:
        return list(SEGMENTS)

    def segment_counts(self) -> list[SegmentCount]:
        return list(COUNTS)

    def union_count(self, names: tuple[str, ...]) -> int:
        if "broken" in names:
            raise BackendError("Segment broken fails: Referenced column lifetime_valu not found")
        return {("high_value",): 1240, ("newsletter_de",): 388}.get(names, 1500)

    def saved_selection(self, destination_id: int) -> tuple[str, ...]:
        remembered = self.remembered_selections.get((self.workspace_label, destination_id))
        if remembered is not None:
            return remembered
        return self.saved_selections.get(destination_id, ())

    def columns(self) -> list[Column]:
        return list(COLUMNS)

    def custom_fields(self, destination_id: int) -> list[str]:
        return ["lifetime_value"]

    def suggested_mapping(
        self, destination_id: int, custom_fields: Sequence[str] | None = None
    ) -> FieldMapping:
        return FieldMapping(
            email="email",
            reserved={"first_name": "first_name", "last_name": "last_name", "country": "country"},
            custom={},
            consent_column="email_opt_in",
        )

    def saved_mapping(self, destination_id: int) -> FieldMapping | None:
        return self.mappings.get(destination_id)

    def mapping(
        self, destination_id: int, custom_fields: Sequence[str] | None = None
    ) -> FieldMapping:
        return self.mappings.get(destination_id) or self.suggested_mapping(destination_id)

    def save_mapping(self, destination_id: int, mapping: FieldMapping) -> None:
        self.mappings[destination_id] = mapping

    def sample_rows(self, columns: tuple[str, ...], limit: int) -> list[dict[str, object]]:
        return [{c: row.get(c) for c in columns} for row in ROWS[:limit]]

    async def export(self, settings: ExportSettings, cancel: asyncio.Event) -> AsyncIterator[Event]:
        """Yields the scripted events; like the engine, stops at the next step
        once `cancel` is set and reports the run as cancelled."""
        self.exports.append(settings)
        run_id = 8 + len(self.exports)
        if self.events_for is not None:
            events = self.events_for(run_id, settings)
        elif settings.dry_run:
            events = preview_events(run_id, settings)
        else:
            undo_of = self.undone.get(settings.plan_id) if settings.plan_id else None
            events = export_events(run_id, settings, undo_of)
        for event in events:
            if self.gate is not None and isinstance(event, BatchSent):
                while not self.gate.is_set() and not cancel.is_set():
                    await asyncio.sleep(0.01)
            if cancel.is_set():
                yield RunFinished(run_id, "cancelled", {}, "cancelled by the user")
                return
            if self.event_delay:
                await asyncio.sleep(self.event_delay)
            yield event

    def preflight(self, settings: ExportSettings) -> list[Finding]:
        """Like the engine's checks: a saved mapping with a consent choice,
        segments, the privacy acknowledgment, then the scripted findings (a
        raised cap or an allowance clears the cap or removals finding)."""
        self.preflights.append(settings)
        if self.preflight_gate is not None:
            self.preflight_gate.wait(timeout=10)
        found: list[Finding] = []
        mapping = self.mappings.get(settings.destination_id)
        if mapping is None:
            found.append(Finding("mapping", "no field mapping saved yet", "map it first"))
        elif not mapping.consent_column and not mapping.no_consent_filter:
            found.append(Finding("consent_choice", "no consent column mapped", "choose"))
        elif not mapping.consent_column:
            found.append(
                Finding("no_consent_filter", "no consent filter", "recorded", blocking=False)
            )
        if not settings.segments:
            found.append(Finding("segments", "no segments selected", "pick some"))
        dest = next(
            r.destination
            for r in self.destinations_data
            if r.destination.id == settings.destination_id
        )
        if not dest.consented:
            found.append(Finding("privacy", "no data-privacy acknowledgment", "record it"))
        for finding in self.account_findings:
            amount = finding.amount or 0
            if finding.kind == "cap" and amount <= dest.cap:
                continue
            if finding.kind == "removals" and (settings.allow_removals or 0) >= amount:
                continue
            found.append(finding)
        return found

    def create_custom_fields(self, destination_id: int) -> tuple[str, ...]:
        self.created_fields.append(destination_id)
        names = tuple(
            n for f in self.account_findings if f.kind == "custom_fields" for n in f.names
        )
        self.account_findings = [f for f in self.account_findings if f.kind != "custom_fields"]
        return names

    def set_cap(self, destination_id: int, cap: int) -> Destination:
        self.caps.append((destination_id, cap))
        self.destinations_data = [
            replace(r, destination=replace(r.destination, cap=cap))
            if r.destination.id == destination_id
            else r
            for r in self.destinations_data
        ]
        return next(
            r.destination for r in self.destinations_data if r.destination.id == destination_id
        )

    def runs(self) -> list[Run]:
        return list(self.runs_data)

    def run_detail(self, run_id: int) -> RunDetail:
        run = next((r for r in self.runs_data if r.id == run_id), None)
        if run is None:
            raise BackendError(f"There is no run {run_id}.")
        values = {f.name: getattr(run, f.name) for f in fields(run)}
        values["config"] = {
            "segments": list(run.segments),
            "mode": run.mode,
            "incremental": False,
            "mapping": {"email": "email"},
        }
        return RunDetail(
            **values,
            batches=(
                stored_batch(run_id, 1, 1000, "job-0001", "completed", (800, 200, 0)),
                stored_batch(run_id, 2, 340, "job-0002", "errored", (200, 138, 2)),
            ),
            rejected=2,
        )

    def rejected_rows(self, run_id: int, limit: int) -> list[RejectedRecord]:
        return [
            RejectedRecord(run_id, 2, "17", "x@example.com", "invalid [email] value", "sendgrid"),
            RejectedRecord(run_id, None, "18", "", "no_email", "plan"),
        ][:limit]

    def write_rejected_csv(self, run_id: int, path: Path) -> int:
        rows = self.rejected_rows(run_id, 1000)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["key", "email", "reason", "batch"])
            for row in rows:
                writer.writerow([row.key, row.email, row.reason, row.seq or ""])
        return len(rows)

    # -- scheduled syncs: in memory, refusing what create_sync refuses ----------

    def syncs(self) -> list[SyncStatus]:
        return list(self.syncs_data)

    def sync_alerts(self) -> list[SyncAlert]:
        return list(self.sync_alerts_data)

    def acknowledge_sync_alerts(self, sync_ids: tuple[int, ...] = ()) -> None:
        self.acknowledged.append(sync_ids)
        self.sync_alerts_data = [
            a for a in self.sync_alerts_data if sync_ids and a.sync_id not in sync_ids
        ]
        self.syncs_data = [
            replace(s, alerts=0) if not sync_ids or s.id in sync_ids else s for s in self.syncs_data
        ]

    def add_sync(self, form: SyncForm) -> SyncStatus:
        self.added_syncs.append(form)
        if any(s.name == form.name for s in self.syncs_data):
            raise BackendError(f"A sync named {form.name} exists; pick another name.")
        if form.every is not None and not EVERY.fullmatch(form.every):
            raise BackendError(f"--every {form.every}: not an interval like 30m, 6h or 1d.")
        if form.cron is not None and len(form.cron.split()) != 5:
            raise BackendError(f"--cron {form.cron}: five fields, e.g. 0 6 * * *.")
        destination = next(
            r.destination for r in self.destinations_data if r.destination.id == form.destination_id
        )
        trigger = (
            f"every {form.every}"
            if form.every
            else f"cron {form.cron} (Europe/Berlin)"
            if form.cron
            else "on refresh"
        )
        info = sync_status(
            max((s.id for s in self.syncs_data), default=0) + 1,
            form.name,
            destination.name,
            form.segments,
            form.mode,
            trigger,
            paused=False,
            running=False,
            last_attempt_at=None,
            last_result=None,
            last_run_id=None,
            last_message="",
            next_run_at=None if form.on_refresh else datetime(2026, 11, 28, 15, 30),
            waiting_for="the next change of the profile source" if form.on_refresh else "",
            alerts=0,
        )
        self.syncs_data.append(info)
        return info

    def pause_sync(self, sync_id: int, paused: bool) -> None:
        if not any(s.id == sync_id for s in self.syncs_data):
            raise BackendError(f"There is no sync {sync_id}.")
        self.syncs_data = [
            replace(s, paused=paused) if s.id == sync_id else s for s in self.syncs_data
        ]

    def cancel_sync_runs(self) -> None:
        """Like the real runner: a run in progress ends cancelled, at once."""
        self.sync_cancels += 1
        self.sync_result = "cancelled"
        if self.sync_gate is not None:
            self.sync_gate.set()

    def run_sync_now(self, sync_id: int) -> str:
        """Blocks until `sync_gate` is set (when given), like a real run does
        for as long as the export takes."""
        self.syncs_run.append(sync_id)
        if self.sync_gate is not None:
            self.sync_gate.wait(timeout=10)
        sync = next(s for s in self.syncs_data if s.id == sync_id)
        run_id = 20 + len(self.syncs_run)
        failed = self.sync_result in ("failed", "refused", "rejected")
        message = "2 rows were rejected by SendGrid." if failed else ""
        self.syncs_data = [
            replace(
                s,
                last_attempt_at=NOW,
                last_result=self.sync_result,
                last_run_id=run_id,
                last_message=message,
                alerts=s.alerts + failed,
            )
            if s.id == sync_id
            else s
            for s in self.syncs_data
        ]
        return f"{sync.name}: {self.sync_result} (run {run_id})" + (
            f": {message}" if message else ""
        )

    # -- changesets ---------------------------------------------------------------

    def plan(self, plan_id: int) -> PlanReview:
        self.plans_read.append(plan_id)
        counts = {
            **PLAN_COUNTS,
            "to_add": PLAN_COUNTS["to_send"] - 40,
            "to_update": 40,
            "to_remove": self.plan_removals,
        }
        return PlanReview(
            stored_plan(plan_id, "export", counts),
            tuple(f"gone{i}@example.com" for i in range(min(self.plan_removals, 10))),
        )

    def undo_plan(self, run_id: int) -> PlanReview:
        counts = {"to_add": 1, "to_remove": 1, "to_update": 0, "updated_not_restored": 1}
        self.undone[PLAN_ID + 1] = run_id
        return PlanReview(
            stored_plan(PLAN_ID + 1, "undo", counts, undo_of=run_id), ("anna@example.com",)
        )

    def run_people(self, run_id: int, ops: tuple[str, ...] = (), limit: int = 500) -> list[Person]:
        return [p for p in PEOPLE if not ops or p.op in ops][:limit]

    def explain(
        self, destination_id: int, email: str | None = None, key: str | None = None
    ) -> dict[str, object]:
        self.explained.append(email or f"key:{key}")
        return {
            "email": email,
            "verdict": "would be sent: on the list; values changed, so it would be updated",
            "segments": {"germany": "country = 'DE'"},
            "consent_column": "email_opt_in",
            "rows": [
                {
                    "row": 0,
                    "key": "1",
                    "source_email": email,
                    "email": email,
                    "email_verdict": "valid",
                    "consent_value": True,
                    "consent_ok": True,
                    "segments": {"germany": True},
                    "fields": [],
                    "status": "to_send",
                    "detail": None,
                }
            ],
            "on_list": True,
            "since_run": 3,
            "runs": [{"run": 3, "op": "added", "reason": None}],
        }
