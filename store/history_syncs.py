"""Saved syncs in the history: their configuration, their last run, their events.

A sync is "export these segments of this workspace to this destination, on
this trigger": it lives in the history database beside the destinations and
runs it refers to, so `segsync syncs list`, the TUI and `run-due` all read the
same rows. A sync's runs are ordinary runs (table ``run``); the sync row only
points at the last one and keeps what the scheduler needs between minutes
(next due time, the profile fingerprint of the last success, who is running
it now). ``sync_event`` keeps what happened: runs, skips and hooks, with the
failures someone has not yet acknowledged (the TUI's banner).

`History` mixes this in, sharing its connections; rows come back as plain
frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from store.history_errors import SyncExists, check_sync_name, sync_not_found
from store.history_models import SyncEventTable, SyncTable, inserted_id, table_of
from store.records import SyncAlert, SyncEvent, SyncRecord

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_SYNC = table_of(SyncTable)
_EVENT = table_of(SyncEventTable)

TRIGGERS = ("every", "cron", "refresh")
EVENT_KINDS = ("run", "skip", "hook")
CONFIG_FIELDS = frozenset(
    {
        "name", "destination_id", "workspace", "segments", "mode", "incremental", "trigger",
        "every_seconds", "cron", "timezone", "allow_removals", "max_rejected_share",
        "on_failure", "hook_timeout", "paused", "next_due_at",
    }
)  # fmt: skip
STATE_FIELDS = frozenset(
    {
        "next_due_at", "last_attempt_at", "last_success_at", "last_result", "last_run_id",
        "last_message", "success_fingerprint", "attempt_fingerprint", "running_pid",
        "running_since",
    }
)  # fmt: skip


_R = TypeVar("_R", bound="DataclassInstance")


def _record(cls: type[_R], row: Any) -> _R:
    values = {f.name: row._mapping[f.name] for f in fields(cls)}
    if "segments" in values:
        values["segments"] = tuple(values["segments"])
    return cls(**values)


class SyncsMixin:
    """Sync rows and events; relies on the host class's `_read` and `_write`."""

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # provided by History

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # provided by History

    # -- configuration --------------------------------------------------------

    def add_sync(self, *, created_at: datetime, **config: Any) -> SyncRecord:
        """A new sync (validated by the caller: `connector.syncs.create_sync`)."""
        unknown = set(config) - CONFIG_FIELDS
        if unknown:
            raise TypeError(f"unknown sync field(s): {', '.join(sorted(unknown))}")
        config["name"] = check_sync_name(config["name"])
        config["segments"] = list(config["segments"])
        try:
            with self._write() as conn:
                new_id = inserted_id(
                    conn.execute(
                        insert(_SYNC).values(**config, created_at=created_at, updated_at=created_at)
                    )
                )
        except IntegrityError as exc:
            raise SyncExists(f"a sync named {config['name']!r} already exists") from exc
        return self.get_sync(int(new_id))

    def get_sync(self, name_or_id: str | int) -> SyncRecord:
        """An active sync by name, or any sync (removed too) by id."""
        query = (
            select(_SYNC).where(_SYNC.c.name == name_or_id, _SYNC.c.removed_at.is_(None))
            if isinstance(name_or_id, str)
            else select(_SYNC).where(_SYNC.c.id == name_or_id)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise sync_not_found(name_or_id)
        return _record(SyncRecord, row)

    def list_syncs(self, include_removed: bool = False) -> list[SyncRecord]:
        query = select(_SYNC).order_by(_SYNC.c.name, _SYNC.c.id)
        if not include_removed:
            query = query.where(_SYNC.c.removed_at.is_(None))
        with self._read() as conn:
            return [_record(SyncRecord, r) for r in conn.execute(query)]

    def update_sync(self, sync_id: int, *, updated_at: datetime, **changes: Any) -> SyncRecord:
        """Change a sync's configuration (not its run state)."""
        unknown = set(changes) - CONFIG_FIELDS
        if unknown:
            raise TypeError(f"cannot update sync field(s): {', '.join(sorted(unknown))}")
        if "name" in changes:
            changes["name"] = check_sync_name(changes["name"])
        if "segments" in changes:
            changes["segments"] = list(changes["segments"])
        try:
            with self._write() as conn:
                conn.execute(
                    update(_SYNC)
                    .where(_SYNC.c.id == sync_id)
                    .values(**changes, updated_at=updated_at)
                )
        except IntegrityError as exc:
            raise SyncExists(f"a sync named {changes.get('name')!r} already exists") from exc
        return self.get_sync(sync_id)

    def remove_sync(self, sync_id: int, at: datetime) -> None:
        """Mark removed: never due again; its events and runs stay on record."""
        with self._write() as conn:
            conn.execute(update(_SYNC).where(_SYNC.c.id == sync_id).values(removed_at=at))

    # -- run state --------------------------------------------------------------

    def set_sync_state(self, sync_id: int, **state: Any) -> None:
        """Write the runner's columns (see STATE_FIELDS)."""
        unknown = set(state) - STATE_FIELDS
        if unknown:
            raise TypeError(f"not sync state: {', '.join(sorted(unknown))}")
        with self._write() as conn:
            conn.execute(update(_SYNC).where(_SYNC.c.id == sync_id).values(**state))

    # -- events -----------------------------------------------------------------

    def add_sync_event(
        self,
        sync_id: int,
        kind: str,
        result: str,
        at: datetime,
        *,
        run_id: int | None = None,
        message: str | None = None,
        alert: bool = False,
    ) -> SyncEvent:
        """Record what happened. A skip repeating the sync's latest event (same
        result and message) bumps that row's count instead of adding one."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown sync event kind {kind!r}")
        with self._write() as conn:
            if kind == "skip":
                latest = conn.execute(
                    select(_EVENT)
                    .where(_EVENT.c.sync_id == sync_id)
                    .order_by(_EVENT.c.id.desc())
                    .limit(1)
                ).first()
                if (
                    latest is not None
                    and latest.kind == "skip"
                    and latest.result == result
                    and latest.message == message
                ):
                    conn.execute(
                        update(_EVENT)
                        .where(_EVENT.c.id == latest.id)
                        .values(count=latest._mapping["count"] + 1, last_at=at)
                    )
                    event_id = latest.id
                else:
                    event_id = None
            else:
                event_id = None
            if event_id is None:
                event_id = inserted_id(
                    conn.execute(
                        insert(_EVENT).values(
                            sync_id=sync_id,
                            kind=kind,
                            result=result,
                            at=at,
                            last_at=at,
                            count=1,
                            run_id=run_id,
                            message=message,
                            alert=alert,
                        )
                    )
                )
            row = conn.execute(select(_EVENT).where(_EVENT.c.id == event_id)).one()
        return _record(SyncEvent, row)

    def sync_events(self, sync_id: int, limit: int = 20) -> list[SyncEvent]:
        """A sync's events, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                select(_EVENT)
                .where(_EVENT.c.sync_id == sync_id)
                .order_by(_EVENT.c.id.desc())
                .limit(limit)
            )
            return [_record(SyncEvent, r) for r in rows]

    def sync_alerts(self) -> list[SyncAlert]:
        """Failures of active syncs nobody acknowledged yet, newest first."""
        query = (
            select(_EVENT, _SYNC.c.name.label("sync_name"))
            .join(_SYNC, _SYNC.c.id == _EVENT.c.sync_id)
            .where(
                _EVENT.c.alert.is_(True),
                _EVENT.c.acknowledged_at.is_(None),
                _SYNC.c.removed_at.is_(None),
            )
            .order_by(_EVENT.c.id.desc())
        )
        with self._read() as conn:
            return [
                SyncAlert(r.sync_id, r.sync_name, _record(SyncEvent, r))
                for r in conn.execute(query)
            ]

    def acknowledge_sync_alerts(self, at: datetime, sync_ids: Sequence[int] | None = None) -> int:
        """Someone saw the failures (of these syncs, or all); returns how many."""
        query = update(_EVENT).where(_EVENT.c.alert.is_(True), _EVENT.c.acknowledged_at.is_(None))
        if sync_ids is not None:
            query = query.where(_EVENT.c.sync_id.in_(list(sync_ids)))
        with self._write() as conn:
            return int(conn.execute(query.values(acknowledged_at=at)).rowcount)


def sync_config(record: SyncRecord) -> Mapping[str, Any]:
    """The configuration fields of a sync, e.g. to copy one."""
    return {name: getattr(record, name) for name in CONFIG_FIELDS}
