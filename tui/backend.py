"""What the terminal app needs from store/ and connector/, as plain data.

Screens never import DuckDB, SQLModel or httpx: they call a `Backend` from a
thread worker and render the dataclasses below. That keeps the first paint
fast (nothing heavy is imported until a worker needs it), keeps the UI loop
free (every call here may block on disk or network), and lets tests drive
every screen with a fake backend holding fixed data.

The real implementation, wired to store/ and connector/, is
`tui.local_backend.LocalBackend`; it is imported lazily by `tui.app.run_app`.
`export` is the one async call: it yields the engine's events and stops
early (recording the run as cancelled) once `cancel` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from connector.consent import CONSENT_STATEMENT
from connector.models import Check, ContactList
from store.limits import EMAIL_MAX_LENGTH, RESERVED_FIELD_LIMITS
from store.records import Column, Segment, SegmentCount

if TYPE_CHECKING:
    from connector.events import Event

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

CONSENT_WORDING = CONSENT_STATEMENT
"""The data-privacy statement shown before a destination may export."""


class BackendError(Exception):
    """A failure the user can act on; its message says what happened and what to do.

    Backends translate store/connector exceptions into this so screens can show
    the text as-is (never as markup, never as a traceback).
    """


@dataclass(frozen=True)
class Consent:
    who: str
    when: datetime
    wording: str


@dataclass(frozen=True)
class DestinationInfo:
    id: int
    name: str
    list_id: str
    list_name: str
    base_url: str
    cap: int
    key_hint: str  # masked key, e.g. "SG.ab…3xYz"; never the key
    consent: Consent | None = None
    last_run_at: datetime | None = None
    last_run_status: str | None = None


@dataclass(frozen=True)
class DestinationForm:
    """What the add/edit form collects. `api_key` is None when editing and the
    field was left empty (keep the stored key)."""

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
class MappingDraft:
    """A mapping as the screen edits it: SendGrid field -> profile column."""

    email: str | None = None
    reserved: dict[str, str] = field(default_factory=dict)
    custom: dict[str, str] = field(default_factory=dict)
    consent_column: str | None = None


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
class PersonInfo:
    """One person a run touched: added, updated, removed, rejected (with why), ..."""

    email: str
    key: str
    op: str
    reason: str = ""


@dataclass(frozen=True)
class PlanInfo:
    """A stored plan as the TUI shows it before it is applied."""

    id: int
    destination_id: int
    destination: str
    kind: str  # export | undo
    counts: dict[str, int]
    removals_sample: tuple[str, ...] = ()  # up to 10 of the people it would remove
    touched_later: tuple[str, ...] = ()  # undo: people later runs changed again
    undo_of: int | None = None


@dataclass(frozen=True)
class SyncInfo:
    """One saved sync with its last run and its next one (the Syncs table)."""

    id: int
    name: str
    destination: str
    segments: tuple[str, ...]
    mode: str
    trigger: str  # "every 6h" | "cron 0 6 * * * (Europe/Berlin)" | "on refresh"
    paused: bool
    running: bool
    last_attempt_at: datetime | None
    last_result: str | None  # succeeded | partial | rejected | failed | refused | ...
    last_run_id: int | None
    last_message: str
    next_run_at: datetime | None  # None: paused, or waiting for a refresh
    waiting_for: str  # on refresh: what it waits for, in words
    alerts: int  # failures nobody acknowledged


@dataclass(frozen=True)
class SyncAlertInfo:
    """A failure of a sync nobody acknowledged: the banner at start names it."""

    sync_id: int
    sync: str
    result: str
    at: datetime
    run_id: int | None
    message: str


@dataclass(frozen=True)
class SyncForm:
    """What the add-sync form collects; exactly one trigger is set."""

    name: str
    destination_id: int
    segments: tuple[str, ...]
    mode: Literal["upsert", "mirror"] = "upsert"
    incremental: bool = False
    every: str | None = None  # "6h", "30m"
    cron: str | None = None  # "0 6 * * *"
    on_refresh: bool = False


@dataclass(frozen=True)
class RunInfo:
    id: int
    destination: str
    segments: tuple[str, ...]
    mode: str
    dry_run: bool
    status: str
    started_at: datetime
    ended_at: datetime | None
    operator: str
    counts: dict[str, int] = field(default_factory=dict)
    destination_id: int | None = None
    incremental: bool = False
    message: str = ""  # why it failed or stopped, or what to do next
    kind: str = "export"  # or "undo"
    plan_id: int | None = None

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class BatchInfo:
    seq: int
    contacts: int
    job_id: str
    status: str
    created: int = 0
    updated: int = 0
    errored: int = 0


@dataclass(frozen=True)
class RejectedInfo:
    key: str
    email: str
    reason: str
    seq: int | None = None


@dataclass(frozen=True)
class RunDetail:
    run: RunInfo
    config: dict[str, object]
    batches: list[BatchInfo]
    rejected: list[RejectedInfo]
    rejected_total: int
    host: str = ""


class Backend(Protocol):
    """Blocking calls the app makes from thread workers (see module docstring)."""

    @property
    def workspace_label(self) -> str: ...

    # destinations
    def destinations(self) -> list[DestinationInfo]: ...
    def list_contact_count(self, destination_id: int) -> int: ...
    def account_lists(self, form: DestinationForm) -> list[ContactList]: ...
    def test_connection(self, form: DestinationForm) -> list[Check]: ...
    def save_destination(self, form: DestinationForm) -> DestinationInfo: ...
    def record_consent(self, destination_id: int, wording: str) -> Consent: ...
    def remove_destination(self, destination_id: int) -> None: ...

    # segments
    def segments(self) -> list[Segment]: ...
    def segment_counts(self) -> list[SegmentCount]: ...
    def union_count(self, names: tuple[str, ...]) -> int: ...
    def saved_selection(self, destination_id: int) -> tuple[str, ...]: ...

    # mapping
    def columns(self) -> list[Column]: ...
    def custom_fields(self, destination_id: int) -> list[str]: ...
    # saved, else suggested; custom_fields: the account's, when already fetched
    def mapping(
        self, destination_id: int, custom_fields: Sequence[str] | None = None
    ) -> MappingDraft: ...
    def suggested_mapping(
        self, destination_id: int, custom_fields: Sequence[str] | None = None
    ) -> MappingDraft: ...
    def save_mapping(self, destination_id: int, mapping: MappingDraft) -> None: ...
    def sample_rows(self, columns: tuple[str, ...], limit: int) -> list[dict[str, object]]: ...

    # export (dry-run included): the engine's events, consumed off the UI loop
    def export(self, settings: ExportSettings, cancel: asyncio.Event) -> AsyncIterator[Event]: ...

    # history
    def runs(self) -> list[RunInfo]: ...
    def run_detail(self, run_id: int) -> RunDetail: ...
    def write_rejected_csv(self, run_id: int, path: Path) -> int: ...
    # who a run touched, by operation (all when ops is empty)
    def run_people(
        self, run_id: int, ops: tuple[str, ...] = (), limit: int = 500
    ) -> list[PersonInfo]: ...
    # the inverse of a run's membership changes, stored as a plan to apply
    def undo_plan(self, run_id: int) -> PlanInfo: ...
    # a stored plan with up to 10 of the people it would remove
    def plan(self, plan_id: int) -> PlanInfo: ...
    # why a person was or was not sent: the same answer as `segsync explain --json`
    def explain(
        self, destination_id: int, email: str | None = None, key: str | None = None
    ) -> dict[str, object]: ...

    # scheduled syncs
    def syncs(self) -> list[SyncInfo]: ...
    def sync_alerts(self) -> list[SyncAlertInfo]: ...
    def acknowledge_sync_alerts(self, sync_ids: tuple[int, ...] = ()) -> None: ...
    def add_sync(self, form: SyncForm) -> SyncInfo: ...
    def pause_sync(self, sync_id: int, paused: bool) -> None: ...
    # runs the sync now (blocking: call from a thread worker); returns its result line
    def run_sync_now(self, sync_id: int) -> str: ...
