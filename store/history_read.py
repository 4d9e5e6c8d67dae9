"""Runs, plans, destinations and syncs, read with the standard library's sqlite3.

The commands that review the record (`segsync runs`, `runs show`, `runs
rejected`, `runs evidence`, `plans`, `plans show`, `destinations`, `map DEST`,
`syncs`, `syncs show`, `syncs alerts`, `explain`, `where`) only read, yet
opening ``store.history`` imports SQLAlchemy, SQLModel and pydantic (~0.5 s
with bytecode cached), several times what the reading itself costs.
`RunReader` reads the same rows with plain SQL on a read-only connection and
returns the same `store.records` records, raising the same `NotFound`,
`PlanNotFound` and `SyncNotFound`, so those commands answer in a fraction of
that. An export reads its destination, mapping and saved segments the same
way (``store.history_deferred``) while ``History`` opens on another thread.

The tables are defined once, by the SQLModel classes of ``store.history_models``;
this module only names columns of ``run``, ``run_batch``, ``rejected_row``,
``plan``, ``destination``, ``consent_approval``, ``destination_mapping``,
``destination_segments``, ``sync`` and ``sync_event``, and
tests/store_state/test_history_read.py fails if they drift apart (the columns
read here against the SQLModel metadata, and the records against ``History``'s).

A reader never creates, upgrades or repairs anything. Opening ``History`` does
that (creates the file, upgrades an older schema, marks runs of dead processes
interrupted, tightens lax companion files); `needs_upkeep` tells the caller when
one of those is due, so it opens ``History`` once first and the listing shows
what it always did.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from store.history_errors import (
    HistoryError,
    NotFound,
    destination_not_found,
    plan_not_found,
    sync_not_found,
)
from store.records import (
    Batch,
    ConsentApproval,
    Destination,
    FieldMapping,
    PlanRecord,
    RejectedRecord,
    Run,
    RunDetail,
    SyncAlert,
    SyncEvent,
    SyncRecord,
)

SCHEMA_VERSION = 5
"""The history schema this segsync writes: the last step of
``store.history_migrations.MIGRATIONS`` (a test checks they agree)."""

# "refused": a guardrail or a drift check stopped the run before its first request.
RUN_STATUSES = (
    "running", "succeeded", "partial", "failed", "cancelled", "interrupted", "refused", "dry_run",
)  # fmt: skip


_T = TypeVar("_T")

# The columns each record is made of, in the order they are selected.
RUN_COLUMNS = tuple(f.name for f in fields(Run))
DESTINATION_COLUMNS = tuple(f.name for f in fields(Destination))
BATCH_COLUMNS = tuple(f.name for f in fields(Batch))
PLAN_COLUMNS = tuple(f.name for f in fields(PlanRecord))
SYNC_COLUMNS = tuple(f.name for f in fields(SyncRecord))
EVENT_COLUMNS = tuple(f.name for f in fields(SyncEvent))
APPROVAL_COLUMNS = tuple(f.name for f in fields(ConsentApproval))
# How columns are stored, by name (no name means two things across the tables).
_JSON_COLUMNS = frozenset(
    {"segments", "config", "counts", "basis", "success_fingerprint", "attempt_fingerprint"}
)
_BOOL_COLUMNS = frozenset({"incremental", "dry_run", "paused", "alert"})
_TIME_COLUMNS = frozenset(
    {
        "started_at", "ended_at", "sent_at", "finished_at", "created_at", "updated_at",
        "consent_at", "removed_at", "next_due_at", "last_attempt_at", "last_success_at",
        "running_since", "at", "last_at", "acknowledged_at", "approved_at",
    }
)  # fmt: skip


def rejected_page(
    run_id: int, last_id: int, size: int, source: str | None
) -> tuple[str, tuple[Any, ...]]:
    """The query and parameters for a page of a run's rejected rows after row id
    ``last_id`` (History reads them so too). ``source``: only the plan's rows or
    only SendGrid's; an export's record reads back just SendGrid's few, not a
    million-row plan's tens of thousands."""
    only = "" if source is None else " AND source = ?"
    sql = (
        "SELECT id, seq, key, email, reason, source FROM rejected_row"
        f" WHERE run_id = ?{only} AND id > ? ORDER BY id LIMIT ?"
    )
    by_source = () if source is None else (source,)
    return sql, (run_id, *by_source, last_id, size)


