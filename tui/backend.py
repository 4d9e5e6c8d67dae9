"""What the terminal app needs from store/ and connector/, as plain data.

Screens never import DuckDB, SQLModel or httpx: they call a `Backend` from a
thread worker and render plain records. That keeps the first paint fast
(nothing heavy is imported until a worker needs it), keeps the UI loop free
(every call here may block on disk or network), and lets tests drive every
screen with a fake backend holding fixed data.

The records are the store's and connector's own (`store.records`,
`connector.models`, standard library only), never copies of them. The few
types below hold what no record does: a form being filled in, a table row
joining a record with what only that screen shows, the apply question's plan
with its sample of removals; and `ExportSettings`, the export the app asks
for, which `LocalBackend.export` turns into the engine's `ExportRequest`
once it has saved the selection (never a mapping: only one the user saved
is used).

The real implementation, wired to store/ and connector/, is
`tui.local_backend.LocalBackend`; it is imported lazily by `tui.app.run_app`.
`export` is the one async call: it yields the engine's events and stops
early (recording the run as cancelled) once `cancel` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from store.limits import EMAIL_MAX_LENGTH, RESERVED_FIELD_LIMITS

if TYPE_CHECKING:  # the records come from the backend; naming them builds none
    from connector.events import Event
    from connector.findings import Finding
    from connector.models import Check, ContactList, SyncStatus
    from store.records import (
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
    )

RESERVED_FIELDS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "country",
    "state_province_region",
    "city",
    "postal_code",
    "address_line_1",
    "address_line_2",
    "phone_number",
)
"""SendGrid's reserved contact fields, in the order the mapping screen shows them."""

FIELD_LIMITS: dict[str, int | None] = {"email": EMAIL_MAX_LENGTH, **RESERVED_FIELD_LIMITS}
"""Longest value SendGrid keeps per field (None: no stated limit), for highlighting."""


class BackendError(Exception):
    """A failure the user can act on; its message says what happened and what to do.

    Backends translate store/connector exceptions into this so screens can show
    the text as-is (never as markup, never as a traceback).
    """


@dataclass(frozen=True)
class DestinationRow:
    """A line of the Destinations screen: the stored destination with the two
    things only that screen shows, its API key as a masked hint (never the key)
    and its newest run. It carries the record rather than a copy of its fields."""

    destination: Destination
    key_hint: str  # e.g. "SG.ab…3xYz"
    last_run: Run | None = None


@dataclass(frozen=True)
class DestinationForm:
    """What the add/edit form collects: a draft, not a stored destination (it
    holds the typed key and maybe a list still to create). `api_key` is None
    when editing and the field was left empty (keep the stored key)."""

    name: str
    base_url: str
    api_key: str | None
    list_id: str | None  # an existing list
    new_list_name: str | None  # or a list to create
    cap: int
    id: int | None = None

    def __repr__(self) -> str:  # never show the key, even in a debugger
        return (
            f"DestinationForm(name={self.name!r}, base_url={self.base_url!r}, "
            f"api_key={'<set>' if self.api_key else None}, list_id={self.list_id!r}, "
            f"new_list_name={self.new_list_name!r}, cap={self.cap}, id={self.id})"
        )


@dataclass(frozen=True)
class WorkspaceChoice:
    """A workspace the state folder knows (used lately, or by a run or a sync)."""

    path: str
    current: bool = False


@dataclass(frozen=True)
class ExportSettings:
    """Everything needed to preview or run one export; also what history re-runs."""

    destination_id: int
    segments: tuple[str, ...]
    mode: Literal["upsert", "mirror"] = "upsert"
    incremental: bool = False
    dry_run: bool = False
    resume_run: int | None = None
    # Apply this stored plan (the preview's) rather than planning again; its
    # segments and mode win. allow_removals: the operator confirmed this many.
    plan_id: int | None = None
    allow_removals: int | None = None


@dataclass(frozen=True)
class PlanReview:
    """What the apply question shows: a stored plan and, beside its counts, up
    to 10 of the people it would remove (read from its changeset file) and, for
    an undo, the people later runs changed again. It carries the plan's record
    (no copy of it) plus two lists that live outside the history database."""

    plan: PlanRecord
    removals_sample: tuple[str, ...] = ()
    touched_later: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncForm:
    """What the add-sync form collects, before `connector.syncs.create_sync`
    checks and stores it (a draft: the trigger as typed, not yet a
    `store.records.SyncRecord`); exactly one trigger is set."""

    name: str
    destination_id: int
    segments: tuple[str, ...]
    mode: Literal["upsert", "mirror"] = "upsert"
    incremental: bool = False
    every: str | None = None  # "6h", "30m"
    cron: str | None = None  # "0 6 * * *"
    on_refresh: bool = False


