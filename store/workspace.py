"""A workspace: a folder with ``segments.toml`` and a profile source, read through DuckDB.

The profile source is the user's own data, so it is only ever read: Parquet and CSV
through DuckDB table functions, a ``.duckdb`` file through ``ATTACH ... (READ_ONLY)``.
Segment predicates are user-written SQL; every connection handed out is locked down
(no file access beyond the source and explicitly allowed paths, configuration locked)
so a predicate can select rows but cannot write files, ATTACH databases or load code.
"""

from __future__ import annotations

import csv
import json
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

SEGMENTS_FILE = "segments.toml"
# ``profiles`` plus a 0-based source-order column, for planning (stable tie-breaks, report order).
NUMBERED_VIEW = "_profiles_numbered"
ROW_COLUMN = "_segsync_row"
SOURCE_KINDS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".duckdb": "duckdb"}


class WorkspaceError(Exception):
    """A workspace cannot be used; the message names the file and the problem."""


class PredicateError(WorkspaceError):
    """A segment predicate is not a single SQL expression or DuckDB rejects it."""


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


def quote_ident(name: str) -> str:
    """Quote a column name for DuckDB SQL (names come from user files)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote a string literal for DuckDB SQL."""
    return "'" + text.replace("'", "''") + "'"


def _describe(err: Exception) -> str:
    """DuckDB's message without the noisy exception class prefix."""
    return str(err).strip()


_TEMPLATE_TRUE = "SELECT * FROM profiles WHERE (\nTRUE\n)"


def _serialized_node(con: duckdb.DuckDBPyConnection, sql: str) -> dict | None:
    """The parsed SELECT node of ``sql`` as DuckDB serialises it, without its WHERE."""
    raw = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
    parsed = json.loads(raw)
    if parsed.get("error"):
        return None
    statements = parsed["statements"]
    if len(statements) != 1:
        return None
    node = statements[0]["node"]
    node.pop("where_clause", None)
    return node


