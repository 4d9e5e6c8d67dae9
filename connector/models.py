"""Plain records of the connector: results of SendGrid calls (what callers need,
not SendGrid's whole JSON), a connection test's lines, a sync's status.

Standard library only (no httpx, no DuckDB), so the TUI renders these types
without loading the client; `python -X importtime -c "import connector.models"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class ContactList:
    id: str
    name: str
    contact_count: int | None = None


@dataclass(frozen=True, slots=True)
class CustomField:
    """A field definition; reserved fields use the same shape (their ids start with ``_rf``)."""

    id: str
    name: str
    field_type: str  # Text | Number | Date


@dataclass(frozen=True, slots=True)
class ImportJob:
    """An upsert/delete job. Counts are None while SendGrid has not reported them
    (they can appear while the job is still ``pending``)."""

    id: str
    status: str  # pending | completed | errored | failed
    requested: int | None = None
    created: int | None = None
    updated: int | None = None
    deleted: int | None = None
    errored: int | None = None
    errors_url: str | None = None
    job_type: str | None = None  # upsert | delete, when SendGrid says

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "errored", "failed")


@dataclass(frozen=True, slots=True)
class Removal:
    """One DELETE of list members, as ``SendGridClient.remove_members`` reports it.

    ``ids`` are the contact ids this entry covers. ``job_id`` is SendGrid's job for
    them (poll it with ``import_status``), or None when no job was started for
    them: either they are all ``already_gone`` (SendGrid answered 404 for each on
    its own: the contact no longer exists, so it is on no list) or SendGrid's 202
    named no job. A job id is no proof that membership changed (a 202 has been
    seen with nothing removed): confirm with ``SendGridClient.memberships``.
    """

    ids: tuple[str, ...]
    job_id: str | None
    already_gone: tuple[str, ...] = ()


class Membership(NamedTuple):
    """A contact as search/emails shows it: its id and the lists it is on now."""

    contact_id: str
    list_ids: frozenset[str]


@dataclass(frozen=True)
class Check:
    """One line of a connection test: what was checked, whether it passed, and why."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class SyncStatus:
    """One line of the syncs table: the sync, its last run and its next one."""

    id: int
    name: str
    destination: str
    workspace: str
    segments: tuple[str, ...]
    mode: str
    incremental: bool
    trigger: str  # "every 6h" | "cron 0 6 * * * (Europe/Berlin)" | "on refresh"
    paused: bool
    running: bool
    last_attempt_at: datetime | None
    last_result: str | None
    last_run_id: int | None
    last_message: str | None
    last_success_at: datetime | None
    next_run_at: datetime | None  # None: paused, or on refresh waiting for a change
    waiting_for: str | None  # on refresh only: what it waits for, in words
    alerts: int  # unacknowledged failures
