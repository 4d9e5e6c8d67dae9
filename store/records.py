"""The plain records the store hands out: dataclasses, light to import.

One type per concept, used by store/, connector/ and the TUI alike: history
rows (destinations, runs, batches, rejected rows, plans, syncs), the
workspace's segments and columns, a field mapping, a person a run touched.
This module imports nothing but the standard library (no DuckDB, SQLAlchemy,
SQLModel or Arrow), so a screen can name these types without loading them;
`python -X importtime -c "import store.records"` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Column:
    """A profile column as DuckDB sees it."""

    name: str
    type: str


@dataclass(frozen=True)
class Segment:
    """A named SQL predicate over the ``profiles`` view."""

    name: str
    where: str
    description: str = ""


@dataclass(frozen=True)
class SegmentCount:
    """Member count of one segment, or DuckDB's error when its predicate is bad."""

    segment: str
    count: int | None
    error: str | None = None


@dataclass(frozen=True)
class FieldMapping:
    """Which profile column feeds which SendGrid field.

    ``no_consent_filter``: the user chose, explicitly, to send every selected
    profile without a consent column (`segsync map DEST --no-consent-filter`).
    Without a consent column and without that choice an export is refused
    (`connector.consent.consent_filter_refusal`): sending without a consent
    filter must never be a silent default.
    """

    email: str
    reserved: dict[str, str] = field(default_factory=dict)
    custom: dict[str, str] = field(default_factory=dict)
    consent_column: str | None = None
    no_consent_filter: bool = False

    def filled_from(self, suggested: FieldMapping) -> FieldMapping:
        """This mapping with only its gaps filled from ``suggested``: what
        `segsync map --suggest` and the Mapping screen's `u` save. A chosen
        column is never replaced, and a recorded choice to send without a
        consent filter is kept (the suggested consent column is taken only
        when there is neither)."""
        consent = self.consent_column
        if consent is None and not self.no_consent_filter:
            consent = suggested.consent_column

        def gaps(own: dict[str, str], more: dict[str, str]) -> dict[str, str]:
            return {**own, **{f: c for f, c in more.items() if f not in own}}

        return FieldMapping(
            email=self.email or suggested.email,
            reserved=gaps(self.reserved, suggested.reserved),
            custom=gaps(self.custom, suggested.custom),
            consent_column=consent,
            no_consent_filter=self.no_consent_filter,
        )


@dataclass(frozen=True)
class Destination:
    id: int
    name: str
    list_id: str | None
    list_name: str | None
    base_url: str
    api_key_env: str | None
    key_storage: str | None
    cap: int
    consent_by: str | None
    consent_at: datetime | None
    consent_text: str | None
    created_at: datetime
    removed_at: datetime | None
    max_removals: int | None = None
    max_removal_share: float | None = None
    max_adds: int | None = None

    @property
    def consented(self) -> bool:
        """True once the data-privacy acknowledgment is recorded."""
        return self.consent_at is not None


@dataclass(frozen=True)
class Run:
    id: int
    destination_id: int
    destination_name: str
    segments: tuple[str, ...]
    mode: str
    incremental: bool
    dry_run: bool
    status: str
    config: dict[str, Any]
    counts: dict[str, Any]
    message: str | None
    operator: str
    host: str
    pid: int
    started_at: datetime
    ended_at: datetime | None
    resumed_from: int | None
    plan_id: int | None = None
    kind: str = "export"
    undo_of: int | None = None

    @property
    def seconds(self) -> float | None:
        """How long the run took; None while it runs."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Batch:
    run_id: int
    seq: int
    contacts: int
    bytes: int
    first_email: str
    last_email: str
    job_id: str | None
    status: str
    created: int | None
    updated: int | None
    errored: int | None
    sent_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class RunDetail(Run):
    """A run with its batches (by seq) and its number of rejected rows."""

    batches: tuple[Batch, ...]
    rejected: int


@dataclass(frozen=True)
class RejectedRecord:
    run_id: int
    seq: int | None
    key: str | None
    email: str | None
    reason: str
    source: str


@dataclass(frozen=True)
class PlanRecord:
    id: int
    destination_id: int
    destination_name: str
    segments: tuple[str, ...]
    mode: str
    incremental: bool
    kind: str
    undo_of: int | None
    counts: dict[str, Any]
    basis: dict[str, Any]
    status: str
    applied_run_id: int | None
    operator: str
    host: str
    created_at: datetime


@dataclass(frozen=True)
class SyncRecord:
    id: int
    name: str
    destination_id: int
    workspace: str
    segments: tuple[str, ...]
    mode: str
    incremental: bool
    trigger: str
    every_seconds: int | None
    cron: str | None
    timezone: str | None
    allow_removals: int | None
    max_rejected_share: float | None
    on_failure: str | None
    hook_timeout: float | None
    paused: bool
    created_at: datetime
    updated_at: datetime
    removed_at: datetime | None
    next_due_at: datetime | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_result: str | None
    last_run_id: int | None
    last_message: str | None
    success_fingerprint: dict[str, Any] | None
    attempt_fingerprint: dict[str, Any] | None
    running_pid: int | None
    running_since: datetime | None


@dataclass(frozen=True)
class SyncEvent:
    id: int
    sync_id: int
    kind: str
    result: str
    at: datetime
    last_at: datetime | None
    count: int
    run_id: int | None
    message: str | None
    alert: bool
    acknowledged_at: datetime | None


@dataclass(frozen=True)
class SyncAlert:
    """A failure nobody has acknowledged yet: what the TUI's banner names."""

    sync_id: int
    sync_name: str
    event: SyncEvent


@dataclass(frozen=True)
class ConsentApproval:
    """One data-privacy acknowledgment for a destination: who, when, the words."""

    destination_id: int
    approved_by: str
    approved_at: datetime
    wording: str


EXCLUSIONS = ("no_consent", "no_email", "invalid_email", "too_long", "duplicate")
"""Why a plan leaves a profile out, in the order reports list them."""


class RejectedRow(NamedTuple):
    """An excluded profile: its key, email as found in the source, category and reason.

    A named tuple: tens of thousands are read per run, straight from DuckDB's rows.
    """

    key: str | None
    email: str | None
    category: str
    detail: str | None


class Person(NamedTuple):
    """One row of a run's people record (``store.people``): who, and what happened.

    ``op``: added, updated, removed, remove_failed, rejected, ...; ``reason`` says
    why a rejection happened (None otherwise).
    """

    email: str | None
    key: str | None
    op: str
    reason: str | None
