"""Plain results of SendGrid calls: what callers need, not SendGrid's whole JSON."""

from __future__ import annotations

from dataclasses import dataclass


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

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "errored", "failed")
