"""A workspace: a folder with ``segments.toml`` and a profile source, read through DuckDB.

The profile source is the user's own data, so it is only ever read: Parquet and CSV
through DuckDB table functions, a ``.duckdb`` file through ``ATTACH ... (READ_ONLY)``,
a PostgreSQL table or view as one read-only snapshot copied into each connection
(``store/postgres_source.py``: predicates stay DuckDB SQL, evaluated by DuckDB).
Segment predicates are user-written SQL; every connection handed out is locked down
(no file access beyond the source and explicitly allowed paths, configuration locked)
so a predicate can select rows but cannot write files, ATTACH databases or load code.

A predicate can also be slow on purpose or by accident (``WITH RECURSIVE``, a huge
``range()``): every connection is registered so it can be interrupted from any
thread (Ctrl+C, SIGTERM, a cancelled export, a time limit), because DuckDB does not
look at Python's signals while a long query step runs.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import json
import os
import shutil
import stat
import tempfile
import threading
import tomllib
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from store.postgres_source import (
    Part,
    PostgresConfigError,
    PostgresSource,
    PostgresSourceError,
    SourceLost,
)
from store.records import Column, Segment, SegmentCount

SEGMENTS_FILE = "segments.toml"
# ``profiles`` plus a 0-based source-order column, for planning (stable tie-breaks, report order).
NUMBERED_VIEW = "_profiles_numbered"
ROW_COLUMN = "_segsync_row"
SOURCE_KINDS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".duckdb": "duckdb"}
# The table a Postgres snapshot is copied into on each connection (see connect()).
PG_SNAPSHOT = "_segsync_pg_profiles"


class WorkspaceError(Exception):
    """A workspace cannot be used; the message names the file and the problem."""


class PredicateError(WorkspaceError):
    """A segment predicate is not a single SQL expression or DuckDB rejects it."""


class QueryTimeout(WorkspaceError):
    """A query ran past its time limit and was interrupted; ``seconds`` is the limit."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class QueryInterrupted(Exception):
    """A query was stopped by Ctrl+C, SIGTERM or ``Workspace.interrupt()``.

    Deliberately not a WorkspaceError: callers that turn workspace problems into
    "fix your workspace" messages (exit 2) must let a cancellation through (exit 4).
    """


# Seconds a segment count may run by default (`segsync segments --query-timeout`).
DEFAULT_QUERY_TIMEOUT = 60.0
# Checking a predicate runs it over zero rows; anything slower than this is hostile.
CHECK_TIMEOUT = 10.0


def is_interrupt(err: BaseException) -> bool:
    """True when ``err`` means a query was interrupted rather than wrong.

    DuckDB reports ``con.interrupt()`` as ``duckdb.InterruptException``, and a
    signal it notices between query steps as ``RuntimeError("Query interrupted")``;
    both, like our own ``QueryInterrupted`` and ``KeyboardInterrupt``, are a
    cancellation, never a bad predicate or a bug.
    """
    if isinstance(err, QueryInterrupted | KeyboardInterrupt | duckdb.InterruptException):
        return True
    return type(err) is RuntimeError and "query interrupted" in str(err).lower()


class _Connections:
    """The open DuckDB connections of one workspace, interruptible from any thread.

    Weak references: a connection that is closed or dropped leaves by itself.
    Every connection is also in the process-wide set, so the command line can
    stop all queries on a signal without knowing which workspace runs them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
        self._cancelled: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
        # Work outside DuckDB to stop too: a Postgres read blocks in the driver
        # (waiting for the server) before DuckDB scans anything it could interrupt.
        self._cancels: dict[int, Callable[[], object]] = {}
        self._next = 0

    def add(self, con: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            self._live.add(con)

    def add_cancel(self, fn: Callable[[], object]) -> int:
        """Call ``fn`` on the next ``interrupt()``; returns a token for ``remove_cancel``."""
        with self._lock:
            self._next += 1
            self._cancels[self._next] = fn
            return self._next

    def remove_cancel(self, token: int) -> None:
        with self._lock:
            self._cancels.pop(token, None)

    def interrupt(self) -> int:
        with self._lock:
            cons = list(self._live)
            self._cancelled.update(cons)
            cancels = list(self._cancels.values())
        for fn in cancels:
            with contextlib.suppress(Exception):
                fn()
        return sum(_interrupt(con) for con in cons)

    def cancelled(self, con: duckdb.DuckDBPyConnection) -> bool:
        with self._lock:
            return con in self._cancelled


_PROCESS = _Connections()
# Which workspace registry each connection belongs to, so its cursors can join it.
_OWNERS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, _Connections] = (
    weakref.WeakKeyDictionary()
)
_OWNERS_LOCK = threading.Lock()
# A Postgres snapshot's Arrow rows registered on a connection (name -> table):
# registrations belong to one DuckDB connection, so its cursors get them too.
_ARROW: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


def _interrupt(con: duckdb.DuckDBPyConnection) -> bool:
    """Interrupt the query running on ``con``, if any; False once it is closed."""
    try:
        con.interrupt()
    except duckdb.Error:  # closed meanwhile: nothing to stop
        return False
    return True


def interrupt_all() -> int:
    """Interrupt every query on every workspace connection of this process.

    For the command line's signal watcher and its exit path: a query left running
    in a worker thread would keep the process alive after segsync has "exited".
    Returns how many open connections were told to stop.
    """
    return _PROCESS.interrupt()


def _register(con: duckdb.DuckDBPyConnection, owner: _Connections | None = None) -> None:
    _PROCESS.add(con)
    if owner is not None:
        owner.add(con)
        with _OWNERS_LOCK:
            _OWNERS[con] = owner


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """``con.cursor()``, interruptible together with ``con``.

    A DuckDB cursor is a connection of its own: interrupting its parent does not
    stop a query on it. A cursor made here is registered with the workspace that
    opened ``con`` (``Workspace.interrupt()``) and with the process
    (``interrupt_all()``), so a plan streaming contacts on a cursor stops on
    cancel like everything else. It also sees a Postgres snapshot's rows
    (registered Arrow tables, which a plain ``con.cursor()`` would not).
    """
    cur = con.cursor()
    with _OWNERS_LOCK:
        owner = _OWNERS.get(con)
        arrow = dict(_ARROW.get(con, {}))
    for name, table in arrow.items():
        cur.register(name, table)
    if arrow:
        with _OWNERS_LOCK:
            _ARROW[cur] = arrow
    _register(cur, owner)
    return cur


def register_connection(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Make a DuckDB connection opened outside a workspace (e.g. ``segsync sample``)
    stoppable by ``interrupt_all()``; returns it."""
    _register(con)
    return con