def _process_start(pid: int) -> datetime | None:
    """When process ``pid`` started (Linux /proc), or None where unknown."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        ticks = int(stat_line[stat_line.rindex(")") + 2 :].split()[19])  # field 22: starttime
        return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def run_process_alive(pid: int, started_at: datetime) -> bool:
    """Is the process that started a run at ``started_at`` still running?

    A live pid is not enough: containers hand out small pids again and again,
    so a later process can wear a dead export's pid. If that process started
    after the run did (btime has 1 s resolution, hence the margin), it is not
    the run's process.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    began = _process_start(pid)
    return began is None or began <= started_at + timedelta(seconds=2)


def _utc(text: str | None) -> datetime | None:
    """A stored time as ``history_models.UTCDateTime`` returns it: UTC, aware."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def _values(columns: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    """A row as the record's field values, typed as the SQLModel columns give them."""
    values: dict[str, Any] = {}
    for name, value in zip(columns, row, strict=True):
        if name in _JSON_COLUMNS:
            if value is not None:  # a fingerprint not taken yet
                value = json.loads(value)
                if name == "segments":
                    value = tuple(value)
        elif name in _BOOL_COLUMNS:
            value = bool(value)
        elif name in _TIME_COLUMNS:
            value = _utc(value)
        values[name] = value
    return values


def mapping_json(mapping: Any) -> dict[str, Any]:
    """The stored JSON shape of a mapping, from a FieldMapping or a plain dict."""
    get = mapping.get if isinstance(mapping, Mapping) else lambda k, d=None: getattr(mapping, k, d)
    email = get("email")
    if not email:
        raise HistoryError("a mapping needs the profile column that holds the email")
    data: dict[str, Any] = {
        "email": email,
        "reserved": dict(get("reserved") or {}),
        "custom": dict(get("custom") or {}),
        "consent_column": get("consent_column"),
    }
    if get("no_consent_filter"):  # only when chosen: older mappings (and plan bases) unchanged
        data["no_consent_filter"] = True
    return data


def mapping_from_json(data: dict[str, Any]) -> FieldMapping:
    """A mapping as stored (`mapping_json`) made a `FieldMapping`."""
    return FieldMapping(
        email=data["email"],
        reserved=dict(data["reserved"]),
        custom=dict(data["custom"]),
        consent_column=data.get("consent_column"),
        no_consent_filter=bool(data.get("no_consent_filter", False)),
    )


def run_json(run: Run) -> dict[str, Any]:
    """A run as `runs --json` prints it (the TUI's history shows the same fields)."""
    return {
        "id": run.id,
        "destination": run.destination_name,
        "destination_id": run.destination_id,
        "segments": list(run.segments),
        "mode": run.mode,
        "incremental": run.incremental,
        "dry_run": run.dry_run,
        "kind": "dry-run" if run.dry_run else run.kind,
        "plan": run.plan_id,
        "undo_of": run.undo_of,
        "status": run.status,
        "counts": dict(run.counts or {}),
        "message": run.message,
        "operator": run.operator,
        "host": run.host,
        "started_at": run.started_at.isoformat(),
        "ended_at": None if run.ended_at is None else run.ended_at.isoformat(),
    }


def custom_field_ids(newest: list[PlanRecord]) -> dict[str, str]:
    """The SendGrid custom field ids the newest plan (a list of at most one)
    used: ids differ per account; a plan looks them up, explain reuses them."""
    ids = newest[0].basis.get("custom_field_ids") if newest else None
    return {str(k): str(v) for k, v in (ids or {}).items()}


def destination_json(dest: Destination) -> dict[str, Any]:
    """A destination as `destinations list/show --json` print it; never the key."""
    return {
        "id": dest.id,
        "name": dest.name,
        "list_id": dest.list_id,
        "list_name": dest.list_name,
        "base_url": dest.base_url,
        "key_storage": dest.key_storage,
        "api_key_env": dest.api_key_env,
        "cap": dest.cap,
        "consent_by": dest.consent_by,
        "consent_at": None if dest.consent_at is None else dest.consent_at.isoformat(),
    }


