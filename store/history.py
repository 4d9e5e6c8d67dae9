"""Run history: destinations, their mappings and segments, runs, batches and
rejected rows, in one SQLite file (SQLModel tables, see ``history_models``).

Design points, each for a user-visible reason:

- Every write is its own short transaction, committed before the method
  returns: an export killed with SIGKILL at any point leaves every earlier
  batch and count in the file, which is what makes ``--resume`` possible.
- WAL journal: the TUI can read history while an export writes to it.
- The file (and its -wal/-shm companions) is mode 0600: it names lists,
  accounts and customers' emails in rejected rows.
- Methods return plain frozen dataclasses, never ORM objects, so callers can
  keep them after the database is closed and cannot write through them.
- A run left ``running`` by a process that no longer exists is marked
  ``interrupted`` when history is opened.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from store.history_errors import HistoryError, NotFound, PlanNotFound, destination_not_found
from store.history_migrations import SchemaError, prepare_schema
from store.history_models import (
    ConsentApprovalTable,
    DestinationMappingTable,
    DestinationSegmentsTable,
    DestinationTable,
    RejectedRowTable,
    RunBatchTable,
    RunTable,
    inserted_id,
    table_of,
)
from store.history_plans import PlansMixin
from store.history_read import (
    RUN_STATUSES,
    SCHEMA_VERSION,
    mapping_from_json,
    mapping_json,
    rejected_page,
    run_process_alive,
)
from store.history_syncs import SyncsMixin
from store.limits import DEFAULT_CAP
from store.operator import current_operator
from store.records import (
    Batch,
    ConsentApproval,
    Destination,
    FieldMapping,
    RejectedRecord,
    Run,
    RunDetail,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


__all__ = [
    "BATCH_STATUSES",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "DestinationExists",
    "History",
    "HistoryError",
    "NotFound",
    "PlanNotFound",
    "SchemaError",
    "current_operator",
]

RUN_KINDS = ("export", "undo")
FINAL_BATCH_STATUSES = ("completed", "errored", "failed")  # the import job's end
BATCH_STATUSES = ("prepared", "sent", *FINAL_BATCH_STATUSES)
# "pending": the destination is being set up and its key is not stored yet.
KEY_STORAGES = ("keyring", "file", "env", "pending")
MODES = ("upsert", "mirror")
SUCCESS_STATUSES = ("succeeded", "partial")  # the run finished; rejected rows aside
REJECTION_SOURCES = ("plan", "sendgrid")

_T = table_of(DestinationTable)
_MAP = table_of(DestinationMappingTable)
_APPROVALS = table_of(ConsentApprovalTable)
_SEG = table_of(DestinationSegmentsTable)
_RUN = table_of(RunTable)
_BATCH = table_of(RunBatchTable)
_REJ = table_of(RejectedRowTable)

_REJECTED_INSERT = (
    "INSERT INTO rejected_row (run_id, seq, key, email, reason, source) VALUES (?, ?, ?, ?, ?, ?)"
)
_REJECTED_CHUNK = 50_000


class DestinationExists(HistoryError):
    """An active destination already has that name."""


def _now() -> datetime:
    return datetime.now(UTC)


_R = TypeVar("_R", bound="DataclassInstance")


def _row(cls: type[_R], row: Any, **overrides: Any) -> _R:
    data = {f.name: row._mapping[f.name] for f in fields(cls) if f.name in row._mapping}
    data.update(overrides)
    return cls(**data)


def _run(row: Any) -> Run:
    return _row(Run, row, segments=tuple(row.segments))


def _private_file(path: Path) -> None:
    """Create ``path`` as 0600 if missing, or tighten it if it exists."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _make_engine(db_path: Path) -> Engine:
    engine = create_engine(
        f"sqlite:///{db_path}", connect_args={"check_same_thread": False, "timeout": 30}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin below decide when a transaction starts (the
        # sqlite3 module otherwise skips BEGIN before DDL, breaking upgrades).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front so two processes never both
        # read, then fail to upgrade to writing (SQLITE_BUSY without waiting).
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


class History(PlansMixin, SyncsMixin):
    """The history database at ``db_path`` (created if missing).

    Opening it creates or upgrades the schema (backing the file up first) and
    marks runs of dead processes on this host as interrupted. ``path`` is the
    file; ``upgrade_backup`` the copy taken before an upgrade at this open, if any.
    """

    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path)
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, mode=0o700)
        # Created 0600 before SQLite opens it; SQLite then gives -wal and -shm
        # the database file's permissions. (No umask games: the umask is
        # process-wide and would change files other threads create meanwhile.)
        _private_file(self.path)
        self._engine = _make_engine(self.path)
        self._writer = self._engine.execution_options(sqlite_begin="IMMEDIATE")
        self.upgrade_backup = prepare_schema(self._engine, self.path)
        for suffix in ("-wal", "-shm"):  # left behind by an older, laxer file
            companion = self.path.with_name(self.path.name + suffix)
            if companion.exists():
                os.chmod(companion, 0o600)
        self.host = socket.gethostname()
        self.mark_interrupted_runs()

    # -- plumbing -----------------------------------------------------------

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._writer.begin() as conn:
            yield conn

    # -- destinations -------------------------------------------------------

    def add_destination(
        self,
        name: str,
        *,
        base_url: str,
        list_id: str | None = None,
        list_name: str | None = None,
        api_key_env: str | None = None,
        key_storage: str | None = None,
        cap: int = DEFAULT_CAP,
    ) -> Destination:
        """A new destination. ``list_name`` alone means the list is to be created
        (set ``list_id`` later); ``key_storage`` stays NULL until a key is stored."""
        name = name.strip()
        if not name:
            raise HistoryError("a destination needs a name")
        if not (list_id or list_name):
            raise HistoryError(f"destination {name!r} needs a list id or a list name to create")
        values = {
            "name": name,
            "base_url": base_url,
            "list_id": list_id,
            "list_name": list_name,
            "api_key_env": api_key_env,
            "key_storage": key_storage,
            "cap": cap,
        }
        _check_destination_values(values)
        try:
            with self._write() as conn:
                new_id = inserted_id(conn.execute(insert(_T).values(**values, created_at=_now())))
        except IntegrityError as exc:
            raise DestinationExists(f"a destination named {name!r} already exists") from exc
        return self.get_destination(new_id)

    def get_destination(self, name_or_id: str | int) -> Destination:
        """An active destination by name, or any destination (removed too) by id."""
        with self._read() as conn:
            row = None
            if isinstance(name_or_id, str):
                row = conn.execute(
                    select(_T).where(_T.c.name == name_or_id, _T.c.removed_at.is_(None))
                ).first()
                if row is None and name_or_id.isdigit():
                    name_or_id = int(name_or_id)
            if isinstance(name_or_id, int):
                row = conn.execute(select(_T).where(_T.c.id == name_or_id)).first()
        if row is None:
            raise destination_not_found(name_or_id)
        return _row(Destination, row)

    def list_destinations(self, include_removed: bool = False) -> list[Destination]:
        query = select(_T).order_by(_T.c.name, _T.c.id)
        if not include_removed:
            query = query.where(_T.c.removed_at.is_(None))
        with self._read() as conn:
            return [_row(Destination, r) for r in conn.execute(query)]

    def update_destination(self, destination_id: int, **changes: Any) -> Destination:
        """Change name, list_id, list_name, base_url, api_key_env, key_storage or cap."""
        allowed = {
            "name", "list_id", "list_name", "base_url", "api_key_env", "key_storage", "cap",
            "max_removals", "max_removal_share", "max_adds",
        }  # fmt: skip
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(f"cannot update destination field(s): {', '.join(sorted(unknown))}")
        if "name" in changes:
            changes["name"] = str(changes["name"]).strip()
        _check_destination_values(changes)
        self.get_destination(destination_id)
        if changes:
            try:
                with self._write() as conn:
                    conn.execute(update(_T).where(_T.c.id == destination_id).values(**changes))
            except IntegrityError as exc:
                raise DestinationExists(
                    f"a destination named {changes.get('name')!r} already exists"
                ) from exc
        return self.get_destination(destination_id)

    def remove_destination(self, name_or_id: str | int) -> Destination:
        """Mark removed: it leaves lists, its runs stay, its name becomes free.
        Forgetting the key is the caller's job (``KeyStore.forget``)."""
        dest = self.get_destination(name_or_id)
        if dest.removed_at is None:
            with self._write() as conn:
                conn.execute(update(_T).where(_T.c.id == dest.id).values(removed_at=_now()))
        return self.get_destination(dest.id)

    def record_consent(self, destination_id: int, who: str, wording: str) -> Destination:
        """Record the data-privacy acknowledgment: who, now, and the words shown."""
        if not who.strip() or not wording.strip():
            raise HistoryError("consent needs who gave it and the wording they agreed to")
        self.get_destination(destination_id)
        now = _now()
        with self._write() as conn:
            conn.execute(
                update(_T)
                .where(_T.c.id == destination_id)
                .values(consent_by=who, consent_at=now, consent_text=wording)
            )
            conn.execute(
                insert(_APPROVALS).values(
                    destination_id=destination_id,
                    approved_by=who,
                    approved_at=now,
                    wording=wording,
                )
            )
        return self.get_destination(destination_id)

    def consent_approvals(self, destination_id: int) -> list[ConsentApproval]:
        """Every acknowledgment given for the destination, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                select(_APPROVALS)
                .where(_APPROVALS.c.destination_id == destination_id)
                .order_by(_APPROVALS.c.approved_at, _APPROVALS.c.id)
            ).all()
        return [
            ConsentApproval(r.destination_id, r.approved_by, r.approved_at, r.wording) for r in rows
        ]

    def set_mapping(self, destination_id: int, mapping: FieldMapping | Mapping[str, Any]) -> None:
        """Save a destination's mapping (a ``FieldMapping`` or a dict of its fields)."""
        self.get_destination(destination_id)
        data = mapping_json(mapping)
        with self._write() as conn:
            conn.execute(_MAP.delete().where(_MAP.c.destination_id == destination_id))
            conn.execute(
                insert(_MAP).values(destination_id=destination_id, mapping=data, updated_at=_now())
            )

    def get_mapping(self, destination_id: int) -> FieldMapping | None:
        """The saved mapping as a ``store.records.FieldMapping``, or None if none saved."""
        with self._read() as conn:
            data = conn.execute(
                select(_MAP.c.mapping).where(_MAP.c.destination_id == destination_id)
            ).scalar()
        return None if data is None else mapping_from_json(data)

    def set_segments(self, destination_id: int, names: Sequence[str]) -> None:
        """Save the destination's segment selection (order kept, repeats dropped)."""
        self.get_destination(destination_id)
        ordered = list(dict.fromkeys(names))
        with self._write() as conn:
            conn.execute(_SEG.delete().where(_SEG.c.destination_id == destination_id))
            conn.execute(
                insert(_SEG).values(
                    destination_id=destination_id, segments=ordered, updated_at=_now()
                )
            )

    def get_segments(self, destination_id: int) -> tuple[str, ...]:
        with self._read() as conn:
            names = conn.execute(
                select(_SEG.c.segments).where(_SEG.c.destination_id == destination_id)
            ).scalar()
        return tuple(names or ())

    # -- runs ---------------------------------------------------------------

    def start_run(
        self,
        destination_id: int,
        segments: Sequence[str],
        *,
        mode: str = "upsert",
        incremental: bool = False,
        dry_run: bool = False,
        config: Mapping[str, Any] | None = None,
        resumed_from: int | None = None,
        plan_id: int | None = None,
        kind: str = "export",
        undo_of: int | None = None,
    ) -> int:
        """Open a run (status ``running``) for this process; returns its id."""
        if kind not in RUN_KINDS:
            raise HistoryError(f"unknown run kind {kind!r}; expected one of {RUN_KINDS}")
        if mode not in MODES:
            raise HistoryError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        dest = self.get_destination(destination_id)
        if dest.removed_at is not None:
            raise HistoryError(f"destination {dest.name!r} was removed; add it again to export")
        if resumed_from is not None:
            self.get_run(resumed_from)
        with self._write() as conn:
            return inserted_id(
                conn.execute(
                    insert(_RUN).values(
                        destination_id=dest.id,
                        destination_name=dest.name,
                        segments=list(segments),
                        mode=mode,
                        incremental=incremental,
                        dry_run=dry_run,
                        status="running",
                        config=dict(config or {}),
                        counts={},
                        operator=current_operator(),
                        host=self.host,
                        pid=os.getpid(),
                        started_at=_now(),
                        resumed_from=resumed_from,
                        plan_id=plan_id,
                        kind=kind,
                        undo_of=undo_of,
                    )
                )
            )

    def reopen_run(self, run_id: int) -> None:
        """Take over an unfinished run to resume it: it becomes ``running`` again
        under this process, keeping its batches (confirmed ones are not resent)."""
        self._update_run(
            run_id,
            status="running",
            ended_at=None,
            message=None,
            operator=current_operator(),
            host=self.host,
            pid=os.getpid(),
        )

    def update_run_counts(self, run_id: int, counts: Mapping[str, Any]) -> None:
        self._update_run(run_id, counts=dict(counts))

    def finish_run(
        self,
        run_id: int,
        status: str,
        counts: Mapping[str, Any] | None = None,
        message: str | None = None,
    ) -> None:
        """Close a run with a final status (anything but ``running``)."""
        if status not in RUN_STATUSES or status == "running":
            raise HistoryError(f"{status!r} is not a final run status")
        values: dict[str, Any] = {"status": status, "ended_at": _now(), "message": message}
        if counts is not None:
            values["counts"] = dict(counts)
        self._update_run(run_id, **values)

    def _update_run(self, run_id: int, **values: Any) -> None:
        with self._write() as conn:
            done = conn.execute(update(_RUN).where(_RUN.c.id == run_id).values(**values))
        if done.rowcount == 0:
            raise NotFound(f"no run {run_id}")

    def list_runs(
        self,
        destination: str | int | None = None,
        status: str | None = None,
        limit: int | None = 200,
    ) -> list[Run]:
        """Runs, newest first; ``destination`` is an id or a name: its current
        name or the one it had at the time of the run (so runs of renamed and
        removed destinations are found too)."""
        query = select(_RUN).order_by(_RUN.c.started_at.desc(), _RUN.c.id.desc()).limit(limit)
        if isinstance(destination, int):
            query = query.where(_RUN.c.destination_id == destination)
        elif destination is not None:
            renamed = select(_T.c.id).where(_T.c.name == destination)
            query = query.where(
                (_RUN.c.destination_name == destination) | _RUN.c.destination_id.in_(renamed)
            )
        if status is not None:
            query = query.where(_RUN.c.status == status)
        with self._read() as conn:
            return [_run(r) for r in conn.execute(query)]

    def get_run(self, run_id: int) -> RunDetail:
        with self._read() as conn:
            row = conn.execute(select(_RUN).where(_RUN.c.id == run_id)).first()
            if row is None:
                raise NotFound(f"no run {run_id}")
            batches = tuple(
                _row(Batch, b)
                for b in conn.execute(
                    select(_BATCH).where(_BATCH.c.run_id == run_id).order_by(_BATCH.c.seq)
                )
            )
            rejected = conn.execute(
                select(func.count()).select_from(_REJ).where(_REJ.c.run_id == run_id)
            ).scalar_one()
        return _row(
            RunDetail, row, segments=tuple(row.segments), batches=batches, rejected=rejected
        )

    def last_successful_run(self, destination_id: int) -> Run | None:
        """The newest finished, non-dry run of the destination (the incremental base)."""
        query = (
            select(_RUN)
            .where(
                _RUN.c.destination_id == destination_id,
                _RUN.c.status.in_(SUCCESS_STATUSES),
                _RUN.c.dry_run.is_(False),
            )
            .order_by(_RUN.c.started_at.desc(), _RUN.c.id.desc())
            .limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _run(row)

    def mark_interrupted_runs(self) -> list[int]:
        """Runs still ``running`` whose process on this host is gone become
        ``interrupted``; returns their ids. Runs of other hosts are left alone:
        we cannot tell whether they are alive."""
        with self._read() as conn:
            candidates = conn.execute(
                select(_RUN.c.id, _RUN.c.pid, _RUN.c.started_at).where(
                    _RUN.c.status == "running", _RUN.c.host == self.host
                )
            ).all()
        dead = [
            (run_id, pid)
            for run_id, pid, started_at in candidates
            if not run_process_alive(pid, started_at)
        ]
        for run_id, pid in dead:
            with self._write() as conn:
                conn.execute(
                    update(_RUN)
                    .where(_RUN.c.id == run_id, _RUN.c.status == "running")
                    .values(
                        status="interrupted",
                        ended_at=_now(),
                        message=f"process {pid} on {self.host} stopped before the run finished",
                    )
                )
        return [run_id for run_id, _ in dead]

    # -- batches ------------------------------------------------------------

    def add_batch(
        self,
        run_id: int,
        seq: int,
        contacts: int,
        bytes: int,
        first_email: str,
        last_email: str,
    ) -> None:
        """Record a prepared request body before it is sent."""
        with self._write() as conn:
            conn.execute(
                insert(_BATCH).values(
                    run_id=run_id,
                    seq=seq,
                    contacts=contacts,
                    bytes=bytes,
                    first_email=first_email,
                    last_email=last_email,
                    status="prepared",
                )
            )

    def mark_batch_sent(self, run_id: int, seq: int, job_id: str) -> None:
        self._update_batch(run_id, seq, status="sent", job_id=job_id, sent_at=_now())

    def mark_batch_finished(
        self,
        run_id: int,
        seq: int,
        status: str,
        created: int | None = None,
        updated: int | None = None,
        errored: int | None = None,
    ) -> None:
        """The import job reached a terminal status: completed, errored or failed."""
        if status not in FINAL_BATCH_STATUSES:
            raise HistoryError(f"{status!r} is not a final batch status")
        self._update_batch(
            run_id,
            seq,
            status=status,
            created=created,
            updated=updated,
            errored=errored,
            finished_at=_now(),
        )

    def _update_batch(self, run_id: int, seq: int, **values: Any) -> None:
        with self._write() as conn:
            done = conn.execute(
                update(_BATCH)
                .where(_BATCH.c.run_id == run_id, _BATCH.c.seq == seq)
                .values(**values)
            )
        if done.rowcount == 0:
            raise NotFound(f"no batch {seq} in run {run_id}")

    def next_batch_seq(self, run_id: int) -> int:
        """The seq the run's next batch takes: after every batch already recorded,
        so a resumed run never collides with the batches of its first attempt."""
        with self._read() as conn:
            top = conn.execute(
                select(func.max(_BATCH.c.seq)).where(_BATCH.c.run_id == run_id)
            ).scalar()
        return 0 if top is None else top + 1

    def confirmed_batches(self, run_id: int) -> list[int]:
        """Seqs of the batches SendGrid finished processing (completed or errored):
        a resume does not send their contacts again."""
        query = (
            select(_BATCH.c.seq)
            .where(_BATCH.c.run_id == run_id, _BATCH.c.status.in_(("completed", "errored")))
            .order_by(_BATCH.c.seq)
        )
        with self._read() as conn:
            return [seq for (seq,) in conn.execute(query)]

    # -- rejected rows ------------------------------------------------------

    def add_rejected(
        self,
        run_id: int,
        rows: Iterable[tuple[int | None, str | None, str | None, str, str]],
    ) -> int:
        """Bulk-record rejected rows ``(seq, key, email, reason, source)``; returns
        how many. One transaction, inserted with executemany in chunks (ORM
        objects per row would take seconds for 100k rows)."""
        with self._write() as conn:
            return self._insert_rejected(conn, run_id, rows)

    def replace_rejected(
        self,
        run_id: int,
        source: str,
        rows: Iterable[tuple[int | None, str | None, str | None, str, str]],
    ) -> int:
        """Swap all of a run's rows from ``source`` for ``rows``, in one transaction.

        A resumed run records its plan's rejections again this way: a kill while
        they were being written left none or some, and this leaves all or the old.
        """
        with self._write() as conn:
            conn.execute(_REJ.delete().where(_REJ.c.run_id == run_id, _REJ.c.source == source))
            return self._insert_rejected(conn, run_id, rows)

    @staticmethod
    def _insert_rejected(
        conn: Connection,
        run_id: int,
        rows: Iterable[tuple[int | None, str | None, str | None, str, str]],
    ) -> int:
        rows = iter(rows)
        total = 0
        while chunk := [(run_id, *r) for r in islice(rows, _REJECTED_CHUNK)]:
            bad = {r[5] for r in chunk} - set(REJECTION_SOURCES)
            if bad:
                raise HistoryError(f"unknown rejection source(s): {', '.join(map(str, bad))}")
            conn.exec_driver_sql(_REJECTED_INSERT, chunk)
            total += len(chunk)
        return total

    def rejected_rows(
        self, run_id: int, limit: int | None = None, source: str | None = None
    ) -> Iterator[RejectedRecord]:
        """A run's rejected rows in the order recorded; ``source``: only the
        plan's or only SendGrid's. Read page by page, each in its own short
        read, so a slow consumer (a CSV writer) holds nothing open."""
        last_id, left = 0, limit
        while left is None or left > 0:
            page = 5_000 if left is None else min(5_000, left)
            with self._read() as conn:
                rows = conn.exec_driver_sql(
                    *rejected_page(run_id, last_id, page, source)
                ).fetchall()
            if not rows:
                return
            for _row_id, *values in rows:
                yield RejectedRecord(run_id, *values)
            last_id = rows[-1][0]
            if left is not None:
                left -= len(rows)

    # -- maintenance --------------------------------------------------------

    def integrity_check(self) -> str:
        """SQLite's own verdict on the file: ``"ok"`` or the problems found."""
        with self._read() as conn:
            return "\n".join(r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check"))


def _check_destination_values(values: Mapping[str, Any]) -> None:
    if "name" in values and not values["name"]:
        raise HistoryError("a destination needs a name")
    storage = values.get("key_storage")
    if storage is not None and storage not in KEY_STORAGES:
        raise HistoryError(f"unknown key storage {storage!r}; expected one of {KEY_STORAGES}")
    if "cap" in values and (not isinstance(values["cap"], int) or values["cap"] < 1):
        raise HistoryError(f"the cap must be a positive number of profiles, not {values['cap']!r}")
    for name in ("max_removals", "max_adds"):
        value = values.get(name)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise HistoryError(
                f"{name} must be a whole number of people (0 or more), not {value!r}"
            )
    share = values.get("max_removal_share")
    if share is not None and not (isinstance(share, int | float) and 0 <= share <= 1):
        raise HistoryError(f"max_removal_share must be between 0 and 1, not {share!r}")
