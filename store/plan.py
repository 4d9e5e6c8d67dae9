"""Plan an export: which profiles of the chosen segments go to SendGrid, and why not.

Everything per-row happens in one DuckDB statement (``store.sql_plan``) materialised
once into a table on the plan's own locked connection; counts, samples, the contact
stream and the rejected-row report are all cheap reads of that table. 1,000,000
profiles plan in about a second.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from store import forgotten
from store.atomic import write_atomic
from store.limits import EMAIL_MAX_LENGTH, RESERVED_FIELD_LIMITS
from store.records import EXCLUSIONS, Column, FieldMapping, RejectedRow
from store.sql_plan import (
    ON_LIST,
    PlanSpec,
    changeset_sql,
    contacts_sql,
    plan_statements,
    rejected_sql,
)
from store.workspace import (
    NUMBERED_VIEW,
    Workspace,
    WorkspaceError,
    cursor,
    quote_ident,
    quote_literal,
)

__all__ = [
    "EMAIL_MAX_LENGTH",
    "EXCLUSIONS",
    "RESERVED_FIELD_LIMITS",
    "MappingError",
    "Plan",
    "PlanRequest",
    "RejectedRow",
    "plan_columns",
    "plan_export",
    "suggest_mapping",
    "validate_mapping",
]

CUSTOM_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MappingError(ValueError):
    """A mapping refers to a column or field that does not exist or is not allowed."""


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "mail"),
    "first_name": ("firstname", "givenname", "forename", "first"),
    "last_name": ("lastname", "surname", "familyname", "last"),
    "address_line_1": ("addressline1", "address1", "address", "street", "streetaddress"),
    "address_line_2": ("addressline2", "address2"),
    "city": ("city", "town"),
    "state_province_region": ("stateprovinceregion", "state", "region", "province"),
    "country": ("country", "countrycode"),
    "postal_code": ("postalcode", "zip", "zipcode", "postcode"),
    "phone_number": ("phonenumber", "phone", "mobile", "mobilephone"),
    "consent": (
        "emailoptin", "optin", "consent", "emailconsent", "subscribed", "marketingoptin",
        "newsletteroptin",
    ),
}  # fmt: skip


def _names(columns: Iterable[Column | str]) -> list[str]:
    return [c.name if isinstance(c, Column) else c for c in columns]


def suggest_mapping(
    columns: Iterable[Column | str], custom_field_names: Iterable[str] = ()
) -> FieldMapping:
    """Guess a mapping from column names (``E-Mail`` -> email, ``zip`` -> postal_code, ...).

    Custom fields map to a column of the same name ignoring case and punctuation. When
    no column looks like an email the mapping's ``email`` is ``""``, which
    ``validate_mapping`` reports, so the user is asked rather than guessed for.
    """
    by_norm: dict[str, str] = {}
    for name in _names(columns):
        by_norm.setdefault(_norm(name), name)
    used: set[str] = set()

    def find(target: str) -> str | None:
        for alias in _ALIASES[target]:
            col = by_norm.get(alias)
            if col is not None and col not in used:
                used.add(col)
                return col
        return None

    email = find("email") or ""
    consent = find("consent")
    reserved = {f: col for f in RESERVED_FIELD_LIMITS if (col := find(f)) is not None}
    custom: dict[str, str] = {}
    for name in custom_field_names:
        col = by_norm.get(_norm(name))
        if col is not None and col not in used:
            used.add(col)
            custom[name] = col
    return FieldMapping(email=email, reserved=reserved, custom=custom, consent_column=consent)


def validate_mapping(mapping: FieldMapping, columns: Iterable[Column | str]) -> None:
    """Raise MappingError naming the first unknown column or invalid field name."""
    names = set(_names(columns))

    def need(column: str, what: str) -> None:
        if column not in names:
            known = ", ".join(sorted(names))
            raise MappingError(f"{what}: column {column!r} is not in the profiles ({known})")

    if not mapping.email:
        raise MappingError("email: a profile column for the email address is required")
    need(mapping.email, "email")
    for fld, column in mapping.reserved.items():
        if fld not in RESERVED_FIELD_LIMITS:
            allowed = ", ".join(RESERVED_FIELD_LIMITS)
            raise MappingError(f"{fld!r} is not a SendGrid reserved field (use one of {allowed})")
        need(column, fld)
    reserved_lower = {f.lower() for f in (*RESERVED_FIELD_LIMITS, "email")}
    seen: set[str] = set()
    for name, column in mapping.custom.items():
        if not CUSTOM_FIELD_NAME.fullmatch(name):
            raise MappingError(
                f"custom field {name!r}: use letters, digits and underscores, "
                "not starting with a digit"
            )
        if name.lower() in reserved_lower:
            raise MappingError(f"custom field {name!r} clashes with a reserved field name")
        if name.lower() in seen:
            raise MappingError(f"custom field {name!r} is mapped twice (names ignore case)")
        seen.add(name.lower())
        need(column, f"custom field {name!r}")
    if mapping.consent_column is not None:
        need(mapping.consent_column, "consent")


@dataclass(frozen=True)
class PlanRequest:
    """What to plan: segments, mapping, and the destination's ledger for incremental/mirror.

    ``skip_emails``: addresses a resumed run already had confirmed; they are
    ``skipped``, not sent again.
    """

    segments: tuple[str, ...]
    mapping: FieldMapping
    custom_field_ids: dict[str, str] = field(default_factory=dict)
    ledger: Path | None = None
    incremental: bool = False
    mirror: bool = False
    skip_emails: pa.Array | None = None
    # False when the ledger's digests were computed another way (another DuckDB):
    # incremental then compares nothing and sends everyone once.
    compare_digests: bool = True
    # People erased with `segsync forget`: (salt, salted digests). They are left
    # out of the selection before anything else and counted as ``forgotten``.
    forgotten: tuple[str, pa.Array] | None = None
    # Only rows with this normalised email (explain: the same rules, one person),
    # read from ``source`` when given: a table of the numbered rows on the
    # connection handed to plan_export (so the profiles are scanned once).
    only_email: str | None = None
    source: str | None = None
    # False: the plan is only reviewed, never sent from memory (``PlanSpec``).
    keep_payloads: bool = True


_STATUSES = (*EXCLUSIONS, "unchanged", "skipped", "to_send")


class Plan:
    """The outcome of planning, backed by a table on its own DuckDB connection."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        spec: PlanSpec,
        mirror: bool,
    ) -> None:
        self._con = con
        self._spec = spec
        found = dict(
            con.execute("SELECT status, count(*) FROM plan_rows GROUP BY status").fetchall()
        )
        counts = {"selected": sum(found.values())}
        counts.update({s: int(found.get(s, 0)) for s in _STATUSES})
        self._removals: list[str] = []
        if mirror:
            self._removals = [
                r[0]
                for r in con.execute(
                    "SELECT l.email FROM ledger l ANTI JOIN "
                    f"(SELECT email FROM plan_rows WHERE status IN {ON_LIST}) k "
                    "ON k.email = l.email ORDER BY l.email"
                ).fetchall()
            ]
        counts["to_remove"] = len(self._removals)
        # Adds vs updates as far as segsync knows: by the destination's ledger of
        # what earlier runs put on the list (SendGrid's own counts come after upload).
        known = con.execute(
            "SELECT count(*) FROM plan_rows WHERE status = 'to_send' AND ledger_hash IS NOT NULL"
        ).fetchone()
        counts["to_update"] = int(known[0]) if known else 0
        counts["to_add"] = counts["to_send"] - counts["to_update"]
        self.counts: dict[str, int] = counts

    @functools.cached_property
    def sample_contacts(self) -> list[dict[str, Any]]:
        """The first 10 contacts to send by email (read when first asked: an
        export that is not previewed never pays for them)."""
        cur = cursor(self._con)  # its own: the changeset may be written meanwhile
        try:
            rows = cur.execute(contacts_sql(self._spec, limit=10, by_email=True)).fetchall()
        finally:
            cur.close()
        return [orjson.loads(r[2]) for r in rows]

    @functools.cached_property
    def sample_rejected(self) -> list[RejectedRow]:
        """Up to 10 of each exclusion category, so a preview filtered by one
        shows its rows even when another (often no_consent) is most of them."""
        return [row for category in EXCLUSIONS for row in self.rejected(10, (category,))]

    def contacts(
        self,
        rows_per_batch: int = 16_384,
        limit: int | None = None,
        *,
        only: pa.Table | None = None,
        skip: pa.Array | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Contacts to send as Arrow batches: ``email``, ``hash``, ``contact`` JSON.

        Read from the plan itself (its payload values were taken while planning,
        so what was counted is what is sent, even if the source file changes), in
        no particular order: the first batch is ready at once and the JSON is built
        while earlier batches are uploaded. ``limit`` keeps only the stream's first
        contacts (DuckDB keeps a single table's order under LIMIT): what a dry-run
        needs to show the first request body this plan would send.

        ``only``: a stored changeset's (``email``, ``digest``) rows: just those
        people, with exactly those payloads (see ``mismatches``). ``skip``:
        addresses not to send (the confirmed batches of a resumed run).
        """
        cur = cursor(self._con)
        try:
            if only is not None:
                cur.register("_only", only)
            if skip is not None and len(skip):
                emails = pc.utf8_lower(pc.utf8_trim_whitespace(skip.cast(pa.string())))
                cur.register("_skip", pa.table({"email": emails}))
            query = contacts_sql(
                self._spec,
                limit=limit,
                only="_only" if only is not None else None,
                skip="_skip" if skip is not None and len(skip) else None,
            )
            yield from cur.sql(query).to_arrow_reader(rows_per_batch)
        finally:
            cur.close()

    def mismatches(self, planned: pa.Table) -> int:
        """How many of a stored changeset's people to send (``email``, ``digest``)
        this plan would not send with exactly that payload: 0 means the plan can
        send that changeset person for person. A person is missing when the
        profiles changed since, left the segments, or lost consent; another
        digest means their values (or the DuckDB computing digests) changed."""
        cur = cursor(self._con)
        try:
            cur.register("_planned", planned)
            found = cur.execute(
                "SELECT count(*) FROM _planned o ANTI JOIN "
                "(SELECT email, hash FROM plan_rows WHERE status = 'to_send') p "
                "ON p.email = o.email AND p.hash = o.digest"
            ).fetchone()
        finally:
            cur.close()
        return int(found[0]) if found else 0

    def rejected(
        self, limit: int | None = None, categories: Sequence[str] = EXCLUSIONS
    ) -> Iterator[RejectedRow]:
        """Every excluded row (or the first ``limit``) in source order, optionally
        only those of some exclusion ``categories``."""
        unknown = set(categories) - set(EXCLUSIONS)
        if unknown:
            raise ValueError(f"unknown exclusion categories: {sorted(unknown)}")
        cur = cursor(self._con)
        try:
            cur.execute(rejected_sql(self._spec, tuple(categories), limit))
            while batch := cur.fetchmany(10_000):
                yield from map(RejectedRow._make, batch)
        finally:
            cur.close()

    def removals(self) -> list[str]:
        """Mirror mode: ledger emails no longer selected, ascending (empty otherwise)."""
        return list(self._removals)

    def row_verdicts(self) -> list[tuple[int, str | None, str | None, str, str | None, bool, bool]]:
        """Every planned row as (row, key, email, status, detail, in the ledger,
        same digest as the ledger): what `explain` reads for one person."""
        return self._con.execute(
            "SELECT _row, CAST(_key_order AS VARCHAR), coalesce(source_email, email), status, "
            "detail, ledger_hash IS NOT NULL, coalesce(ledger_hash = hash, false) "
            "FROM plan_rows ORDER BY _row"
        ).fetchall()

    def save_changeset(self, path: Path) -> None:
        """Write the frozen changeset (``store.changeset``): one operation per
        planned row plus one ``remove`` per departed ledger email, atomically and
        owner-only. Streamed batch by batch: memory stays flat at any size."""
        from store.changeset import CHANGESET_SCHEMA

        def write(handle: BinaryIO) -> None:
            cur = cursor(self._con)
            try:
                reader = cur.sql(changeset_sql()).to_arrow_reader(65_536)
                with pq.ParquetWriter(
                    handle,
                    CHANGESET_SCHEMA,
                    # Written on one core while the user waits: LZ4 costs half
                    # of zstd's CPU for a file ~1.5x larger (23 MB a million),
                    # and nothing reads these files by min/max statistics.
                    compression="lz4",
                    write_statistics=False,
                    # dictionaries only where values repeat: on emails and keys
                    # they cost time and grow the file
                    use_dictionary=["op", "reason"],
                ) as out:
                    for batch in reader:
                        out.write_batch(batch.cast(CHANGESET_SCHEMA))
                    if self._removals:
                        removals = pa.array(self._removals, pa.string())
                        n = len(removals)
                        out.write_batch(
                            pa.record_batch(
                                [
                                    removals,
                                    pa.nulls(n, pa.string()),
                                    pa.array(["remove"] * n, pa.string()),
                                    *(pa.nulls(n, f.type) for f in list(CHANGESET_SCHEMA)[3:]),
                                ],
                                schema=CHANGESET_SCHEMA,
                            )
                        )
            finally:
                cur.close()

        write_atomic(Path(path), write)

    def close(self) -> None:
        """Release the DuckDB connection (and the plan's memory)."""
        self._con.close()

    def __enter__(self) -> Plan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def plan_columns(ws: Workspace, req: PlanRequest) -> set[str] | None:
    """The profile columns (lower-cased) planning ``req`` reads, for a source
    that copies what it reads (Postgres): the key, the mapped and consent
    columns (so the payload digest's inputs) and every name the selected
    segments' predicates reference (``predicate_columns``). None: all of them
    (a file source, which reads only what queries name anyway; a predicate
    that may read any column, such as one with a ``*``; an unknown segment).
    """
    mapping = req.mapping
    names = [mapping.email, *mapping.reserved.values(), *mapping.custom.values()]
    if mapping.consent_column is not None:
        names.append(mapping.consent_column)
    if ws.key is not None:
        names.append(ws.key)
    try:
        segments = [ws.segment(name) for name in dict.fromkeys(req.segments)]
    except WorkspaceError:
        return None  # the plan itself reports it
    return ws.columns_read(segments, *names)


def plan_export(
    ws: Workspace, req: PlanRequest, con: duckdb.DuckDBPyConnection | None = None
) -> Plan:
    """Plan an export of ``req.segments``; raises MappingError or WorkspaceError.

    ``selected == to_send + unchanged + skipped + sum(exclusions)`` always holds.
    ``con``: a workspace connection to plan on (opened with the ledger among its
    allowed paths); the plan takes it over and closes it.
    """
    ledger = Path(req.ledger).resolve() if req.ledger is not None else None
    has_ledger = ledger is not None and ledger.is_file()
    projected = None
    if con is None:
        projected = plan_columns(ws, req)
        allowed = [ledger] if ledger is not None and has_ledger else []
        con = ws.connect(allowed_paths=allowed, columns=projected)
    try:
        columns = ws.columns(con)
        try:
            validate_mapping(req.mapping, columns)
        except MappingError:
            if projected is None:
                raise
            validate_mapping(req.mapping, ws.columns())  # name every column the source has
            raise
        types = {c.name: c.type for c in columns}
        where = ws.union_filter(req.segments, con)
        email_expr = f"NULLIF(lower(trim(CAST(n.{quote_ident(req.mapping.email)} AS VARCHAR))), '')"
        if req.only_email is not None:
            where = f"({where}) AND {email_expr} = {quote_literal(req.only_email.strip().lower())}"
        forgotten_filter = None
        if req.forgotten is not None and len(req.forgotten[1]):
            con.register("forgotten", pa.table({"digest": req.forgotten[1].cast(pa.string())}))
            forgotten_filter = (
                f"{forgotten.digest_sql(req.forgotten[0], email_expr)} "
                "IN (SELECT digest FROM forgotten)"
            )
            where = f"({where}) AND NOT coalesce({forgotten_filter}, false)"
        _load_ledger(con, ledger if has_ledger else None, snapshot=req.mirror)
        consent = req.mapping.consent_column
        spec = PlanSpec(
            where=where,
            email_column=req.mapping.email,
            key_column=ws.key,
            consent=(consent, types[consent]) if consent else None,
            reserved={
                f: req.mapping.reserved[f]
                for f in RESERVED_FIELD_LIMITS
                if f in req.mapping.reserved
            },
            limits=RESERVED_FIELD_LIMITS,
            custom=sorted(
                (req.custom_field_ids.get(name, name), col, types[col])
                for name, col in req.mapping.custom.items()
            ),
            skip_confirmed=req.skip_emails is not None and len(req.skip_emails) > 0,
            incremental=req.incremental and req.compare_digests,
            keep_payloads=req.keep_payloads,
            source=req.source or NUMBERED_VIEW,
            row_column=ws.row_column,
        )
        if spec.skip_confirmed and req.skip_emails is not None:
            emails = pc.utf8_lower(pc.utf8_trim_whitespace(req.skip_emails.cast(pa.string())))
            con.register("confirmed", pa.table({"email": emails}))
        try:
            for sql in plan_statements(spec):
                con.execute(sql)
            forgotten_count = 0
            if forgotten_filter is not None:
                union = ws.union_filter(req.segments, con)
                found = con.execute(
                    f"SELECT count(*) FROM {NUMBERED_VIEW} n "
                    f"WHERE ({union}) AND coalesce({forgotten_filter}, false)"
                ).fetchall()
                forgotten_count = int(found[0][0])
        except duckdb.Error as err:
            if ledger is not None and has_ledger and not req.mirror:  # a view: read only now
                _check_ledger(con, ledger)
            raise ws.runtime_error(con, req.segments, err) from None
        plan = Plan(con, spec, req.mirror)
        if forgotten_filter is not None:  # only where someone was ever forgotten
            plan.counts["forgotten"] = forgotten_count
        return plan
    except BaseException:
        con.close()
        raise


def _load_ledger(con: duckdb.DuckDBPyConnection, ledger: Path | None, *, snapshot: bool) -> None:
    """The destination's ledger as ``ledger``, one row per email (empty if none yet).

    A view over the file, deduplicated as the plan's join reads it: only the
    one statement that plans reads it. A deduplicated copy in a table cost
    0.18-0.23 s at 610,000 rows and, beside the plan in DuckDB's memory,
    made the plan's duplicate check ~0.2 s slower (docs/benchmarks.md, round
    six). ``snapshot`` (mirror: the plan, then who left the segment, read the
    ledger twice) makes it a table, so both reads see the same file even if
    another run replaces it meanwhile.
    """
    if ledger is None:
        con.execute("CREATE TABLE ledger (email VARCHAR, hash UBIGINT)")
        return
    kind = "TABLE" if snapshot else "VIEW"
    try:
        con.execute(
            f"CREATE {kind} ledger AS SELECT CAST(email AS VARCHAR) AS email, "
            "CAST(any_value(hash) AS UBIGINT) AS hash "
            f"FROM read_parquet({quote_literal(str(ledger))}) GROUP BY email"
        )
    except duckdb.Error as err:
        raise _unreadable(ledger, err) from None


def _check_ledger(con: duckdb.DuckDBPyConnection, ledger: Path) -> None:
    """Raise the ledger's own error if reading it fails: a view of it is read
    first by the plan, whose failure would otherwise be blamed on the profiles
    (and cost a count of every segment to find the culprit)."""
    try:
        con.execute("SELECT count(email), count(hash) FROM ledger").fetchall()
    except duckdb.Error as err:
        raise _unreadable(ledger, err) from None


def _unreadable(ledger: Path, err: duckdb.Error) -> WorkspaceError:
    return WorkspaceError(f"{ledger}: cannot read the ledger: {err}")
