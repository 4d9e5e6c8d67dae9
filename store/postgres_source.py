"""PostgreSQL as a profile source: one read-only snapshot streamed into DuckDB.

Segment predicates are DuckDB SQL and must mean the same whatever the source:
the two dialects disagree (``customer_id / 3 = 1`` is integer division in
Postgres, ``year()``, ``date_diff`` or ``INTERVAL 30 DAY`` do not exist there),
so a predicate is never pasted into a Postgres query. Instead the table (or
view) is read once per connection through the ADBC PostgreSQL driver, which
streams Arrow batches (binary COPY) that DuckDB copies into a table of its
in-memory connection; every later query of that connection (counts, the plan,
explain) sees that one snapshot, so what was counted is what is sent even while
the table changes. Only an operator-written ``prefilter``, in Postgres dialect,
narrows what is transferred.

The read runs in a ``REPEATABLE READ READ ONLY`` transaction of a session made
read-only, with ``statement_timeout`` set. No credential is held here: the URL
may not carry a password (it would land in the history's config snapshot);
libpq reads ``PGPASSWORD`` or ``~/.pgpass``, or the workspace names an
environment variable (``password_env``) read at connect time and never shown.

The driver is an optional extra (``segsync[postgres]``): it is imported only
when a Postgres workspace is used, so file workspaces never need it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

INSTALL_HINT = (
    "install the PostgreSQL driver: pip install 'segsync[postgres]' "
    "(in a clone: uv sync --extra postgres)"
)
# Seconds one read (or check) may run on the server before Postgres stops it.
DEFAULT_STATEMENT_TIMEOUT = 600.0
# Sessions that read one table at once (``[profiles] readers``), each a disjoint
# range of its pages, all in the first session's snapshot (``pg_export_snapshot``).
# One by default: on 2 cores shared with the server and other work, 2 or 3 did
# not read faster and cost more CPU (docs/benchmarks.md); more can pay where the
# client has idle cores and the server runs elsewhere.
DEFAULT_READERS = 1
MAX_READERS = 8
# A table smaller than this many 8 kB pages per extra reader is read by one session.
MIN_PAGES_PER_READER = 1024
# Seconds libpq waits for an unreachable host (its own default waits forever).
CONNECT_TIMEOUT = 10
# DuckDB's widest DECIMAL; wider or unconstrained NUMERIC columns become DOUBLE.
_MAX_DECIMAL_PRECISION = 38
_STREAM = "_segsync_pg_stream"
_SCHEMES = ("postgresql", "postgres")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PostgresSourceError(Exception):
    """The Postgres source cannot be used; the message says why and what to do
    (the workspace prefixes the source's label and raises a WorkspaceError)."""


class PostgresConfigError(PostgresSourceError):
    """The ``[profiles]`` block of a Postgres workspace is wrong."""


class SourceLost(Exception):
    """The connection to the Postgres source broke while its rows were read.

    Not a configuration problem (the same command may work a minute later), so
    deliberately not a WorkspaceError: a run that planned from it fails (exit 1)
    rather than being refused as misconfigured, and nothing is recorded as sent.
    """


class Password:
    """A database password that never prints itself (``str``, ``repr``, a
    traceback's locals); ``reveal()`` is the one way to it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Password('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a password is not pickled")


@dataclass(frozen=True)
class ColumnPlan:
    """How one Postgres column arrives in DuckDB: a select expression, or why not."""

    name: str
    expr: str
    problem: str | None = None
    # Asked of Postgres as text: its own numeric_out costs less in all than the
    # driver decoding the binary NUMERIC into the same text (docs/benchmarks.md).
    as_text: bool = False


@dataclass(frozen=True)
class PostgresSource:
    """A table or view in PostgreSQL, as configured in ``[profiles]``.

    ``str()`` is the label (``postgres host/db table``) so every message that
    names the source names it without credentials.
    """

    url: str
    table: str
    password_env: str | None = None
    prefilter: str | None = None
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    readers: int = DEFAULT_READERS

    # ------------------------------------------------------------ configuration
    @classmethod
    def from_config(cls, profiles: dict[str, Any]) -> PostgresSource:
        """Parse ``[profiles]``; refuses a password in the URL and anything unclear."""
        url = profiles.get("postgres")
        if not isinstance(url, str) or not url.strip():
            raise PostgresConfigError('[profiles] postgres = "postgresql://user@host:5432/db"')
        url = url.strip()
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - a bad port raises here, not at connect time
        except ValueError as err:
            raise PostgresConfigError(f"[profiles] postgres is not a valid URL: {err}") from None
        if parts.scheme not in _SCHEMES:
            raise PostgresConfigError(
                "[profiles] postgres must be a URL starting postgresql:// "
                "(e.g. postgresql://segsync@127.0.0.1:5432/crm)"
            )
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if parts.password is not None or "password" in query:
            raise PostgresConfigError(
                "[profiles] postgres holds a password; remove it (it would be kept in "
                "every run's config snapshot) and use PGPASSWORD, ~/.pgpass or "
                'password_env = "VAR"'
            )
        if not unquote(parts.path.lstrip("/")) and "dbname" not in query:
            raise PostgresConfigError(
                "[profiles] postgres names no database: postgresql://user@host:5432/DBNAME"
            )
        table = profiles.get("table")
        if not isinstance(table, str) or not table.strip():
            raise PostgresConfigError(
                '[profiles] table = "schema.table" (a table or view) is required for postgres'
            )
        password_env = profiles.get("password_env")
        if password_env is not None and (
            not isinstance(password_env, str) or not _ENV_NAME.match(password_env)
        ):
            raise PostgresConfigError(
                "[profiles] password_env must name an environment variable, e.g. CRM_PASSWORD"
            )
        prefilter = profiles.get("prefilter")
        if prefilter is not None and (not isinstance(prefilter, str) or not prefilter.strip()):
            raise PostgresConfigError(
                "[profiles] prefilter must be a Postgres condition, e.g. \"status = 'active'\""
            )
        timeout = profiles.get("statement_timeout", DEFAULT_STATEMENT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise PostgresConfigError("[profiles] statement_timeout must be seconds, e.g. 600")
        readers = profiles.get("readers", DEFAULT_READERS)
        if (
            isinstance(readers, bool)
            or not isinstance(readers, int)
            or not 1 <= readers <= MAX_READERS
        ):
            raise PostgresConfigError(
                f"[profiles] readers must be a whole number from 1 to {MAX_READERS}, e.g. 2"
            )
        return cls(url, table.strip(), password_env, prefilter, float(timeout), readers)

    @property
    def host(self) -> str:
        """The server as libpq will find it (a socket folder when no host is given)."""
        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query))
        host = parts.hostname or query.get("host") or "localhost"
        port = parts.port or query.get("port")
        return f"{host}:{port}" if port else host

    @property
    def dbname(self) -> str:
        parts = urlsplit(self.url)
        return unquote(parts.path.lstrip("/")) or dict(parse_qsl(parts.query)).get("dbname", "")

    @property
    def label(self) -> str:
        """``postgres host/db table``: what the TUI and messages show."""
        return f"postgres {self.host}/{self.dbname} {self.table}"

    def __str__(self) -> str:
        return self.label

    # --------------------------------------------------------------- sessions
    def password(self) -> Password | None:
        """The password ``password_env`` names (None: libpq finds its own)."""
        if self.password_env is None:
            return None
        value = os.environ.get(self.password_env)
        if not value:
            raise PostgresSourceError(
                f"password_env names {self.password_env}, which is not set: "
                f"export {self.password_env}=... before running segsync"
            )
        return Password(value)

    def libpq_uri(self, password: Password | None = None) -> str:
        """The URI handed to libpq, with ``password`` when given. Pass it straight
        to the driver: kept in a variable it would show in a traceback's locals."""
        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
        query.setdefault("application_name", "segsync")
        netloc = parts.netloc
        if password is not None:
            user, _, host = netloc.rpartition("@")
            if user:
                netloc = f"{user}:{quote(password.reveal(), safe='')}@{host}"
            else:
                query["password"] = password.reveal()
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """A read-only session with ``statement_timeout`` set; yields a cursor.

        Every failure becomes a ``PostgresSourceError`` naming the fix; a
        connection that breaks after it was made becomes ``SourceLost``.
        """
        try:
            import adbc_driver_postgresql.dbapi as pg_dbapi
        except ImportError:
            raise PostgresSourceError(
                f"a PostgreSQL source needs its driver: {INSTALL_HINT}"
            ) from None
        password = self.password()
        failure: str | None = None
        try:
            conn = pg_dbapi.connect(self.libpq_uri(password), autocommit=True)
        except Exception as err:
            failure = self.explain(err, password, connecting=True)
        if failure is not None:
            # Raised outside the handler: the driver's error (whose frames hold the
            # URI with the password) is not kept as this one's context.
            raise PostgresSourceError(failure)
        try:
            cur = conn.cursor()
            try:
                ms = max(1, int(self.statement_timeout * 1000))
                cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                cur.execute(f"SET statement_timeout = {ms}")
                yield cur
            finally:
                with contextlib.suppress(Exception):
                    cur.close()
        except (PostgresSourceError, SourceLost):
            raise
        except Exception as err:
            if _from_driver(err):
                message = self.explain(err, password, connecting=False)
                if _broken(err):
                    raise SourceLost(
                        f"{self.label}: the connection was lost while reading ({message}); "
                        "nothing was sent: run again when the server is back"
                    ) from None
                raise PostgresSourceError(message) from None
            raise
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def explain(
        self, err: BaseException, password: Password | None, *, connecting: bool = False
    ) -> str:
        """Postgres's own reason, first line, with the fix the user needs."""
        text = str(err)
        if password is not None:
            value = password.reveal()
            text = text.replace(value, "***").replace(quote(value, safe=""), "***")
        reason = _pg_reason(text)
        low = reason.lower()
        if connecting:
            if "password authentication failed" in low or "no password supplied" in low:
                return (
                    f"cannot log in ({reason}): set PGPASSWORD, add a ~/.pgpass line, or name "
                    'a variable holding the password with password_env = "VAR" in segments.toml'
                )
            if "does not exist" in low:
                return f"cannot connect ({reason}): check [profiles] postgres in segments.toml"
            return (
                f"cannot connect to {self.host} ({reason}): is the server running and "
                "reachable? check [profiles] postgres in segments.toml"
            )
        if "statement timeout" in low:
            return (
                f"the read took longer than {self.statement_timeout:g} s and Postgres stopped "
                "it: raise [profiles] statement_timeout, or narrow it with a prefilter"
            )
        if "permission denied" in low:
            return f"{reason}: grant the segsync user SELECT on {self.table}"
        return reason

    # ------------------------------------------------------------------ reads
    def _resolve(self, cur: Any) -> tuple[str, str, int]:
        """The configured table as a quoted ``schema.name`` (Postgres resolves the
        name by its own rules: search_path, case folding, quotes), its kind and
        its size in pages (0 unless a plain table or materialized view)."""
        try:
            cur.execute(
                "SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text, "
                "CASE WHEN c.relkind IN ('r', 'm') THEN pg_catalog.pg_relation_size(c.oid) "
                "/ pg_catalog.current_setting('block_size')::bigint ELSE 0 END "
                "FROM pg_catalog.pg_class c "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = pg_catalog.to_regclass($1)",
                (self.table,),
            )
            rows = cur.fetchall()
        except Exception as err:
            if _broken(err):
                raise
            raise PostgresSourceError(
                f"[profiles] table {self.table!r} is not a table name: {_pg_reason(str(err))}"
            ) from None
        if not rows:
            raise PostgresSourceError(
                f"no table or view {self.table!r} in database {self.dbname!r}: "
                "check [profiles] table in segments.toml (schema.table)"
            )
        qualified, relkind, pages = rows[0]
        if relkind not in ("r", "p", "v", "m", "f"):
            raise PostgresSourceError(f"{self.table!r} is not a table or view")
        return str(qualified), str(relkind), int(pages or 0)

    def _query(
        self,
        qualified: str,
        columns: Sequence[str] | None = None,
        *,
        limit_zero: bool = False,
        pages: tuple[int | None, int | None] = (None, None),
    ) -> str:
        """The SELECT one session streams: ``columns`` (select expressions over
        quoted names; None: every column), the page range ``[first, end)`` of a
        plain table (by ``ctid``, a TID range scan), and the operator's prefilter."""
        select = ", ".join(columns) if columns else "*"
        conditions = []
        first, end = pages
        if first is not None:
            conditions.append(f"ctid >= '({int(first)},0)'::tid")
        if end is not None:
            conditions.append(f"ctid < '({int(end)},0)'::tid")
        if self.prefilter:
            conditions.append(f"(\n{self.prefilter}\n)")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {select} FROM {qualified}{where}" + (" LIMIT 0" if limit_zero else "")

    def _run(self, cur: Any, sql: str) -> None:
        try:
            cur.execute(sql)
        except Exception as err:
            if _broken(err):
                raise
            reason = _pg_reason(str(err))
            if self.prefilter and "statement timeout" not in reason.lower():
                raise PostgresSourceError(
                    f"reading {self.table} with the prefilter failed: {reason} "
                    "(the prefilter is Postgres SQL; check it in segments.toml)"
                ) from None
            raise

    def reader_count(self, relkind: str, pages: int) -> int:
        """How many sessions read the table: page ranges need a plain table (or
        materialized view) large enough to be worth a session more."""
        if relkind not in ("r", "m") or self.readers <= 1:
            return 1
        return max(1, min(self.readers, pages // MIN_PAGES_PER_READER))

    def load(
        self,
        con: duckdb.DuckDBPyConnection,
        target: str,
        *,
        rows: bool = True,
        columns: Collection[str] | None = None,
        on_cancel: Callable[[Callable[[], object] | None], None] | None = None,
    ) -> list[Part]:
        """Read the table's rows (``rows=False``: only its columns) in one
        read-only REPEATABLE READ snapshot and define them on ``con``; returns
        the parts in the order their rows come (``Part``): ``target``, or with
        several readers ``target_0``, ``target_1``... (page ranges, in page order).

        The rows stay the driver's Arrow batches (``read_all``: no second copy),
        registered on ``con`` and read through a view ``target`` that casts
        NUMERIC columns. A registration belongs to its connection: cursors of
        ``con`` do not see these views. ``rows=False`` makes ``target`` an empty
        DuckDB table of the columns instead.

        ``columns``: the profile columns to transfer (names compared ignoring
        case, as DuckDB does; names the table lacks are ignored); None, or a set
        naming none of them, transfers all. Several readers (``[profiles]
        readers``) read disjoint page ranges of a large plain table in sessions
        that import the first one's snapshot, so together they see exactly the
        rows one session would; each stream is read on a thread of its own (the
        driver runs without the GIL).

        Raises ``PostgresSourceError`` (fix the configuration or the server),
        ``SourceLost`` (the connection broke mid-read) or DuckDB's interrupt.
        ``on_cancel`` is given a cancel of every session while they are open, so
        an interrupt stops a read still waiting for the server.
        """
        with contextlib.ExitStack() as stack:
            cur = stack.enter_context(self.session())
            cursors = [cur]

            def cancel() -> None:
                for c in cursors:
                    with contextlib.suppress(Exception):
                        c.adbc_cancel()

            if on_cancel is not None:
                on_cancel(cancel)
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            qualified, relkind, pages = self._resolve(cur)
            self._run(cur, self._query(qualified, limit_zero=True))
            probe = cur.fetch_record_batch()
            schema = probe.schema
            names = [f.name for f in schema]
            if columns is not None:
                wanted = {c.lower() for c in columns}
                names = [n for n in names if n.lower() in wanted] or names
            plans = [p for p in column_plans(schema) if p.name in names]
            problems = [p.problem for p in plans if p.problem]
            if problems:
                probe.close()
                raise PostgresSourceError(
                    "; ".join(problems) + ": cast them in a view (e.g. CREATE VIEW "
                    "profiles_for_segsync AS SELECT ..., col::text AS col) and name the "
                    "view in [profiles] table"
                )
            select = ", ".join(p.expr for p in plans) or "*"
            if not rows:
                try:
                    con.register(_STREAM, _CStream(probe))
                    con.execute(f"CREATE TABLE {target} AS SELECT {select} FROM {_STREAM}")
                finally:
                    with contextlib.suppress(Exception):
                        con.unregister(_STREAM)
                    probe.close()
                return [Part(target, "rowid")]
            probe.close()
            count = self.reader_count(relkind, pages)
            bounds: list[int | None] = [None]
            if count > 1:
                cur.execute("SELECT pg_catalog.pg_export_snapshot()")
                snapshot = str(cur.fetchall()[0][0])
                for _ in range(count - 1):
                    other = stack.enter_context(self.session())
                    cursors.append(other)
                    other.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    other.execute(f"SET TRANSACTION SNAPSHOT {_pg_literal(snapshot)}")
                # The last range is open: pages added since are in no snapshot of ours.
                bounds = [*(pages * i // count for i in range(1, count)), None]
            # The column list Postgres sends (None: ``*``, every column as it is).
            pg_select = None
            if names != [f.name for f in schema] or any(p.as_text for p in plans):
                pg_select = [
                    f"{_pg_ident(p.name)}::text AS {_pg_ident(p.name)}"
                    if p.as_text
                    else _pg_ident(p.name)
                    for p in plans
                ]
            streams = []
            first: int | None = None
            for c, end in zip(cursors, bounds, strict=True):
                sql = self._query(qualified, pg_select, pages=(first, end))
                self._run(c, sql)
                streams.append(c.fetch_record_batch())
                first = end
            targets = [target] if count == 1 else [f"{target}_{i}" for i in range(count)]
            tables = self._read(streams, cursors)
            parts = _register(con, tables, targets, select)
            for c in cursors:
                c.execute("COMMIT")
            self._check_casts(con, parts, [p.name for p in plans if p.as_text])
            return parts
        raise AssertionError("unreachable")  # pragma: no cover (mypy: ExitStack may swallow)

    def _check_casts(
        self, con: duckdb.DuckDBPyConnection, parts: Sequence[Part], names: Sequence[str]
    ) -> None:
        """Cast every NUMERIC value once now (the views cast when queried): a
        value DECIMAL cannot hold (``NaN``) fails the read, naming the source,
        rather than a later query that would seem to blame a segment."""
        import duckdb

        if not names:
            return
        counts = ", ".join(f"count({_pg_ident(n)})" for n in names)
        try:
            for part in parts:
                con.execute(f"SELECT {counts} FROM {part.name}").fetchall()
        except duckdb.Error as err:
            from store.workspace import is_interrupt

            if is_interrupt(err):
                raise
            reason = _pg_reason(str(err))
            raise PostgresSourceError(f"reading {self.table} failed: {reason}") from None

    def _read(self, streams: Sequence[Any], cursors: Sequence[Any]) -> list[Any]:
        """Every stream as an Arrow table, at once (a thread each), turning
        failures into the source's errors; one failure stops the other reads."""
        import pyarrow as pa

        tables: list[Any] = [None] * len(streams)
        errors: list[BaseException | None] = [None] * len(streams)

        def read(i: int) -> None:
            try:
                tables[i] = streams[i].read_all()
            except BaseException as err:
                errors[i] = err
                for c in cursors:  # the others cannot make a consistent copy
                    with contextlib.suppress(Exception):
                        c.adbc_cancel()

        try:
            if len(streams) == 1:
                read(0)
            else:
                threads = [
                    threading.Thread(target=read, args=(i,), name=f"segsync-pg-{i}")
                    for i in range(len(streams))
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        finally:
            for s in streams:
                with contextlib.suppress(Exception):
                    s.close()
        failed = [e for e in errors if e is not None]
        if not failed:
            return tables
        # The first failure that is not another reader's cancellation by us.
        err = next((e for e in failed if not _cancelled(e)), failed[0])
        if not (isinstance(err, pa.ArrowException) or _from_driver(err)):
            raise err
        reason = _pg_reason(str(err))
        if _broken(err) or not all(_alive(c) for c in cursors):
            raise SourceLost(
                f"{self.label}: the connection was lost while reading ({reason}); "
                "nothing was sent: run again when the server is back"
            ) from None
        if self.prefilter and "statement timeout" not in reason.lower():
            raise PostgresSourceError(
                f"reading {self.table} with the prefilter failed: {reason} "
                "(the prefilter is Postgres SQL; check it in segments.toml)"
            ) from None
        raise PostgresSourceError(f"reading {self.table} failed: {reason}") from None

    # ------------------------------------------------------------ fingerprint
    def fingerprint(self) -> dict[str, Any]:
        """What tells a changed table from the last one without reading it.

        Postgres's statistics counters (rows inserted, updated, deleted) of the
        table, or of every table a view reads, plus the storage file (a TRUNCATE
        or a rewrite gives a new one) and a digest of the columns and view
        definitions. Counters reach the statistics within about a second of a
        commit. An unreachable server is a fingerprint of its own
        (``unreachable``), so the next readable state counts as a change.
        """
        base: dict[str, Any] = {"path": self.label}
        try:
            with self.session() as cur:
                cur.execute(_FINGERPRINT_SQL, (self.table,))
                rows = cur.fetchall()
        except (PostgresSourceError, SourceLost) as err:
            return {**base, "unreachable": str(err)}
        if not rows:
            return {**base, "missing": True}
        digest = hashlib.sha256(repr(sorted(tuple(r) for r in rows)).encode()).hexdigest()
        changes = sum(int(r[3]) for r in rows)
        return {**base, "relations": len(rows), "changes": changes, "stats": digest}


# Relations the table reads (itself; for a view the tables its rules depend on,
# for a partitioned or inherited table its children), with the counters that any
# write moves. n_live_tup is left out: ANALYZE and autovacuum change it alone.
_FINGERPRINT_SQL = """
WITH RECURSIVE rels(oid) AS (
    SELECT pg_catalog.to_regclass($1)::oid
    UNION
    SELECT x.child FROM rels r CROSS JOIN LATERAL (
        SELECT d.refobjid FROM pg_catalog.pg_rewrite w
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
             AND d.objid = w.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
        WHERE w.ev_class = r.oid AND d.refobjid <> r.oid
        UNION ALL
        SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = r.oid
    ) x(child)
)
SELECT c.oid::bigint, c.relkind::text, c.relfilenode::bigint,
       coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0)::bigint,
       coalesce(s.n_tup_ins, 0)::bigint, coalesce(s.n_tup_upd, 0)::bigint,
       coalesce(s.n_tup_del, 0)::bigint,
       md5(coalesce((SELECT string_agg(a.attname || ':' || a.atttypid::text || ':'
                                       || a.atttypmod::text, ',' ORDER BY a.attnum)
                     FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
           || coalesce(CASE WHEN c.relkind IN ('v', 'm')
                            THEN pg_catalog.pg_get_viewdef(c.oid) END, ''))
FROM rels JOIN pg_catalog.pg_class c ON c.oid = rels.oid
LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
ORDER BY 1
"""


def column_plans(schema: pa.Schema) -> list[ColumnPlan]:
    """How each Arrow field of the stream becomes a DuckDB column.

    NUMERIC arrives as text (an opaque extension over strings): it is cast to
    DECIMAL from the column's typmod so ``lifetime_value >= 500`` compares
    numbers; unconstrained or wider than DuckDB's 38 digits, to DOUBLE. Types
    the driver passes as Postgres's binary wire format (inet, point, bit,
    ranges, ...) and ``money`` (an integer in the server's currency unit) would
    be silently meaningless, so they are refused by name instead.
    """
    from store.workspace import quote_ident

    plans = []
    for fld in schema:
        ident = quote_ident(fld.name)
        meta = {k.decode(): v.decode() for k, v in (fld.metadata or {}).items()}
        pg_type = meta.get("POSTGRESQL:type", "")
        if pg_type == "numeric":
            cast = f"CAST({ident} AS {_numeric_type(meta)}) AS {ident}"
            plans.append(ColumnPlan(fld.name, cast, as_text=True))
            continue
        problem = _unmappable(fld.type, pg_type)
        if problem is not None:
            plans.append(ColumnPlan(fld.name, ident, f"column {fld.name!r} has type {problem}"))
            continue
        plans.append(ColumnPlan(fld.name, ident))
    return plans


def _numeric_type(meta: dict[str, str]) -> str:
    """DECIMAL(p, s) from a NUMERIC typmod (``((p << 16) | s) + 4``), else DOUBLE."""
    try:
        typmod = int(meta.get("POSTGRESQL:typmod", "-1"))
    except ValueError:
        typmod = -1
    if typmod < 4:
        return "DOUBLE"
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    if not 0 < precision <= _MAX_DECIMAL_PRECISION or scale > precision:
        return "DOUBLE"
    return f"DECIMAL({precision}, {scale})"


def _unmappable(arrow_type: pa.DataType, pg_type: str) -> str | None:
    """The Postgres type name when DuckDB would only see its wire bytes."""
    import pyarrow as pa

    if pg_type == "money":
        return "money (an integer in the server's currency unit; cast it to numeric)"
    if isinstance(arrow_type, pa.OpaqueType):
        if pa.types.is_string(arrow_type.storage_type) or pa.types.is_large_string(
            arrow_type.storage_type
        ):
            return None
        return f"{arrow_type.type_name}, which segsync cannot read (cast it to text)"
    if isinstance(arrow_type, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        inner = _unmappable(arrow_type.value_type, "")
        return None if inner is None else f"an array of {inner}"
    if isinstance(arrow_type, pa.StructType):
        for i in range(arrow_type.num_fields):
            inner = _unmappable(arrow_type.field(i).type, "")
            if inner is not None:
                return inner
    return None


@dataclass(frozen=True)
class Part:
    """One part of a snapshot on a DuckDB connection: a view over Arrow whose
    ``row`` column (not a profile column) numbers its rows from 0, or a table
    (``row`` is ``rowid``). ``arrow``, registered on the connection as
    ``arrow_name``, must be registered on its cursors too (``workspace.cursor``)."""

    name: str
    row: str
    arrow: Any = None
    arrow_name: str = ""


def _register(
    con: duckdb.DuckDBPyConnection, tables: Sequence[Any], targets: Sequence[str], select: str
) -> list[Part]:
    """Each Arrow table on ``con`` behind a view ``target`` of the profile
    columns (``select``: NUMERIC cast) plus a row number made without Python
    per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for table, target in zip(tables, targets, strict=True):
        taken = {n.lower() for n in table.column_names}
        row = "_segsync_pg_row"
        while row in taken:
            row += "_"
        ones = pa.repeat(pa.scalar(1, pa.int64()), table.num_rows)
        numbered = table.append_column(row, pc.subtract(pc.cumulative_sum(ones), 1))
        con.register(f"{target}_arrow", numbered)
        ident = _pg_ident(row)  # DuckDB quotes identifiers the same way
        con.execute(f"CREATE VIEW {target} AS SELECT {select}, {ident} FROM {target}_arrow")
        parts.append(Part(target, ident, numbered, f"{target}_arrow"))
    return parts


class _CStream:
    """A record batch reader as the Arrow C stream interface alone, so DuckDB
    pulls its batches straight from the driver (no Python per batch)."""

    __slots__ = ("_reader",)

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        return self._reader.__arrow_c_stream__(requested_schema)


def _pg_ident(name: str) -> str:
    """A column name as a quoted Postgres identifier (exact case)."""
    return '"' + name.replace('"', '""') + '"'


def _pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _cancelled(err: BaseException) -> bool:
    """A read we cancelled ourselves (after another reader failed)."""
    return "canceling statement due to user request" in str(err).lower()


def _pg_reason(text: str) -> str:
    """The server's or libpq's own sentence from an ADBC message (no SQL echo)."""
    for marker in ("ERROR:  ", "FATAL:  "):
        if marker in text:
            return text.split(marker, 1)[1].splitlines()[0].strip()
    if " failed: " in text:
        return text.split(" failed: ", 1)[1].splitlines()[0].strip()
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else text.strip()
    return re.sub(r"^[A-Z_]+: (\[libpq\] )?", "", first)


def _from_driver(err: BaseException) -> bool:
    """An error of the ADBC driver (its own classes, or an OSError from its stream)."""
    if type(err).__module__.startswith("adbc_driver"):
        return True
    return isinstance(err, OSError) and "[libpq]" in str(err)


def _alive(cur: Any) -> bool:
    """Whether the session still answers (ending the failed transaction)."""
    try:
        cur.execute("ROLLBACK")
    except Exception:
        return False
    return True


def _broken(err: BaseException) -> bool:
    """True when the error means the connection itself is gone."""
    sqlstate = str(getattr(err, "sqlstate", "") or "")
    if sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03"):
        return True
    low = str(err).lower()
    return any(
        s in low
        for s in (
            "server closed the connection",
            "terminating connection",
            "connection to server was lost",
            "no connection to the server",
            "could not receive data",
            "ssl syscall error",
        )
    )