def _lax(path: Path) -> bool:
    """A file group or others may read or write (History tightens it to 0600)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


class RunReader:
    """Runs of the history database at ``db_path``, read-only; a context manager."""

    def __init__(self, db_path: Path) -> None:
        # mode=ro: a reader cannot write, even by mistake; WAL lets it read while
        # an export writes. The timeout matches History's (a checkpoint may hold
        # the file for a moment). Any thread may use it (an export reads from
        # worker threads), one at a time: the caller serialises.
        uri = f"{Path(db_path).absolute().as_uri()}?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _records(
        self, record: Callable[..., _T], columns: tuple[str, ...], rest: str, params: Any = ()
    ) -> list[_T]:
        """``SELECT <columns> <rest>`` as ``record``s, valued as History's are."""
        rows = self._conn.execute(f"SELECT {', '.join(columns)} {rest}", params)
        return [record(**_values(columns, row)) for row in rows]

    def get_destination(self, name_or_id: str | int) -> Destination:
        """As ``History.get_destination``: an active destination by name, or any
        (removed too) by id; the same `NotFound` when there is none."""
        found: list[Destination] = []
        if isinstance(name_or_id, str):
            found = self._records(
                Destination, DESTINATION_COLUMNS,
                "FROM destination WHERE name = ? AND removed_at IS NULL", (name_or_id,),
            )  # fmt: skip
            if not found and name_or_id.isdigit():
                name_or_id = int(name_or_id)
        if isinstance(name_or_id, int):
            found = self._records(
                Destination, DESTINATION_COLUMNS, "FROM destination WHERE id = ?", (name_or_id,)
            )
        if not found:
            raise destination_not_found(name_or_id)
        return found[0]

    def destination(self, name_or_id: str | int) -> Destination | None:
        """`get_destination`, or None where it raises `NotFound`."""
        try:
            return self.get_destination(name_or_id)
        except NotFound:
            return None

    def destination_exists(self, name: str) -> bool:
        """An active destination by this name, or any by this id when it is digits."""
        return self.destination(name) is not None

    def list_destinations(self, include_removed: bool = False) -> list[Destination]:
        """As ``History.list_destinations``: by name, then id."""
        where = "" if include_removed else "WHERE removed_at IS NULL"
        return self._records(
            Destination, DESTINATION_COLUMNS, f"FROM destination {where} ORDER BY name, id"
        )

    def consent_approvals(self, destination_id: int) -> list[ConsentApproval]:
        """As ``History.consent_approvals``: every acknowledgment, oldest first."""
        return self._records(
            ConsentApproval, APPROVAL_COLUMNS,
            "FROM consent_approval WHERE destination_id = ? ORDER BY approved_at, id",
            (destination_id,),
        )  # fmt: skip

    def get_mapping(self, destination_id: int) -> FieldMapping | None:
        """As ``History.get_mapping``: the saved mapping, or None."""
        row = self._conn.execute(
            "SELECT mapping FROM destination_mapping WHERE destination_id = ?", (destination_id,)
        ).fetchone()
        return None if row is None else mapping_from_json(json.loads(row[0]))

    def get_segments(self, destination_id: int) -> tuple[str, ...]:
        """As ``History.get_segments``: the saved selection, in order."""
        row = self._conn.execute(
            "SELECT segments FROM destination_segments WHERE destination_id = ?",
            (destination_id,),
        ).fetchone()
        return tuple(json.loads(row[0]) or ()) if row is not None else ()

    def list_runs(
        self,
        destination: str | int | None = None,
        status: str | None = None,
        limit: int | None = 200,
    ) -> list[Run]:
        """As ``History.list_runs``: runs, newest first, of the destination by id,
        or by its current name or the one it had at the time."""
        sql = "FROM run"
        where: list[str] = []
        params: list[Any] = []
        if isinstance(destination, int):
            where.append("destination_id = ?")
            params.append(destination)
        elif destination is not None:
            where.append(
                "(destination_name = ? OR destination_id IN "
                "(SELECT id FROM destination WHERE name = ?))"
            )
            params += [destination, destination]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._records(Run, RUN_COLUMNS, sql, params)

    def get_run(self, run_id: int) -> RunDetail:
        """As ``History.get_run``: the run with its batches (by seq) and its
        number of rejected rows; `NotFound` when there is none. The three are
        read in one transaction, as History reads them: an export committing
        meanwhile cannot show a run still ``running`` beside its finished batches."""
        self._conn.execute("BEGIN")
        try:
            found: list[dict[str, Any]] = self._records(
                dict, RUN_COLUMNS, "FROM run WHERE id = ?", (run_id,)
            )
            if not found:
                raise NotFound(f"no run {run_id}")
            batches = self._records(
                Batch, BATCH_COLUMNS, "FROM run_batch WHERE run_id = ? ORDER BY seq", (run_id,)
            )
            (rejected,) = self._conn.execute(
                "SELECT count(*) FROM rejected_row WHERE run_id = ?", (run_id,)
            ).fetchone()
        finally:
            self._conn.rollback()  # read-only: nothing to keep
        return RunDetail(**found[0], batches=tuple(batches), rejected=rejected)

    def rejected_rows(self, run_id: int, source: str | None = None) -> Iterator[RejectedRecord]:
        """As ``History.rejected_rows``: a run's rejected rows in the order recorded."""
        last_id = 0
        while rows := self._conn.execute(*rejected_page(run_id, last_id, 5_000, source)).fetchall():
            for _row_id, *values in rows:
                yield RejectedRecord(run_id, *values)
            last_id = rows[-1][0]

    def get_plan(self, plan_id: int) -> PlanRecord:
        """As ``History.get_plan``, raising the same `PlanNotFound`."""
        found = self._records(PlanRecord, PLAN_COLUMNS, "FROM plan WHERE id = ?", (plan_id,))
        if not found:
            raise plan_not_found(plan_id)
        return found[0]

    def list_plans(self, destination_id: int | None = None, limit: int = 50) -> list[PlanRecord]:
        """As ``History.list_plans``: newest first."""
        params: tuple[int, ...]
        if destination_id is None:
            where, params = "", (limit,)
        else:
            where, params = "WHERE destination_id = ?", (destination_id, limit)
        return self._records(
            PlanRecord, PLAN_COLUMNS, f"FROM plan {where} ORDER BY id DESC LIMIT ?", params
        )

    def latest_custom_field_ids(self, destination_id: int) -> dict[str, str]:
        """As ``History.latest_custom_field_ids``."""
        return custom_field_ids(self.list_plans(destination_id, limit=1))

    def list_syncs(self, include_removed: bool = False) -> list[SyncRecord]:
        """As ``History.list_syncs``: by name, then id."""
        where = "" if include_removed else "WHERE removed_at IS NULL"
        return self._records(SyncRecord, SYNC_COLUMNS, f"FROM sync {where} ORDER BY name, id")

    def get_sync(self, name_or_id: str | int) -> SyncRecord:
        """As ``History.get_sync``: an active sync by name, or any by id;
        the same `SyncNotFound` when there is none."""
        where = "name = ? AND removed_at IS NULL" if isinstance(name_or_id, str) else "id = ?"
        found = self._records(SyncRecord, SYNC_COLUMNS, f"FROM sync WHERE {where}", (name_or_id,))
        if not found:
            raise sync_not_found(name_or_id)
        return found[0]

    def sync_events(self, sync_id: int, limit: int = 20) -> list[SyncEvent]:
        """As ``History.sync_events``: newest first."""
        return self._records(
            SyncEvent, EVENT_COLUMNS,
            "FROM sync_event WHERE sync_id = ? ORDER BY id DESC LIMIT ?", (sync_id, limit),
        )  # fmt: skip

    def sync_alerts(self) -> list[SyncAlert]:
        """As ``History.sync_alerts``: failures of active syncs nobody
        acknowledged yet, newest first."""
        columns = ", ".join(f"e.{c}" for c in EVENT_COLUMNS)
        rows = self._conn.execute(
            f"SELECT {columns}, s.name FROM sync_event e JOIN sync s ON s.id = e.sync_id "
            "WHERE e.alert AND e.acknowledged_at IS NULL AND s.removed_at IS NULL "
            "ORDER BY e.id DESC"
        )
        out = []
        for *values, sync_name in rows:
            event = SyncEvent(**_values(EVENT_COLUMNS, tuple(values)))
            out.append(SyncAlert(event.sync_id, sync_name, event))
        return out

    def needs_upkeep(self) -> bool:
        """True when opening ``History`` would change something first: another
        schema version (or not a history at all, which History reports), or a run
        of this host still ``running`` whose process is gone."""
        try:
            version = self._conn.execute("SELECT version FROM schema_meta WHERE id = 1").fetchone()
            if version is None or version[0] != SCHEMA_VERSION:
                return True
            running = self._conn.execute(
                "SELECT pid, started_at FROM run WHERE status = 'running' AND host = ?",
                (socket.gethostname(),),
            ).fetchall()
        except sqlite3.DatabaseError:  # damaged, or not ours: History says what is wrong
            return True
        return any(
            not run_process_alive(pid, datetime.fromisoformat(started).replace(tzinfo=UTC))
            for pid, started in running
        )


def open_run_reader(db_path: Path) -> RunReader | None:
    """A reader of ``db_path``, or None when ``History`` must open the file
    first: it does not exist yet, a companion file is readable by others, or
    `RunReader.needs_upkeep`."""
    if not db_path.is_file() or any(
        _lax(db_path.with_name(db_path.name + suffix)) for suffix in ("", "-wal", "-shm")
    ):
        return None
    reader = RunReader(db_path)
    try:
        if reader.needs_upkeep():
            reader.close()
            return None
    except BaseException:
        reader.close()
        raise
    return reader