class _Deadline:
    """Interrupts ``con`` after ``seconds`` unless the block ends first."""

    def __init__(self, con: duckdb.DuckDBPyConnection, seconds: float | None) -> None:
        self.seconds = seconds
        self.fired = False
        self._lock = threading.Lock()
        self._done = False
        self._con = con
        self._timer = None if seconds is None else threading.Timer(seconds, self._fire)
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
        _interrupt(self._con)

    def finish(self) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()


def run_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[object] | None = None,
    *,
    timeout: float | None = None,
    what: str = "the query",
) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a workspace connection and fetch every row, within ``timeout``.

    Raises ``QueryTimeout`` when the limit stopped it, ``QueryInterrupted`` when a
    signal or ``Workspace.interrupt()`` did, and ``duckdb.Error`` for anything else.
    """
    deadline = _Deadline(con, timeout)
    try:
        return con.execute(sql, params).fetchall()
    except (duckdb.InterruptException, RuntimeError) as err:
        if deadline.fired and isinstance(err, duckdb.InterruptException):
            raise QueryTimeout(
                f"{what} took longer than {timeout:g} s and was stopped", timeout or 0.0
            ) from None
        if is_interrupt(err):
            raise QueryInterrupted("interrupted") from None
        raise
    finally:
        deadline.finish()


_temp_root: Path | None = None
_temp_lock = threading.Lock()


TEMP_PREFIX = "segsync-duckdb-"


def duckdb_temp_dir() -> Path:
    """A private (0700) folder for DuckDB's spill files, one per process.

    DuckDB's default is ``<cwd>/.tmp/``, which it lets SQL read even with external
    access off: a predicate could read whatever lies there, and spills would land
    in the user's current folder. Removed when the process exits; the folder of
    a process that could not exit (SIGKILL, power loss) is removed by the next
    one, so spilled personal data does not linger.
    """
    global _temp_root
    with _temp_lock:
        if _temp_root is None or not _temp_root.is_dir():
            _sweep_stale_temp_dirs()
            _temp_root = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
            atexit.register(shutil.rmtree, _temp_root, True)
        return _temp_root


def _sweep_stale_temp_dirs() -> None:
    """Remove this user's spill folders whose process is gone (named by pid)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        pid = folder.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
        try:
            info = folder.lstat()
        except OSError:
            continue
        if not pid.isdigit() or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        if not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def quote_ident(name: str) -> str:
    """Quote a column name for DuckDB SQL (names come from user files)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote a string literal for DuckDB SQL."""
    return "'" + text.replace("'", "''") + "'"


def _describe(err: BaseException) -> str:
    """DuckDB's message without the SQL segsync wrapped around the predicate.

    DuckDB quotes the failing statement (``LINE 1: SELECT count(*) FROM profiles
    WHERE (...``) with a caret under it: that is our internal SQL, not the user's
    predicate, and it only confuses. The first line names the problem.
    """
    lines = str(err).strip().splitlines()
    kept: list[str] = []
    for line in lines:
        if line.startswith("LINE ") or (kept and not line.strip() and len(kept) == 1):
            break
        kept.append(line)
    return "\n".join(kept).strip() or str(err).strip()


_TEMPLATE_TRUE = "SELECT * FROM profiles WHERE (\nTRUE\n)"


def _serialized_nodes(con: duckdb.DuckDBPyConnection, *sql: str) -> list[dict[str, Any] | None]:
    """The parsed SELECT node of each ``sql`` as DuckDB serialises it, without its
    WHERE, in one query (a query per statement cost a segment check a millisecond)."""
    calls = ", ".join("json_serialize_sql(?)" for _ in sql)
    row = con.execute(f"SELECT {calls}", list(sql)).fetchone() or ("{}",) * len(sql)
    return [_node(text) for text in row]


