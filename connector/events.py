"""Progress events of an export run.

The engine yields these plain dataclasses; the command line prints them and
the TUI turns them into Textual messages. Nothing here imports Textual, so
both front ends (and tests) consume exactly the same stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Phase = Literal["planning", "uploading", "confirming", "removing", "recording", "done"]
RunStatus = Literal[
    "succeeded", "partial", "failed", "cancelled", "interrupted", "refused", "dry_run"
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base class: every event belongs to one run."""

    run_id: int


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    destination: str
    segments: tuple[str, ...]
    mode: str
    dry_run: bool
    resumed: bool = False
    undo_of: int | None = None  # an undo run: the run whose changes it takes back


@dataclass(frozen=True, slots=True)
class PhaseStarted(Event):
    phase: Phase
    total: int | None = None  # rows (uploading) or jobs (confirming) or removals, when known


@dataclass(frozen=True, slots=True)
class PlanReady(Event):
    """The plan's counts, e.g. selected, no_email, invalid_email, too_long,
    duplicate, no_consent, unchanged, to_send, to_add, to_update, to_remove.

    ``batches`` is the fewest requests the contacts need (by count; the 6 MB
    limit may split more): a lower bound, shown as "at least"."""

    counts: dict[str, int]
    batches: int
    plan_id: int = 0


@dataclass(frozen=True, slots=True)
class BatchSent(Event):
    seq: int
    contacts: int
    bytes: int
    job_id: str
    sent_total: int  # contacts accepted by SendGrid so far in this run
    to_send: int  # contacts this run will send in all


@dataclass(frozen=True, slots=True)
class BatchSkipped(Event):
    """A batch already confirmed by the run being resumed: not sent again."""

    seq: int
    contacts: int


@dataclass(frozen=True, slots=True)
class JobFinished(Event):
    seq: int
    job_id: str
    status: str  # completed | errored | failed
    created: int
    updated: int
    errored: int


@dataclass(frozen=True, slots=True)
class RateLimitWait(Event):
    """SendGrid asked us to slow down; the request is retried after `seconds`."""

    seconds: float
    endpoint: str


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """A transient failure (5xx, timeout, dropped connection) is retried."""

    attempt: int
    seconds: float
    reason: str


@dataclass(frozen=True, slots=True)
class RowsRejected(Event):
    """Rows SendGrid refused (from a job's errors file), with their reasons."""

    seq: int
    rows: tuple[tuple[str, str], ...]  # (email, reason)


@dataclass(frozen=True, slots=True)
class ContactsRemoved(Event):
    """Removals confirmed so far (read back from SendGrid) and those that failed."""

    removed: int
    total: int
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Warning(Event):
    message: str


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    status: RunStatus
    counts: dict[str, int] = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class PreviewReady(Event):
    """What a dry-run would send: shown by the preview screen and `--dry-run`."""

    counts: dict[str, int]
    sample_contacts: tuple[dict[str, Any], ...]
    sample_rejected: tuple[tuple[str, str, str], ...]  # (email, category, detail)
    first_body: str  # the first request body (JSON text, truncated for display)
    removals_sample: tuple[str, ...] = ()
    plan_id: int = 0  # the stored plan (`segsync apply PLAN`); 0 for none