class Backend(Protocol):
    """Blocking calls the app makes from thread workers (see module docstring)."""

    @property
    def workspace_label(self) -> str: ...

    # remembered between launches, per state folder
    def remembered_destination(self) -> int | None: ...
    # the destination in use and the segments picked for it in this workspace
    def remember(self, destination_id: int | None, segments: tuple[str, ...]) -> None: ...
    def workspaces(self) -> list[WorkspaceChoice]: ...
    # open another workspace (checked first); returns its label
    def switch_workspace(self, path: str) -> str: ...

    # destinations
    def destinations(self) -> list[DestinationRow]: ...
    def list_contact_count(self, destination_id: int) -> int: ...
    def account_lists(self, form: DestinationForm) -> list[ContactList]: ...
    def test_connection(self, form: DestinationForm) -> list[Check]: ...
    def save_destination(self, form: DestinationForm) -> DestinationRow: ...
    # the destination with its consent recorded (consent_by, consent_at, consent_text)
    def record_consent(self, destination_id: int, wording: str) -> Destination: ...
    def remove_destination(self, destination_id: int) -> None: ...

    # segments
    def segments(self) -> list[Segment]: ...
    def segment_counts(self) -> list[SegmentCount]: ...
    def union_count(self, names: tuple[str, ...]) -> int: ...
    # the segments last picked for it in this workspace, else those last exported
    def saved_selection(self, destination_id: int) -> tuple[str, ...]: ...

    # mapping
    def columns(self) -> list[Column]: ...
    def custom_fields(self, destination_id: int) -> list[str]: ...
    # saved, else suggested; custom_fields: the account's, when already fetched
    def saved_mapping(self, destination_id: int) -> FieldMapping | None: ...
    def mapping(
        self, destination_id: int, custom_fields: Sequence[str] | None = None
    ) -> FieldMapping: ...
    def suggested_mapping(
        self, destination_id: int, custom_fields: Sequence[str] | None = None
    ) -> FieldMapping: ...
    def save_mapping(self, destination_id: int, mapping: FieldMapping) -> None: ...
    def sample_rows(self, columns: tuple[str, ...], limit: int) -> list[dict[str, object]]: ...

    # export (dry-run included): the engine's events, consumed off the UI loop
    def export(self, settings: ExportSettings, cancel: asyncio.Event) -> AsyncIterator[Event]: ...
    # what an export of `settings` would meet before its first request (the
    # engine's own checks; cap and guardrails over the stored plan `plan_id`)
    def preflight(self, settings: ExportSettings) -> list[Finding]: ...
    # fixes a preflight offers: create the mapping's missing custom fields on
    # the account (returns their names), raise the destination's cap
    def create_custom_fields(self, destination_id: int) -> tuple[str, ...]: ...
    def set_cap(self, destination_id: int, cap: int) -> Destination: ...

    # history
    def runs(self) -> list[Run]: ...
    def run_detail(self, run_id: int) -> RunDetail: ...
    # the first `limit` rows the run rejected (its detail counts them all)
    def rejected_rows(self, run_id: int, limit: int) -> list[RejectedRecord]: ...
    def write_rejected_csv(self, run_id: int, path: Path) -> int: ...
    # who a run touched, by operation (all when ops is empty)
    def run_people(
        self, run_id: int, ops: tuple[str, ...] = (), limit: int = 500
    ) -> list[Person]: ...
    # the inverse of a run's membership changes, stored as a plan to apply
    def undo_plan(self, run_id: int) -> PlanReview: ...
    # a stored plan with up to 10 of the people it would remove
    def plan(self, plan_id: int) -> PlanReview: ...
    # why a person was or was not sent: the same answer as `segsync explain --json`
    def explain(
        self, destination_id: int, email: str | None = None, key: str | None = None
    ) -> dict[str, object]: ...

    # scheduled syncs
    def syncs(self) -> list[SyncStatus]: ...
    def sync_alerts(self) -> list[SyncAlert]: ...
    def acknowledge_sync_alerts(self, sync_ids: tuple[int, ...] = ()) -> None: ...
    def add_sync(self, form: SyncForm) -> SyncStatus: ...
    def pause_sync(self, sync_id: int, paused: bool) -> None: ...
    # runs the sync now (blocking: call from a thread worker); returns its result line
    def run_sync_now(self, sync_id: int) -> str: ...

    def cancel_sync_runs(self) -> None:
        """Stop the syncs run with run_sync_now that are still running: each
        ends cancelled (resumable by its next run). Safe from any thread."""
        ...
