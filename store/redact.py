"""Erase one person from every local record segsync keeps (the local half of `forget`).

Erasure has to reach every copy, not just the obvious one, so this module
works on the state folder as files rather than through the code that wrote
them: whatever kind of record holds the address, in whatever table or column,
is found and rewritten.

- The history database (and its upgrade backups ``history.db.v*.bak``): every
  TEXT value of every table that contains the address (any case, also as
  JSON-escaped text) gets it replaced by a token ``forgotten:<16 hex>`` (the
  start of the person's salted digest, see ``store.forgotten``). Rows stay, so
  every count and total still adds up. Then the WAL is checkpointed and
  truncated and the file VACUUMed, so no old page or WAL frame keeps it.
- Parquet and Arrow files (ledgers, plans, people records, batch address
  files): rewritten atomically and owner-only. A ledger drops the person's row
  (the ledger is "who segsync believes is on the list", and forget took them
  off); every other record keeps the row with the token in place of the
  address and without the person's profile key, payload or payload digest.
- A plan that could still be resumed by an unfinished run has the person's
  rows turned into ``rejected`` (reason ``forgotten``): a resume then neither
  sends nor records them.

Matching is by whole address: ``a@b.com`` is not found inside ``aa@b.com`` or
``a@b.community``, so nobody else's record is touched. `find_traces` searches
every file afterwards (the values of Parquet and SQLite files, the raw bytes of
Arrow files and of everything else) and names any that still hold the address.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from store.atomic import write_atomic

TOKEN_PREFIX = "forgotten:"
# Characters that may sit right before an address in a longer one (its local
# part) and right after it (its domain): a match must have neither, so erasing
# a@b.com never rewrites aa@b.com or a@b.com.au. Quotes, backticks, braces and
# bars are left out: messages quote addresses with them ('a@b.com').
_LOCAL = r"\w.!#$%&*+/=?^~\-"
_DOMAIN = r"\w\-"
SQLITE_HEADER = b"SQLite format 3\x00"
# Seconds to wait for other readers of the history before compacting it.
COMPACT_WAIT = 5.0
# Plans of runs that can still be resumed, and plans still to be applied.
_UNFINISHED_RUN = ("interrupted", "cancelled", "failed", "running")


class RedactionIncomplete(Exception):
    """A record could not be fully redacted (the message says which and why)."""


def normalise(email: str) -> str:
    """The form segsync keys people by (as the plan does): trimmed, lower-cased."""
    return email.strip().lower()


def token_for(digest: str) -> str:
    """What replaces the address: the start of its salted digest (64 bits: unique
    enough to tell people apart in a run's record, useless without the salt)."""
    return TOKEN_PREFIX + digest[:16]


class Matcher:
    """Finds one address as a whole, in any case, plain or JSON-escaped."""

    def __init__(self, email: str) -> None:
        self.email = normalise(email)
        if not self.email:
            raise ValueError("an address to forget cannot be empty")
        variants = {
            self.email,
            json.dumps(self.email)[1:-1],  # how SQLAlchemy's JSON columns store it
            json.dumps(self.email, ensure_ascii=False)[1:-1],
            self.email.replace("/", "\\/"),
        }
        self.variants = tuple(sorted(variants, key=len, reverse=True))
        alternatives = "|".join(re.escape(v) for v in self.variants)
        self._regex = re.compile(
            f"(?<![{_LOCAL}])(?:{alternatives})(?![{_DOMAIN}]|\\.[{_DOMAIN}])", re.IGNORECASE
        )
        self._raw = [v.encode() for v in self.variants]

    def found_in(self, text: object) -> bool:
        return isinstance(text, str) and self._regex.search(text) is not None

    def replace(self, text: str, token: str) -> str:
        return self._regex.sub(token, text)

    def is_person(self, text: object) -> bool:
        """Whether a value *is* this address (an email column), not just mentions it."""
        return isinstance(text, str) and normalise(text) == self.email

    def in_bytes(self, data: bytes) -> bool:
        """Raw search of a file's bytes (ASCII case folded); no word boundaries,
        because in a binary file the byte before a value is often a letter."""
        low = data.lower()
        return any(v.lower() in low for v in self._raw)

    def candidates(self, column: pa.ChunkedArray | pa.Array) -> pa.Array:
        """A boolean mask of the values that may hold the address (vectorised
        substring search); `found_in` decides on these few."""
        mask = None
        for variant in self.variants:
            hit = pc.match_substring(column, variant, ignore_case=True)
            mask = hit if mask is None else pc.or_(mask, hit)
        return pc.fill_null(mask, False)


# -- the history database ------------------------------------------------------


@dataclass
class DatabaseReport:
    path: Path
    values: dict[str, int] = field(default_factory=dict)  # "table.column" -> values rewritten

    @property
    def total(self) -> int:
        return sum(self.values.values())


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def redact_database(path: Path, matcher: Matcher, token: str) -> DatabaseReport:
    """Replace the address in every TEXT value of every table of the SQLite file
    at ``path``, then checkpoint, truncate the WAL and VACUUM.

    Works on any schema (current, older backups, tables added later): what
    matters is that no value anywhere keeps the address. A row that names the
    person in an ``email`` column also loses its ``key`` (the profile's id in
    the source identifies them just as well). Raises `RedactionIncomplete`
    when another process keeps the WAL from being truncated.
    """
    report = DatabaseReport(Path(path))
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        con.execute("PRAGMA busy_timeout = 30000")
        con.execute("PRAGMA secure_delete = ON")  # freed space is zeroed, not left behind
        con.create_function("seg_has", 1, matcher.found_in, deterministic=True)
        con.create_function(
            "seg_sub", 1, lambda v: matcher.replace(v, token) if isinstance(v, str) else v
        )
        con.create_function("seg_is", 1, matcher.is_person, deterministic=True)
        con.execute("BEGIN IMMEDIATE")
        try:
            tables = [
                name
                for (name,) in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            ]
            for table in tables:
                columns = [row[1] for row in con.execute(f"PRAGMA table_info({_ident(table)})")]
                if "email" in columns and "key" in columns:
                    con.execute(
                        f"UPDATE {_ident(table)} SET key = NULL "
                        "WHERE typeof(email) = 'text' AND seg_is(email)"
                    )
                for column in columns:
                    col = _ident(column)
                    done = con.execute(
                        f"UPDATE {_ident(table)} SET {col} = seg_sub({col}) "
                        f"WHERE typeof({col}) = 'text' AND seg_has({col})"
                    ).rowcount
                    if done:
                        report.values[f"{table}.{column}"] = done
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        # Readers (the app) hold snapshots only briefly; one that does not let go
        # fails the erasure with a clear message rather than hanging it.
        con.execute(f"PRAGMA busy_timeout = {int(COMPACT_WAIT * 1000)}")
        try:
            _truncate_wal(con, path)
            con.execute("VACUUM")  # rebuilds every page: nothing freed keeps old text
            _truncate_wal(con, path)
        except sqlite3.OperationalError as exc:
            raise RedactionIncomplete(_busy_message(path, str(exc))) from None
    finally:
        con.close()
    return report


def _busy_message(path: Path, why: str) -> str:
    return (
        f"{path}: the address is replaced, but another program (the segsync app?) holds "
        f"the history open ({why}), so old copies in its write-ahead log and free pages "
        "could not be wiped; close it and run `segsync forget` again for this address"
    )


def _truncate_wal(con: sqlite3.Connection, path: Path) -> None:
    busy, _log, _done = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        raise RedactionIncomplete(_busy_message(path, "a reader did not let go"))


def database_holds(path: Path, matcher: Matcher) -> bool:
    """Whether any TEXT value of the SQLite file names the address (read-only)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        con.create_function("seg_has", 1, matcher.found_in, deterministic=True)
        tables = [
            name
            for (name,) in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            for row in con.execute(f"PRAGMA table_info({_ident(table)})").fetchall():
                col = _ident(row[1])
                hit = con.execute(
                    f"SELECT 1 FROM {_ident(table)} "
                    f"WHERE typeof({col}) = 'text' AND seg_has({col}) LIMIT 1"
                ).fetchone()
                if hit:
                    return True
        return False
    finally:
        con.close()


def history_databases(state: Path) -> list[Path]:
    """The history database and every upgrade backup of it."""
    main = Path(state) / "history.db"
    found = [main] if main.is_file() else []
    return found + sorted(Path(state).glob("history.db.v*.bak"))


# -- Parquet and Arrow files ---------------------------------------------------


@dataclass
class FileReport:
    kind: str  # ledger | plan | people | batch | other
    path: Path
    rows: int  # rows about the person (dropped from a ledger, redacted elsewhere)
    mentions: int  # other values that mentioned the address, rewritten


def _kind(state: Path, path: Path) -> str:
    top = path.relative_to(state).parts[0]
    return {"ledgers": "ledger", "plans": "plan", "people": "people", "runs": "batch"}.get(
        top, "other"
    )


def _person_mask(table: pa.Table, matcher: Matcher) -> pa.Array:
    """Rows whose ``email`` (or ``source_email``) is the person, trimmed and in any case."""
    mask = pa.repeat(pa.scalar(False), table.num_rows)
    for name in ("email", "source_email"):
        kind = table.schema.field(name).type if name in table.column_names else None
        if kind is not None and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            values = pc.utf8_lower(pc.utf8_trim_whitespace(table.column(name)))
            mask = pc.or_(mask, pc.fill_null(pc.equal(values, matcher.email), False))
    return pc.fill_null(mask, False)


def _set_where(table: pa.Table, mask: pa.Array, name: str, value: object) -> pa.Table:
    if name not in table.column_names:
        return table
    index = table.column_names.index(name)
    kind = table.schema.field(name).type
    column = pc.if_else(mask, pa.scalar(value, kind), table.column(name))
    return table.set_column(index, table.schema.field(name), column)


def _rewrite_mentions(table: pa.Table, matcher: Matcher, token: str) -> tuple[pa.Table, int]:
    """Replace the address wherever a string value mentions it; returns how many values."""
    changed = 0
    for index, fld in enumerate(table.schema):
        if not (pa.types.is_string(fld.type) or pa.types.is_large_string(fld.type)):
            continue
        column = table.column(index)
        near = matcher.candidates(column)
        if not pc.any(near).as_py():
            continue
        values = column.to_pylist()
        hits = 0
        for i, is_near in enumerate(near.to_pylist()):
            if is_near and matcher.found_in(values[i]):
                values[i] = matcher.replace(values[i], token)
                hits += 1
        if hits:
            changed += hits
            table = table.set_column(index, fld, pa.array(values, fld.type))
    return table, changed


def _redact_table(
    table: pa.Table, kind: str, matcher: Matcher, token: str, resumable: bool
) -> tuple[pa.Table, int]:
    """The table without the person; returns it and how many of its rows were theirs."""
    mask = _person_mask(table, matcher)
    rows = int(pc.sum(mask).as_py() or 0)
    if rows and kind == "ledger":
        table = table.filter(pc.invert(mask))
    elif rows:
        for name in ("email", "source_email"):
            if name in table.column_names:
                was = pc.is_valid(table.column(name))
                table = _set_where(table, pc.and_(mask, was), name, token)
        for name in ("key", "contact", "digest", "hash"):
            table = _set_where(table, mask, name, None)
        if kind == "plan" and resumable and "op" in table.column_names:
            # An unfinished run may resume this plan: it must not send the
            # token, nor write it into the ledger as if it were on the list.
            sent = pc.and_(mask, pc.invert(pc.equal(table.column("op"), "rejected")))
            table = _set_where(table, sent, "op", "rejected")
            table = _set_where(table, sent, "reason", "forgotten")
            table = _set_where(table, sent, "detail", None)
    return table, rows


def _parquet_compression(path: Path) -> str:
    """The codec the file was written with, so a rewrite keeps its size."""
    meta = pq.ParquetFile(path).metadata
    codec = "snappy"
    if meta.num_row_groups and meta.num_columns:
        codec = str(meta.row_group(0).column(0).compression).lower()
    known = {"snappy", "gzip", "brotli", "lz4", "zstd", "none"}
    codec = {"uncompressed": "none", "lz4_raw": "lz4"}.get(codec, codec)
    return codec if codec in known else "snappy"


def _bump_ledger_version(table: pa.Table) -> pa.Table:
    """A ledger that lost a row is a new version: a plan computed from the old one
    (which may have planned the person) no longer passes `apply`'s drift check."""
    meta = dict(table.schema.metadata or {})
    key = b"segsync.ledger_version"
    if key in meta:
        meta[key] = str(int(meta[key] or b"0") + 1).encode()
        table = table.replace_schema_metadata(meta)
    return table


def redact_file(
    state: Path, path: Path, matcher: Matcher, token: str, resumable_plans: set[Path]
) -> FileReport | None:
    """Rewrite one Parquet or Arrow IPC file without the person, if it names them."""
    kind = _kind(state, path)
    is_arrow = path.suffix == ".arrow"
    if is_arrow:
        with ipc.open_file(path) as reader:
            table = reader.read_all()
    else:
        table = pq.read_table(path)
    table, rows = _redact_table(table, kind, matcher, token, path in resumable_plans)
    table, mentions = _rewrite_mentions(table, matcher, token)
    # An Arrow file written from a slice can carry bytes of values outside it
    # (the rest of the shared data buffer): the address may be in the file
    # without being any of its values. Such a file is rewritten from fresh buffers.
    stray = is_arrow and matcher.in_bytes(path.read_bytes())
    if not rows and not mentions and not stray:
        return None
    if is_arrow:
        table = pa.Table.from_pylist(table.to_pylist(), schema=table.schema)
    if kind == "ledger" and rows:
        table = _bump_ledger_version(table)
    write: Callable[[BinaryIO], None]
    if is_arrow:

        def write(handle: BinaryIO) -> None:
            with ipc.new_file(handle, table.schema) as writer:
                writer.write_table(table)

    else:
        compression = _parquet_compression(path)

        def write(handle: BinaryIO) -> None:
            pq.write_table(table, handle, compression=compression)

    write_atomic(path, write)
    return FileReport(kind, path, rows, mentions)


def data_files(state: Path) -> Iterator[Path]:
    """Every Parquet and Arrow file under the state folder (links not followed)."""
    for folder, dirs, files in os.walk(state, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if name.endswith((".parquet", ".arrow")) and not name.startswith("."):
                path = Path(folder) / name
                if path.is_file() and not path.is_symlink():
                    yield path


def resumable_plan_files(state: Path, history_db: Path) -> set[Path]:
    """Changeset files an unfinished run may still resume (read straight from the
    database so this works on any history schema that has runs with plans)."""
    from store.changeset import changeset_file

    if not history_db.is_file():
        return set()
    con = sqlite3.connect(f"file:{history_db}?mode=ro", uri=True, timeout=30)
    try:
        marks = ", ".join("?" for _ in _UNFINISHED_RUN)
        rows = con.execute(
            f"SELECT DISTINCT plan_id FROM run WHERE plan_id IS NOT NULL AND status IN ({marks})",
            _UNFINISHED_RUN,
        ).fetchall()
    except sqlite3.OperationalError:  # a history from before plans
        return set()
    finally:
        con.close()
    return {changeset_file(state, plan_id) for (plan_id,) in rows}


def plans_naming(state: Path, plan_ids: list[int], matcher: Matcher) -> list[int]:
    """Which of these plans would touch the person (any operation but ``rejected``)."""
    from store.changeset import changeset_file

    touched = []
    for plan_id in plan_ids:
        path = changeset_file(state, plan_id)
        if not path.is_file():
            continue
        table = pq.read_table(path, columns=["email", "op"])
        mask = _person_mask(table, matcher)
        if pc.any(pc.and_(mask, pc.not_equal(table.column("op"), "rejected"))).as_py():
            touched.append(plan_id)
    return touched


# -- files a killed process left behind ----------------------------------------


def _writer(data: bytes) -> Callable[[BinaryIO], object]:
    """A write_atomic callback for bytes already in hand (bound now, not in a loop)."""
    return lambda handle: handle.write(data)


# store.atomic.write_atomic's temp file: ".<name>.<pid>.tmp" beside the target.
_TEMP = re.compile(r"^\..+\.(\d+)\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stray_temp_files(state: Path, matcher: Matcher) -> list[Path]:
    """Delete half-written temp files of processes that died mid-write (a killed
    export leaves one beside a batch file) when they hold the address: nothing
    reads them, and they would keep a plain copy. A live writer's are left."""
    removed = []
    for folder, dirs, files in os.walk(state, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            match = _TEMP.match(name)
            path = Path(folder) / name
            if match is None or path.is_symlink() or _pid_alive(int(match.group(1))):
                continue
            if matcher.in_bytes(path.read_bytes()):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


# -- other text files ----------------------------------------------------------


def redact_text_files(state: Path, matcher: Matcher, token: str) -> list[Path]:
    """Replace the address in plain text files that mention it (a sync's log, a
    hook's output): any file that is not a data file, decodes as UTF-8 and
    names the person is rewritten, atomically and owner-only."""
    changed = []
    for folder, dirs, files in os.walk(state, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file() or _TEMP.match(name):
                continue
            if path.suffix in (".parquet", ".arrow") or name.startswith("history.db"):
                continue
            data = path.read_bytes()
            if data.startswith(SQLITE_HEADER) or not matcher.in_bytes(data):
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue  # binary: left to find_traces to report
            if matcher.found_in(text):
                fresh = matcher.replace(text, token).encode("utf-8")
                write_atomic(path, _writer(fresh))
                changed.append(path)
    return changed


# -- checking the result -------------------------------------------------------


def find_traces(state: Path, email: str) -> list[Path]:
    """Files under the state folder that still hold the address.

    Parquet, Arrow and SQLite files are read value by value (a compressed page
    would hide the address from a byte search, and a byte search would mistake
    a longer address for this one); every other file (WAL, locks, keys, stray
    temp files) is searched byte for byte.
    """
    matcher = Matcher(email)
    found: list[Path] = []
    for folder, dirs, files in os.walk(state, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            if _file_holds(path, matcher):
                found.append(path)
    return found


def _file_holds(path: Path, matcher: Matcher) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
        if path.suffix in (".parquet", ".arrow") and not path.name.startswith("."):
            if path.suffix == ".arrow":  # uncompressed: its bytes can hold more than its values
                if matcher.in_bytes(path.read_bytes()):
                    return True
                with ipc.open_file(path) as reader:
                    table = reader.read_all()
            else:
                table = pq.read_table(path)
            return _table_holds(table, matcher)
        if head == SQLITE_HEADER:
            return database_holds(path, matcher)
    except (pa.ArrowInvalid, OSError, sqlite3.DatabaseError):
        pass  # unreadable as what it claims to be: fall back to its bytes
    data = path.read_bytes()
    if not matcher.in_bytes(data):
        return False
    try:  # text can be read as text: a longer address (aa@b.com) is not this one
        return matcher.found_in(data.decode("utf-8"))
    except UnicodeDecodeError:
        return True  # binary: any occurrence counts


def _table_holds(table: pa.Table, matcher: Matcher) -> bool:
    for fld, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_string(fld.type) or pa.types.is_large_string(fld.type):
            near = matcher.candidates(column)
            if pc.any(near).as_py():
                values = pc.filter(column, near).to_pylist()
                if any(matcher.found_in(v) for v in values):
                    return True
    return False