def _node(serialized: str) -> dict[str, Any] | None:
    parsed = json.loads(serialized)
    if parsed.get("error"):
        return None
    statements = parsed["statements"]
    if len(statements) != 1:
        return None
    node: dict[str, Any] = statements[0]["node"]
    node.pop("where_clause", None)
    return node


def predicate_columns(con: duckdb.DuckDBPyConnection, where: str) -> set[str] | None:
    """The names (lower-cased) a predicate may read as profile columns, from
    DuckDB's own parse tree: every part of every column reference (a table
    alias or a struct field too: more than needed is harmless). None when it
    cannot tell (a ``*`` anywhere, ``COLUMNS(...)``, a ``USING`` or ``NATURAL``
    join, or no parse): then every column is needed.

    For reading fewer columns of a Postgres source; the predicate is still
    DuckDB SQL evaluated by DuckDB, never sent to Postgres.
    """
    if "*" in where:  # SELECT *, COLUMNS(*), struct_pack(*) (its star is not in the tree)
        return None
    row = con.execute(
        "SELECT json_serialize_sql(?)", [f"SELECT 1 FROM profiles WHERE (\n{where}\n)"]
    ).fetchone()
    parsed = json.loads(row[0] if row else "{}")
    if parsed.get("error") or len(parsed.get("statements", ())) != 1:
        return None
    names: set[str] = set()

    def walk(node: object) -> bool:
        if isinstance(node, list):
            return all(walk(item) for item in node)
        if not isinstance(node, dict):
            return True
        if node.get("class") == "STAR" or node.get("type") == "STAR":
            return False
        if node.get("using_columns") or node.get("ref_type", "REGULAR") != "REGULAR":
            return False
        if node.get("class") == "COLUMN_REF":
            names.update(str(part).lower() for part in node.get("column_names", ()))
        return all(walk(value) for value in node.values())

    return names if walk(parsed["statements"]) else None


def check_predicate(con: duckdb.DuckDBPyConnection, where: str) -> None:
    """Refuse anything that is not exactly one boolean-ish SQL expression.

    The predicate is pasted into ``SELECT * FROM profiles WHERE (...)``; a predicate
    such as ``1) UNION SELECT ... (1`` or ``1); COPY ...`` would still parse, so the
    parsed statement must be a single plain SELECT over ``profiles`` that differs
    from the template only in its WHERE clause.
    """
    if not where or not where.strip():
        raise PredicateError("the predicate is empty")
    try:
        tokens = duckdb.tokenize(where)
    except duckdb.Error:
        tokens = []  # let the parser below explain what is wrong
    if tokens and all(kind == duckdb.token_type.comment for _pos, kind in tokens):
        raise PredicateError("the predicate is empty (it holds only a comment)")
    sql = f"SELECT * FROM profiles WHERE (\n{where}\n)"
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise PredicateError(
            f"the predicate must be a single SQL expression: {_describe(err)}"
        ) from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise PredicateError("the predicate must be a single SQL expression (found a ';')")
    predicate, template = _serialized_nodes(con, sql, _TEMPLATE_TRUE)
    if predicate != template:
        raise PredicateError(
            "the predicate must be a single SQL expression, not a query fragment "
            "(UNION, ORDER BY, GROUP BY, ... are not allowed)"
        )


def duckdb_memory_limit() -> str:
    """DuckDB's memory budget per query connection: $SEGSYNC_DUCKDB_MEMORY or 256MB."""
    return os.environ.get("SEGSYNC_DUCKDB_MEMORY", "256MB")