def check_predicate(con: duckdb.DuckDBPyConnection, where: str) -> None:
    """Refuse anything that is not exactly one boolean-ish SQL expression.

    The predicate is pasted into ``SELECT * FROM profiles WHERE (...)``; a predicate
    such as ``1) UNION SELECT ... (1`` or ``1); COPY ...`` would still parse, so the
    parsed statement must be a single plain SELECT over ``profiles`` that differs
    from the template only in its WHERE clause.
    """
    if not where or not where.strip():
        raise PredicateError("the predicate is empty")
    sql = f"SELECT * FROM profiles WHERE (\n{where}\n)"
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise PredicateError(
            f"the predicate must be a single SQL expression: {_describe(err)}"
        ) from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise PredicateError("the predicate must be a single SQL expression (found a ';')")
    if _serialized_node(con, sql) != _serialized_node(con, _TEMPLATE_TRUE):
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
    source: Path
    kind: str
    table: str | None
    key: str | None
    _segments: tuple[Segment, ...]

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | Path) -> Workspace:
        """Open a workspace folder (or its ``segments.toml``) and check the source reads."""
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
        ws._check_source()
        return ws

    @classmethod
    def _from_config(cls, config_path: Path, root: Path, config: dict) -> Workspace:
        profiles = config.get("profiles")
        if not isinstance(profiles, dict) or not isinstance(profiles.get("path"), str):
            raise WorkspaceError(f'{config_path}: missing [profiles] path = "..."')
        source = (root / profiles["path"]).resolve()
        kind = SOURCE_KINDS.get(source.suffix.lower())
        if kind is None:
            raise WorkspaceError(
                f"{config_path}: unsupported profile source {profiles['path']!r} "
                f"(use {', '.join(SOURCE_KINDS)})"
            )
        table = profiles.get("table")
        if kind == "duckdb" and not isinstance(table, str):
            raise WorkspaceError(f"{config_path}: [profiles] table is required for .duckdb")
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

    def _check_source(self) -> None:
        """Fail at open time, naming the file, if the source cannot be read as profiles."""
        if not self.source.is_file():
            raise WorkspaceError(f"{self.source}: profile source file not found")
        if self.kind == "csv":
            self._check_csv_header()
        try:
            with self.connect() as con:
                cols = con.execute("DESCRIBE profiles").fetchall()
                if self.kind == "parquet":
                    raw = [
                        r[0]
                        for r in con.execute(
                            "SELECT name FROM parquet_schema(?) WHERE num_children IS NULL",
                            [str(self.source)],
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
            ragged = _ragged_row(self.source, likely) if names[0].count(likely) else None
            if ragged:
                raise WorkspaceError(f"{self.source}: cannot split into columns: {ragged}")
        if self.key is not None and self.key not in names:
            raise WorkspaceError(
                f"{self.config_path}: [profiles] key column {self.key!r} "
                f"is not in {self.source.name}"
            )

    def _check_csv_header(self) -> None:
        """DuckDB silently renames duplicate CSV headers (``email_1``); refuse them instead."""
        with duckdb.connect() as con:
            try:
                delim = con.execute(
                    "SELECT Delimiter FROM sniff_csv(?)", [str(self.source)]
                ).fetchone()[0]
            except duckdb.Error as err:
                raise WorkspaceError(f"{self.source}: {_reword(err, 'csv')}") from None
        try:
            with self.source.open(encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh, delimiter=delim), [])
        except UnicodeDecodeError:
            raise WorkspaceError(
                f"{self.source}: the file is not UTF-8 encoded; re-save it as UTF-8"
            ) from None
        _check_unique(header, self.source)

    # ------------------------------------------------------------- connecting
    def connect(self, allowed_paths: Iterable[str | Path] = ()) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory connection with a ``profiles`` view, locked down.

        After this, SQL on the connection may read the source and ``allowed_paths``
        (e.g. a destination ledger) but cannot touch other files, ATTACH, INSTALL or
        LOAD, or change these settings back.
        """
        con = duckdb.connect(":memory:")
        try:
            src = quote_literal(str(self.source))
            if self.kind == "parquet":
                # file_row_number gives the source order for free (no window over the scan).
                con.execute(
                    f"CREATE VIEW {NUMBERED_VIEW} AS SELECT * "
                    f"RENAME (file_row_number AS {ROW_COLUMN}) "
                    f"FROM read_parquet({src}, file_row_number = true)"
                )
                con.execute(
                    f"CREATE VIEW profiles AS SELECT * EXCLUDE ({ROW_COLUMN}) FROM {NUMBERED_VIEW}"
                )
            else:
                if self.kind == "csv":
                    relation = f"read_csv({src}, encoding = 'utf-8')"
                else:
                    con.execute(f"ATTACH {src} AS source (READ_ONLY)")
                    relation = f"source.{quote_ident(self.table or '')}"
                con.execute(f"CREATE VIEW profiles AS SELECT * FROM {relation}")
                con.execute(
                    f"CREATE VIEW {NUMBERED_VIEW} AS "
                    f"SELECT row_number() OVER () - 1 AS {ROW_COLUMN}, * FROM profiles"
                )
            paths = [str(self.source), *(str(Path(p).resolve()) for p in allowed_paths)]
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

    # ---------------------------------------------------------------- queries
    def columns(self, con: duckdb.DuckDBPyConnection | None = None) -> list[Column]:
        """Profile columns with DuckDB type names, in source order (on ``con`` when
        the caller has a connection open already)."""
        if con is not None:
            return [Column(r[0], r[1]) for r in con.execute("DESCRIBE profiles").fetchall()]
        with self.connect() as own:
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

    def check_segment(self, con: duckdb.DuckDBPyConnection, name: str) -> Segment:
        """Check a segment's predicate parses as one expression and binds against profiles."""
        seg = self.segment(name)
        try:
            check_predicate(con, seg.where)
            con.execute(f"SELECT count(*) FROM (SELECT * FROM profiles LIMIT 0) WHERE {_wrap(seg)}")
        except PredicateError as err:
            raise PredicateError(f"segment {name!r}: {err}") from None
        except duckdb.Error as err:
            raise PredicateError(f"segment {name!r}: {_describe(err)}") from None
        return seg

    def count_segments(self) -> list[SegmentCount]:
        """Member counts for every segment; a bad predicate is reported, others still count."""
        results: dict[str, SegmentCount] = {}
        good: list[Segment] = []
        with self.connect() as con:
            for seg in self._segments:
                try:
                    self.check_segment(con, seg.name)
                    good.append(seg)
                except PredicateError as err:
                    results[seg.name] = SegmentCount(seg.name, None, _strip_prefix(err, seg))
            if good:
                aggs = ", ".join(f"count(*) FILTER (WHERE {_wrap(s)})" for s in good)
                try:
                    row = con.execute(f"SELECT {aggs} FROM profiles").fetchone()
                    for seg, n in zip(good, row, strict=True):
                        results[seg.name] = SegmentCount(seg.name, int(n))
                except duckdb.Error:
                    # A runtime error (e.g. a failing cast) in one predicate: isolate it.
                    for seg in good:
                        try:
                            sql = f"SELECT count(*) FROM profiles WHERE {_wrap(seg)}"
                            n = con.execute(sql).fetchone()[0]
                            results[seg.name] = SegmentCount(seg.name, int(n))
                        except duckdb.Error as err:
                            results[seg.name] = SegmentCount(seg.name, None, _describe(err))
        return [results[s.name] for s in self._segments]

    def failing_segment(self, con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> str | None:
        """The first of ``names`` whose predicate fails on the data (e.g. a cast some
        value cannot take): such a predicate binds, so only evaluating it finds it."""
        for name in dict.fromkeys(names):
            try:
                con.execute(f"SELECT count(*) FROM profiles WHERE {_wrap(self.segment(name))}")
            except duckdb.Error:
                return name
        return None

    def union_filter(self, names: Sequence[str], con: duckdb.DuckDBPyConnection) -> str:
        """SQL condition selecting the union of ``names``; raises PredicateError if one is bad."""
        if not names:
            raise WorkspaceError(f"{self.config_path}: no segments selected")
        return " OR ".join(_wrap(self.check_segment(con, n)) for n in dict.fromkeys(names))

    def union_count(self, names: Sequence[str], email_column: str = "email") -> int:
        """Distinct normalised (trimmed, lower-cased, non-empty) emails in the union."""
        with self.connect() as con:
            cond = self.union_filter(names, con)
            email = f"NULLIF(lower(trim(CAST({quote_ident(email_column)} AS VARCHAR))), '')"
            try:
                sql = f"SELECT count(DISTINCT {email}) FROM profiles WHERE {cond}"
                return int(con.execute(sql).fetchone()[0])
            except duckdb.Error as err:
                raise WorkspaceError(f"{self.source}: {_describe(err)}") from None


def _wrap(seg: Segment) -> str:
    # Newlines keep a trailing ``--`` comment in the predicate from eating the parenthesis.
    return f"(\n{seg.where}\n)"


def _strip_prefix(err: Exception, seg: Segment) -> str:
    text = str(err)
    prefix = f"segment {seg.name!r}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _check_unique(names: Sequence[str], source: Path) -> None:
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
    if "no files found that match" in text.lower():
        return "the file does not exist (moved or deleted?)"
    if "not utf-8 encoded" in text.lower():
        lines = text.splitlines()
        return f"the file is not UTF-8 encoded (DuckDB: {lines[0].strip()}); re-save it as UTF-8"
    if kind == "parquet" and ("magic bytes" in text.lower() or "parquet" in text.lower()):
        return f"not a readable Parquet file (truncated or corrupt?): {text.splitlines()[0]}"
    return text