@dataclass(frozen=True)
class Workspace:
    """An opened workspace. Cheap to keep; every query uses a fresh locked connection."""

    root: Path
    config_path: Path
    # The profile file, or the Postgres table (``str()`` of either names it
    # without credentials; ``source_label`` is that text).
    source: Path | PostgresSource
    kind: str
    table: str | None
    key: str | None
    _segments: tuple[Segment, ...]
    _connections: _Connections = field(
        default_factory=_Connections, compare=False, hash=False, repr=False
    )
    # The row number's column name on NUMBERED_VIEW (set by connect: a name no
    # profile column has). Plans and explain read rows by it.
    row_column: str = field(default=ROW_COLUMN, compare=False)
    # The connection that checked the source, kept by ``open(count_next=True)``
    # for the first count_segments.
    _checked: list[duckdb.DuckDBPyConnection] = field(
        default_factory=list, compare=False, hash=False, repr=False
    )

    @property
    def source_label(self) -> str:
        """The source as shown to people: the file's path, or ``postgres host/db table``."""
        return str(self.source)

    @property
    def _path(self) -> Path:
        """The profile file of a file source (never called for Postgres)."""
        if not isinstance(self.source, Path):
            raise TypeError("not a file source")
        return self.source

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | Path, *, count_next: bool = False) -> Workspace:
        """Open a workspace folder (or its ``segments.toml``) and check the source reads.

        ``count_next``: the caller calls `count_segments` next (`segsync
        segments`), which then counts on the connection that checked the source:
        one new DuckDB database rather than two (~15 ms of CPU each)."""
        path = Path(path).expanduser()
        if path.is_dir() or path.suffix != ".toml":
            if not path.exists():
                raise WorkspaceError(f"{path}: workspace folder does not exist")
            if not path.is_dir():
                raise WorkspaceError(f"{path}: not a workspace folder or a .toml file")
            config_path = path / SEGMENTS_FILE
        else:
            config_path = path
        config_path = config_path.resolve()
        root = config_path.parent
        if not config_path.is_file():
            raise WorkspaceError(f"{config_path}: segments file not found")
        try:
            config = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise WorkspaceError(f"{config_path}: invalid TOML: {err}") from None
        except UnicodeDecodeError:
            raise WorkspaceError(f"{config_path}: not UTF-8 text") from None
        ws = cls._from_config(config_path, root, config)
        ws._check_source(keep=count_next)
        return ws

    @classmethod
    def _from_config(cls, config_path: Path, root: Path, config: dict[str, Any]) -> Workspace:
        profiles = config.get("profiles")
        source: Path | PostgresSource
        if isinstance(profiles, dict) and "postgres" in profiles:
            if "path" in profiles:
                raise WorkspaceError(
                    f"{config_path}: [profiles] has both path and postgres; keep one"
                )
            try:
                source = PostgresSource.from_config(profiles)
            except PostgresConfigError as err:
                raise WorkspaceError(f"{config_path}: {err}") from None
            kind = "postgres"
            table: str | None = source.table
        else:
            if not isinstance(profiles, dict) or not isinstance(profiles.get("path"), str):
                raise WorkspaceError(
                    f'{config_path}: missing [profiles] path = "..." (or postgres = "...")'
                )
            path = (root / profiles["path"]).resolve()
            source = path
            found = SOURCE_KINDS.get(path.suffix.lower())
            if found is None:
                raise WorkspaceError(
                    f"{config_path}: unsupported profile source {profiles['path']!r} "
                    f'(use {", ".join(SOURCE_KINDS)}, or postgres = "postgresql://...")'
                )
            kind = found
            configured = profiles.get("table")
            if kind == "duckdb" and not isinstance(configured, str):
                raise WorkspaceError(f"{config_path}: [profiles] table is required for .duckdb")
            table = configured if isinstance(configured, str) else None
        key = profiles.get("key")
        if key is not None and not isinstance(key, str):
            raise WorkspaceError(f"{config_path}: [profiles] key must be a column name")
        segments_cfg = config.get("segments", {})
        if not isinstance(segments_cfg, dict):
            raise WorkspaceError(f"{config_path}: [segments] must be a table of segments")
        segments = []
        for name, body in segments_cfg.items():
            if not isinstance(body, dict) or not isinstance(body.get("where"), str):
                raise WorkspaceError(
                    f'{config_path}: segment {name!r} needs where = "<SQL predicate>"'
                )
            segments.append(Segment(name, body["where"], str(body.get("description", ""))))
        return cls(root, config_path, source, kind, table, key, tuple(segments))

    def _check_source(self, keep: bool = False) -> None:
        """Fail at open time, naming the file, if the source cannot be read as profiles.
        ``keep``: keep the connection that checked it for `count_segments`."""
        if isinstance(self.source, PostgresSource):
            self._check_postgres()
            return
        if not self.source.is_file():
            raise WorkspaceError(f"{self.source}: profile source file not found")
        if self.kind == "csv":
            self._check_csv_header()
        con = self.connect()
        try:
            self._check_columns(con)
        except BaseException:
            con.close()
            raise
        if keep:
            self._checked.append(con)
        else:
            con.close()

    def _check_columns(self, con: duckdb.DuckDBPyConnection) -> None:
        try:
            cols = con.execute("DESCRIBE profiles").fetchall()
            if self.kind == "parquet":
                raw = [
                    r[0]
                    for r in con.execute(
                        "SELECT name FROM parquet_schema(?) WHERE num_children IS NULL",
                        [str(self._path)],
                    ).fetchall()
                ]
                _check_unique(raw, self.source)
            elif self.kind == "csv":
                # The sniffer only reads a sample; scanning proves the whole file is UTF-8.
                con.execute("SELECT count(*) FROM profiles").fetchone()
        except duckdb.Error as err:
            raise WorkspaceError(f"{self.source}: {_reword(err, self.kind)}") from None
        names = [c[0] for c in cols]
        if self.kind == "csv" and len(names) == 1:
            # One column whose name holds delimiters: the sniffer gave up on splitting,
            # which a row with more or fewer fields than the header causes.
            likely = max(",;\t|", key=names[0].count)
            ragged = _ragged_row(self._path, likely) if names[0].count(likely) else None
            if ragged:
                raise WorkspaceError(f"{self.source}: cannot split into columns: {ragged}")
        if self.key is not None and self.key not in names:
            raise WorkspaceError(
                f"{self.config_path}: [profiles] key column {self.key!r} "
                f"is not in {self._path.name}"
            )

    def _check_postgres(self) -> None:
        """Connect, find the table, map its column types and check the key, reading
        no rows: a wrong URL, password, table or type fails here, naming the fix."""
        with self.connect(schema_only=True) as con:
            names = [r[0] for r in con.execute("DESCRIBE profiles").fetchall()]
        _check_unique(names, self.source)
        if self.key is not None and self.key not in names:
            raise WorkspaceError(
                f"{self.config_path}: [profiles] key column {self.key!r} "
                f"is not in {self.source_label}"
            )

    def _check_csv_header(self) -> None:
        """DuckDB silently renames duplicate CSV headers (``email_1``); refuse them instead."""
        with register_connection(duckdb.connect()) as con:
            try:
                sniffed = con.execute(
                    "SELECT Delimiter FROM sniff_csv(?)", [str(self._path)]
                ).fetchone()
                delim = str(sniffed[0]) if sniffed else ","
            except duckdb.Error as err:
                raise WorkspaceError(f"{self.source}: {_reword(err, 'csv')}") from None
        try:
            with self._path.open(encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh, delimiter=delim), [])
        except UnicodeDecodeError:
            raise WorkspaceError(
                f"{self.source}: the file is not UTF-8 encoded; re-save it as UTF-8"
            ) from None
        _check_unique(header, self.source)

    # ------------------------------------------------------------- connecting
    def connect(
        self,
        allowed_paths: Iterable[str | Path] = (),
        *,
        schema_only: bool = False,
        columns: Collection[str] | None = None,
    ) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory connection with a ``profiles`` view, locked down.

        After this, SQL on the connection may read the source and ``allowed_paths``
        (e.g. a destination ledger) but cannot touch other files, ATTACH, INSTALL or
        LOAD, or change these settings back.

        A Postgres source is read here, once: its snapshot is copied into the
        connection (before the lockdown), so every query on it sees the same rows.
        ``schema_only`` copies only its columns, for checks that read no rows;
        ``columns`` (names, any case) copies only those of the source's columns,
        for callers that know every column their SQL reads (``plan_columns``):
        ``profiles`` then has only those. File sources ignore both: their views
        read nothing until queried, and only the columns a query names.
        Raises ``SourceLost`` when the Postgres connection breaks mid-read.
        """
        con = duckdb.connect(":memory:")
        _register(con, self._connections)
        try:
            # Before anything reads the source: spills go to a private folder, and
            # the folder SQL may read is not the user's ``./.tmp``.
            con.execute(f"SET temp_directory = {quote_literal(str(duckdb_temp_dir()))}")
            if isinstance(self.source, PostgresSource):
                self._load_postgres(con, self.source, schema_only, columns)
                return self._lock_down(con, [], allowed_paths)
            src = quote_literal(str(self.source))
            if self.kind == "parquet":
                con.execute(f"CREATE VIEW profiles AS SELECT * FROM read_parquet({src})")
            else:
                if self.kind == "csv":
                    relation = f"read_csv({src}, encoding = 'utf-8')"
                else:
                    con.execute(f"ATTACH {src} AS source (READ_ONLY)")
                    relation = f"source.{quote_ident(self.table or '')}"
                con.execute(f"CREATE VIEW profiles AS SELECT * FROM {relation}")
            # The row number gets a name no profile column has: any legal column
            # name (even ``_segsync_row``) stays the user's own.
            names = {r[0].lower() for r in con.execute("DESCRIBE profiles").fetchall()}
            row_column = _free_name(ROW_COLUMN, names)
            object.__setattr__(self, "row_column", row_column)  # same for every connection
            rc = quote_ident(row_column)
            if self.kind == "parquet" and "file_row_number" not in names:
                # file_row_number gives the source order for free (no window over the scan).
                con.execute(
                    f"CREATE VIEW {NUMBERED_VIEW} AS SELECT * "
                    f"RENAME (file_row_number AS {rc}) "
                    f"FROM read_parquet({src}, file_row_number = true)"
                )
            else:  # the source has its own ``file_row_number``, or is not Parquet
                con.execute(
                    f"CREATE VIEW {NUMBERED_VIEW} AS "
                    f"SELECT row_number() OVER () - 1 AS {rc}, * FROM profiles"
                )
            return self._lock_down(con, [str(self.source)], allowed_paths)
        except duckdb.Error as err:
            con.close()
            raise WorkspaceError(f"{self.source}: {_reword(err, self.kind)}") from None

    def _lock_down(
        self,
        con: duckdb.DuckDBPyConnection,
        source_paths: list[str],
        allowed_paths: Iterable[str | Path],
    ) -> duckdb.DuckDBPyConnection:
        """The same settings for every source, last: nothing SQL can change back."""
        try:
            paths = [*source_paths, *(str(Path(p).resolve()) for p in allowed_paths)]
            con.execute(f"SET allowed_paths = [{', '.join(quote_literal(p) for p in paths)}]")
            # A progress bar on stderr would scribble over the TUI on long queries.
            con.execute("SET enable_progress_bar = false")
            # Sorting a million contacts would otherwise hold them all in memory;
            # past this DuckDB spills to its temp files and memory stays flat.
            con.execute(f"SET memory_limit = {quote_literal(duckdb_memory_limit())}")
            con.execute("SET autoinstall_known_extensions = false")
            con.execute("SET autoload_known_extensions = false")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except duckdb.Error as err:
            con.close()
            raise WorkspaceError(f"{self.source}: {_reword(err, self.kind)}") from None
        return con

    def _load_postgres(
        self,
        con: duckdb.DuckDBPyConnection,
        source: PostgresSource,
        schema_only: bool,
        columns: Collection[str] | None = None,
    ) -> None:
        """Copy the Postgres snapshot into ``con`` and define ``profiles`` and the
        numbered view over it (same contract as for files); closes ``con`` on failure."""
        try:
            # The rows are the driver's Arrow memory, outside DuckDB's budget; the
            # queries over them get the same budget as for files.
            con.execute(f"SET memory_limit = {quote_literal(duckdb_memory_limit())}")
            con.execute("SET enable_progress_bar = false")
            with self._cancel_scope() as on_cancel:
                parts = source.load(
                    con, PG_SNAPSHOT, rows=not schema_only, columns=columns, on_cancel=on_cancel
                )
            registered = {p.arrow_name: p.arrow for p in parts if p.arrow is not None}
            if registered:
                with _OWNERS_LOCK:
                    _ARROW[con] = registered

            def star(part: Part) -> str:  # a part's profile columns
                return "*" if part.row == "rowid" else f"* EXCLUDE ({part.row})"

            con.execute(
                "CREATE VIEW profiles AS "
                + " UNION ALL ".join(f"SELECT {star(p)} FROM {p.name}" for p in parts)
            )
            names = {r[0].lower() for r in con.execute("DESCRIBE profiles").fetchall()}
            row_column = _free_name(ROW_COLUMN, names)
            object.__setattr__(self, "row_column", row_column)
            rc = quote_ident(row_column)
            if "rowid" in names and any(p.row == "rowid" for p in parts):
                # a profile column shadows the table's rowid
                con.execute(
                    f"CREATE VIEW {NUMBERED_VIEW} AS "
                    f"SELECT row_number() OVER () - 1 AS {rc}, * FROM profiles"
                )
            else:
                # Each part numbers its rows in load order, 0-based, for free (a
                # table's rowid; no window); the parts (page ranges, in page
                # order) follow one another.
                selects, offset = [], 0
                for part in parts:
                    selects.append(
                        f"SELECT {part.row} + {offset} AS {rc}, {star(part)} FROM {part.name}"
                    )
                    found = con.execute(f"SELECT count(*) FROM {part.name}").fetchall()
                    offset += int(found[0][0])
                con.execute(f"CREATE VIEW {NUMBERED_VIEW} AS " + " UNION ALL ".join(selects))
        except PostgresSourceError as err:
            stopped = self._connections.cancelled(con) or _PROCESS.cancelled(con)
            con.close()
            if stopped:  # the server cancelled the read because we asked it to
                raise QueryInterrupted("interrupted") from None
            raise WorkspaceError(f"{source}: {err}") from None
        except SourceLost:
            con.close()
            raise
        except duckdb.Error as err:
            con.close()
            if is_interrupt(err) or self._connections.cancelled(con):
                raise QueryInterrupted("interrupted") from None
            raise WorkspaceError(f"{source}: {_describe(err)}") from None

    @contextlib.contextmanager
    def _cancel_scope(self) -> Iterator[Callable[[Callable[[], object] | None], None]]:
        """While a Postgres read runs: ``on_cancel(fn)`` makes ``interrupt()`` (this
        workspace's, or ``interrupt_all()`` on a signal) also call ``fn`` (the
        driver's cancel), which stops a read still waiting for the server."""
        tokens: list[tuple[_Connections, int]] = []

        def on_cancel(fn: Callable[[], object] | None) -> None:
            for registry, token in tokens:
                registry.remove_cancel(token)
            tokens.clear()
            if fn is not None:
                tokens.extend((reg, reg.add_cancel(fn)) for reg in (_PROCESS, self._connections))

        try:
            yield on_cancel
        finally:
            on_cancel(None)

    def interrupt(self) -> int:
        """Stop every query running on connections this workspace opened; thread-safe.

        For a cancelled export: the query raises ``duckdb.InterruptException`` in the
        thread running it, and from then on the workspace's own helpers
        (``check_segment``, ``count_segments``, ``failing_segment``, ``run_query``
        callers) raise ``QueryInterrupted`` on those connections instead of running
        more SQL. Connections opened later are not affected. Returns how many open
        connections were told to stop.
        """
        return self._connections.interrupt()

    def track(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """Add a connection derived from one of ours (``con.cursor()``) so that
        ``interrupt()`` reaches it too: a cursor is a connection of its own, and
        interrupting its parent does not stop it. Returns ``con``."""
        _register(con, self._connections)
        return con

    def _guard(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._connections.cancelled(con):
            raise QueryInterrupted("interrupted")

    # ---------------------------------------------------------------- queries
    def columns(self, con: duckdb.DuckDBPyConnection | None = None) -> list[Column]:
        """Profile columns with DuckDB type names, in source order (on ``con`` when
        the caller has a connection open already)."""
        if con is not None:
            return [Column(r[0], r[1]) for r in con.execute("DESCRIBE profiles").fetchall()]
        with self.connect(schema_only=True) as own:
            return self.columns(own)

    def segments(self) -> list[Segment]:
        """Segments in the order the file defines them."""
        return list(self._segments)

    def segment(self, name: str) -> Segment:
        """One segment by name; WorkspaceError names the file when it is not defined."""
        for seg in self._segments:
            if seg.name == name:
                return seg
        known = ", ".join(s.name for s in self._segments) or "none"
        raise WorkspaceError(f"{self.config_path}: no segment named {name!r} (known: {known})")

    def check_segment(
        self, con: duckdb.DuckDBPyConnection, name: str, *, timeout: float | None = CHECK_TIMEOUT
    ) -> Segment:
        """Check a segment's predicate parses as one expression and binds against profiles.

        The binding check evaluates the predicate over zero rows, which is instant
        for any honest predicate; ``timeout`` stops one that computes something
        huge regardless (a ``range()`` or ``WITH RECURSIVE`` subquery).
        """
        seg = self.segment(name)
        self._guard(con)
        try:
            check_predicate(con, seg.where)
            run_query(
                con,
                f"SELECT count(*) FROM (SELECT * FROM profiles LIMIT 0) WHERE {_wrap(seg)}",
                timeout=timeout,
                what="checking the predicate",
            )
        except PredicateError as err:
            raise PredicateError(f"segment {name!r}: {err}") from None
        except QueryTimeout as err:
            raise PredicateError(f"segment {name!r}: {err}") from None
        except duckdb.Error as err:
            if is_interrupt(err):
                raise QueryInterrupted("interrupted") from None
            raise PredicateError(f"segment {name!r}: {_describe(err)}") from None
        return seg

    def columns_read(self, segments: Iterable[Segment], *extra: str) -> set[str] | None:
        """For ``connect(columns=...)``: the columns (lower-cased) that ``segments``'
        predicates and ``extra`` read, where a source copies what it reads
        (Postgres); None (every column) for files, or when a predicate may read
        any column (``predicate_columns``)."""
        if not isinstance(self.source, PostgresSource):
            return None
        names = {e.lower() for e in extra}
        with duckdb.connect(":memory:") as parser:  # parses only: reads no table
            for seg in segments:
                try:
                    found = predicate_columns(parser, seg.where)
                except duckdb.Error:
                    return None
                if found is None:
                    return None
                names |= found
        return names

    def count_segments(self, timeout: float | None = DEFAULT_QUERY_TIMEOUT) -> list[SegmentCount]:
        """Member counts for every segment; a bad or slow predicate is reported, others
        still count.

        All good segments are counted in one scan. When that scan fails or runs past
        ``timeout`` seconds, each segment is counted on its own (each within
        ``timeout``), so the error names the segment at fault. Ctrl+C, SIGTERM or
        ``interrupt()`` raise ``QueryInterrupted``: a cancellation is not a segment error.
        """
        results: dict[str, SegmentCount] = {}
        good: list[Segment] = []
        check_timeout = _shorter(timeout, CHECK_TIMEOUT)
        if self._checked:  # opened with count_next: the connection that checked the source
            counting = self._checked.pop()
        else:
            counting = self.connect(columns=self.columns_read(self._segments))
        with counting as con:
            if self._all_bind(con, check_timeout):
                good = list(self._segments)
            for seg in [] if good else self._segments:  # one is wrong: find which
                try:
                    self.check_segment(con, seg.name, timeout=check_timeout)
                    good.append(seg)
                except PredicateError as err:
                    results[seg.name] = SegmentCount(seg.name, None, _strip_prefix(err, seg))
            if good:
                aggs = ", ".join(f"count(*) FILTER (WHERE {_wrap(s)})" for s in good)
                try:
                    row = run_query(con, f"SELECT {aggs} FROM profiles", timeout=timeout)[0]
                    for seg, n in zip(good, row, strict=True):
                        results[seg.name] = SegmentCount(seg.name, int(n))
                except (duckdb.Error, QueryTimeout):
                    # A runtime error (e.g. a failing cast) or a slow predicate: isolate it.
                    for seg in good:
                        results[seg.name] = self._count_one(con, seg, timeout)
        return [results[s.name] for s in self._segments]

    def _all_bind(self, con: duckdb.DuckDBPyConnection, timeout: float | None) -> bool:
        """Whether every segment passes `check_segment`, binding all predicates in
        one query over zero rows (a query each cost `segments` a few milliseconds
        per segment). False leaves it to `check_segment` to name the culprit, so a
        predicate slow even over zero rows waits out the check's limit twice."""
        try:
            for seg in self._segments:
                self._guard(con)
                check_predicate(con, seg.where)
            if self._segments:
                every = " AND ".join(_wrap(s) for s in self._segments)  # each bound in WHERE
                self._guard(con)
                run_query(
                    con,
                    f"SELECT count(*) FROM (SELECT * FROM profiles LIMIT 0) WHERE {every}",
                    timeout=timeout,
                    what="checking the predicates",
                )
        except (PredicateError, QueryTimeout, duckdb.Error):
            return False
        return True

    def _count_one(
        self, con: duckdb.DuckDBPyConnection, seg: Segment, timeout: float | None
    ) -> SegmentCount:
        self._guard(con)
        sql = f"SELECT count(*) FROM profiles WHERE {_wrap(seg)}"
        try:
            n = run_query(con, sql, timeout=timeout, what="counting")[0][0]
        except QueryTimeout as err:
            hint = "raise --query-timeout, or simplify the predicate"
            return SegmentCount(seg.name, None, f"{err}; {hint}")
        except duckdb.Error as err:
            if is_interrupt(err):
                raise QueryInterrupted("interrupted") from None
            return SegmentCount(seg.name, None, _describe(err))
        return SegmentCount(seg.name, int(n))

    def failing_segment(
        self,
        con: duckdb.DuckDBPyConnection,
        names: Sequence[str],
        *,
        timeout: float | None = DEFAULT_QUERY_TIMEOUT,
    ) -> str | None:
        """The first of ``names`` whose predicate fails on the data (e.g. a cast some
        value cannot take): such a predicate binds, so only evaluating it finds it.

        Raises ``QueryInterrupted`` if the connection was interrupted: the failure
        being explained was the interrupt, not a predicate.
        """
        for name in dict.fromkeys(names):
            self._guard(con)
            try:
                run_query(
                    con,
                    f"SELECT count(*) FROM profiles WHERE {_wrap(self.segment(name))}",
                    timeout=timeout,
                )
            except QueryTimeout:
                return name
            except duckdb.Error as err:
                if is_interrupt(err):
                    raise QueryInterrupted("interrupted") from None
                return name
        return None

    def runtime_error(
        self, con: duckdb.DuckDBPyConnection, names: Sequence[str], err: BaseException
    ) -> Exception:
        """The error to raise when SQL over ``names``' union failed at run time.

        ``QueryInterrupted`` if it was an interrupt; a ``PredicateError`` naming the
        segment whose predicate fails on the data, with DuckDB's message but not the
        internal SQL; else a ``WorkspaceError`` naming the source. Callers
        ``raise ws.runtime_error(con, names, err) from None``.
        """
        if is_interrupt(err) or self._connections.cancelled(con):
            return QueryInterrupted("interrupted")
        culprit = self.failing_segment(con, names)
        if culprit is not None:
            return PredicateError(
                f"segment {culprit!r}: the predicate fails on the data: {_describe(err)}"
            )
        return WorkspaceError(f"{self.source}: {_describe(err)}")

    def union_filter(self, names: Sequence[str], con: duckdb.DuckDBPyConnection) -> str:
        """SQL condition selecting the union of ``names``; raises PredicateError if one is bad."""
        if not names:
            raise WorkspaceError(f"{self.config_path}: no segments selected")
        return " OR ".join(_wrap(self.check_segment(con, n)) for n in dict.fromkeys(names))

    def union_count(self, names: Sequence[str], email_column: str = "email") -> int:
        """Distinct normalised (trimmed, lower-cased, non-empty) emails in the union."""
        chosen = [s for s in self._segments if s.name in set(names)]
        with self.connect(columns=self.columns_read(chosen, email_column)) as con:
            cond = self.union_filter(names, con)
            email = f"NULLIF(lower(trim(CAST({quote_ident(email_column)} AS VARCHAR))), '')"
            try:
                sql = f"SELECT count(DISTINCT {email}) FROM profiles WHERE {cond}"
                return int(run_query(con, sql)[0][0])
            except duckdb.Error as err:
                raise self.runtime_error(con, names, err) from None


def _free_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3``... whichever no column (any case) has."""
    name, n = base, 1
    while name.lower() in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _shorter(a: float | None, b: float | None) -> float | None:
    """The tighter of two time limits (None: no limit)."""
    limits = [t for t in (a, b) if t is not None]
    return min(limits) if limits else None


def _wrap(seg: Segment) -> str:
    # Newlines keep a trailing ``--`` comment in the predicate from eating the parenthesis.
    return f"(\n{seg.where}\n)"


def _strip_prefix(err: Exception, seg: Segment) -> str:
    text = str(err)
    prefix = f"segment {seg.name!r}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _check_unique(names: Sequence[str], source: object) -> None:
    """Column names must be unique ignoring case, as DuckDB identifiers are."""
    seen: dict[str, str] = {}
    for name in names:
        low = name.lower()
        if low in seen:
            raise WorkspaceError(
                f"{source}: duplicate column name {name!r} (also {seen[low]!r}); "
                "rename one so each column can be mapped unambiguously"
            )
        seen[low] = name


def _ragged_row(source: Path, delim: str) -> str | None:
    """Where a CSV's rows stop having as many fields as its header (None: they don't)."""
    with source.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delim)
        width = len(next(reader, []))
        for row in reader:
            if row and len(row) != width:
                return (
                    f"line {reader.line_num} has {len(row)} fields, the header {width}; "
                    "quote values that contain the delimiter"
                )
    return None


def _reword(err: Exception, kind: str) -> str:
    """Put the cause first in DuckDB's messages about unreadable sources."""
    text = _describe(err)
    if kind == "csv" and "error when sniffing file" in text.lower():
        return (
            "not a readable CSV file: no consistent delimiter or quoting found "
            "(a binary file, or not comma-, semicolon-, tab- or pipe-separated text?)"
        )
    if "no files found that match" in text.lower():
        return "the file does not exist (moved or deleted?)"
    if "not utf-8 encoded" in text.lower():
        lines = text.splitlines()
        return f"the file is not UTF-8 encoded (DuckDB: {lines[0].strip()}); re-save it as UTF-8"
    if kind == "parquet" and ("magic bytes" in text.lower() or "parquet" in text.lower()):
        return f"not a readable Parquet file (truncated or corrupt?): {text.splitlines()[0]}"
    return text
