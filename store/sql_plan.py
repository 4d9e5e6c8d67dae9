"""SQL text for planning an export: vectorised statements, no per-row Python.

Kept apart from ``store.plan`` so the queries can be read top to bottom. One scan
of the source builds ``plan_rows``: row number, key, normalised email, payload
hash, status, detail, and the payload values (``v_<i>``) of the rows that may be
sent. The contact JSON is built from that table when contacts are streamed, never
for rows that are excluded or unchanged, and without reading the source again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from store.limits import EMAIL_MAX_LENGTH
from store.workspace import NUMBERED_VIEW, ROW_COLUMN, quote_ident, quote_literal

LOCAL_PART_MAX_LENGTH = 64

# Applied to the normalised (trimmed, lower-cased) address. ASCII only, on purpose:
# SendGrid does not document how it treats internationalised addresses, so a unicode
# local part or an unencoded IDN domain is reported as invalid rather than risked
# (punycode ``xn--`` domains pass). Dots may not start, end or repeat in the local
# part; domain labels are letters/digits/hyphens not at either end; the TLD is 2-63
# letters. This rejects missing or doubled @, spaces inside and a trailing dot.
EMAIL_REGEX = (
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,63}"
)

TRUTHY = ("true", "t", "yes", "y", "1")

_NUMERIC = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL",
)  # fmt: skip


def _text(expr: str) -> str:
    """A value as trimmed text, with '' treated like NULL (both mean 'no value')."""
    return f"NULLIF(trim(CAST({expr} AS VARCHAR)), '')"


def _col(column: str) -> str:
    return "n." + quote_ident(column)


def custom_value(column: str, duck_type: str) -> str:
    """A custom field value as sent: numbers stay numbers, dates become YYYY-MM-DD text."""
    col = _col(column)
    base = duck_type.upper().split("(")[0].strip()
    if base in ("FLOAT", "DOUBLE"):
        return f"CASE WHEN isfinite({col}) THEN {col} END"
    if base in _NUMERIC:
        return col
    if base == "DATE" or base.startswith("TIMESTAMP"):
        return f"strftime({col}, '%Y-%m-%d')"
    return _text(col)


def _v(index: int) -> str:
    return quote_ident(f"v_{index}")


def _key(name: str) -> str:
    """A JSON object key with its colon, as a SQL literal."""
    return quote_literal(json.dumps(name) + ":")


@dataclass(frozen=True)
class PlanSpec:
    """Everything the SQL needs, already validated against the profile columns.

    ``reserved`` maps SendGrid field -> column in sending order; ``custom`` lists
    (JSON key, column, DuckDB type) sorted by key; ``consent`` is (column, type).
    """

    where: str
    email_column: str
    key_column: str | None
    consent: tuple[str, str] | None
    reserved: Mapping[str, str]
    limits: Mapping[str, int | None]
    custom: Sequence[tuple[str, str, str]]
    skip_confirmed: bool = False  # a ``confirmed`` table lists addresses already sent
    incremental: bool = False
    # False for a plan that is only reviewed (a preview, `segsync plan`): its
    # payload values are not kept in ``plan_rows`` (a sixth of the planning
    # time); the few contacts it shows are looked up in the source by row.
    keep_payloads: bool = True
    source: str = NUMBERED_VIEW  # the numbered rows to plan (explain: one person's copy)
    row_column: str = ROW_COLUMN  # the row number's name there (Workspace.row_column)

    @property
    def email_expr(self) -> str:
        return f"NULLIF(lower(trim(CAST({_col(self.email_column)} AS VARCHAR))), '')"

    def payload(self) -> list[tuple[str, str, bool]]:
        """(JSON key, value expression over the source row ``n``, is custom) per field.

        Reserved fields come first, in ``reserved`` order; their values are ``v_0..``.
        """
        out = [(f, _text(_col(c)), False) for f, c in self.reserved.items()]
        out += [(k, custom_value(c, t), True) for k, c, t in self.custom]
        return out

    def values_sql(self) -> str:
        """The payload values as columns ``v_<i>``, computed once per row."""
        return "".join(f", {expr} AS {_v(i)}" for i, (_, expr, _) in enumerate(self.payload()))

    def payload_hash(self) -> str:
        """hash() over email, ``v_<i>`` and the field keys: changes when the payload does."""
        signature = quote_literal(json.dumps([k for k, _, _ in self.payload()]))
        values = [_v(i) for i in range(len(self.payload()))]
        return f"hash({', '.join(['email', *values, signature])})"

    def contact_json(self) -> str:
        """The contact JSON over ``email`` and ``v_<i>``; NULL fields are left out.

        Rows with every field present (most rows) take ``json_object``, which is
        about twice as fast; the others are built by concatenation, because
        SendGrid payloads must omit empty fields rather than send null. Both give
        the same text for the same values (a test checks it).
        """
        payload = self.payload()
        if not payload:
            return "CAST(json_object('email', email) AS VARCHAR)"
        args = ["'email'", "email"]
        custom_args: list[str] = []
        for i, (key, _, is_custom) in enumerate(payload):
            (custom_args if is_custom else args).extend([quote_literal(key), _v(i)])
        if custom_args:
            args += ["'custom_fields'", f"json_object({', '.join(custom_args)})"]
        present = " AND ".join(f"{_v(i)} IS NOT NULL" for i in range(len(payload)))
        fast = f"CAST(json_object({', '.join(args)}) AS VARCHAR)"
        return f"CASE WHEN {present} THEN {fast} ELSE {self._sparse_json()} END"

    def _sparse_json(self) -> str:
        """The contact JSON by concatenation, leaving NULL fields out."""
        members = ["'\"email\":' || to_json(email)"]
        custom: list[str] = []
        for i, (key, _, is_custom) in enumerate(self.payload()):
            member = f"CASE WHEN {_v(i)} IS NOT NULL THEN {_key(key)} || to_json({_v(i)}) END"
            (custom if is_custom else members).append(member)
        if custom:
            inner = f"concat_ws(',', {', '.join(custom)})"
            members.append(
                f"CASE WHEN {inner} <> '' THEN '\"custom_fields\":{{' || {inner} || '}}' END"
            )
        return "'{' || concat_ws(',', " + ", ".join(members) + ") || '}'"

    def too_long(self) -> str:
        """NULL, or which reserved fields exceed SendGrid's length limits and by how much."""
        parts = []
        for i, f in enumerate(self.reserved):
            limit = self.limits.get(f)
            if limit is not None:
                parts.append(
                    f"CASE WHEN length({_v(i)}) > {limit} THEN "
                    f"'{f} has ' || length({_v(i)}) || ' characters (max {limit})' END"
                )
        return f"NULLIF(concat_ws('; ', {', '.join(parts)}), '')" if parts else "NULL"

    def consent_ok(self) -> str:
        if self.consent is None:
            return "true"
        column, duck_type = self.consent
        if duck_type.upper() == "BOOLEAN":
            return f"coalesce({_col(column)}, false)"
        truthy = "[" + ", ".join(quote_literal(t) for t in TRUTHY) + "]"
        text = f"lower(trim(CAST({_col(column)} AS VARCHAR)))"
        return f"coalesce(list_contains({truthy}, {text}), false)"


# Statuses of rows that end on the list (sent now, unchanged, or sent by the resumed run).
ON_LIST = "('to_send', 'unchanged', 'skipped')"


def plan_statements(spec: PlanSpec) -> list[str]:
    """Statements that build ``plan_rows``: one row per selected profile with its status.

    ``status`` ends as an exclusion category, ``skipped`` (sent by the run being
    resumed), ``unchanged`` (incremental: the ledger has the same hash) or
    ``to_send``. One CREATE (a single scan, no CTE materialisation) decides every
    row, keeping the payload values of the rows to send; duplicates touch few rows
    and are an UPDATE among every row that would otherwise be on the list, so the
    same row wins whether or not it is also unchanged or skipped. No statement
    rewrites the table: rebuilding or updating a million rows costs seconds.
    """
    row = _col(spec.row_column)
    key_order = _col(spec.key_column) if spec.key_column else row
    fields = range(len(spec.payload()))
    values = "".join(f", {_v(i)}" for i in fields)
    # Payload values are kept only for rows to send (NULL elsewhere: less memory),
    # and only when this plan may be sent.
    kept_values = "".join(
        f"\n               CASE WHEN status = 'to_send' THEN {_v(i)} END AS {_v(i)},"
        for i in (fields if spec.keep_payloads else ())
    )
    consent_detail = quote_literal(f"{spec.consent[0]} is not true") if spec.consent else "NULL"
    skipped = "confirmed_email IS NOT NULL" if spec.skip_confirmed else "false"
    unchanged = "ledger_hash = hash" if spec.incremental else "false"
    confirmed_join = (
        "LEFT JOIN (SELECT DISTINCT email AS confirmed_email FROM confirmed) "
        "ON confirmed_email = email"
        if spec.skip_confirmed
        else ""
    )
    statements = [
        f"""
        CREATE TABLE plan_rows AS
        SELECT _row, _key_order, email, source_email, hash, status,{kept_values}
               CASE _status
                   WHEN 'no_consent' THEN {consent_detail}
                   WHEN 'no_email' THEN 'email is empty'
                   WHEN 'invalid_email' THEN
                       CASE WHEN length(email) > {EMAIL_MAX_LENGTH}
                            THEN 'email has ' || length(email)
                                 || ' characters (max {EMAIL_MAX_LENGTH})'
                            ELSE 'not a valid email address' END
                   WHEN 'too_long' THEN _too_long
               END AS detail,
               ledger_hash
        FROM (
            SELECT *,
                CASE WHEN _status IS NOT NULL THEN _status
                     WHEN {skipped} THEN 'skipped'
                     WHEN {unchanged} THEN 'unchanged'
                     ELSE 'to_send' END AS status
            FROM (
                SELECT *,
                    CASE WHEN NOT _consent THEN 'no_consent'
                         WHEN email IS NULL THEN 'no_email'
                         WHEN length(email) > {EMAIL_MAX_LENGTH}
                              OR strpos(email, '@') > {LOCAL_PART_MAX_LENGTH + 1}
                              OR NOT regexp_full_match(email, {quote_literal(EMAIL_REGEX)})
                              THEN 'invalid_email'
                         WHEN _too_long IS NOT NULL THEN 'too_long'
                    END AS _status
                FROM (
                    -- CASE evaluates only the rows it selects: no hashing for refused consent
                    SELECT _row, _key_order, email, source_email, _consent{values},
                           CASE WHEN _consent THEN {spec.too_long()} END AS _too_long,
                           CASE WHEN _consent AND email IS NOT NULL
                                THEN {spec.payload_hash()} END AS hash
                    FROM (
                        SELECT {row} AS _row, {key_order} AS _key_order,
                               {spec.email_expr} AS email, {spec.consent_ok()} AS _consent,
                               -- as the source has it, for reports; NULL when it is
                               -- already the normalised form (most rows: no memory)
                               NULLIF(CAST({_col(spec.email_column)} AS VARCHAR),
                                      {spec.email_expr}) AS source_email
                               {spec.values_sql()}
                        FROM {spec.source} n WHERE {spec.where}
                    )
                )
                LEFT JOIN (SELECT email AS ledger_email, hash AS ledger_hash FROM ledger)
                       ON ledger_email = email
                {confirmed_join}
            )
        )
        """,
        # Among rows that pass, one per email stays: the first by key, then source order.
        f"""
        UPDATE plan_rows SET status = 'duplicate',
               detail = 'same email as the row with key ' || CAST(k.kept_key AS VARCHAR)
        FROM (
            SELECT email, arg_min(_row, (_key_order, _row)) AS kept_row,
                   arg_min(_key_order, (_key_order, _row)) AS kept_key
            FROM plan_rows
            WHERE status IN {ON_LIST} AND hash(email) IN (
                -- cheap pre-filter: group integers, not strings, to find candidates
                SELECT hash(email) AS h FROM plan_rows WHERE status IN {ON_LIST}
                GROUP BY h HAVING count(*) > 1
            )
            GROUP BY email HAVING count(*) > 1
        ) k
        WHERE plan_rows.email = k.email AND plan_rows.status IN {ON_LIST}
          AND plan_rows._row <> k.kept_row
        """,
    ]
    return statements


def contacts_sql(
    spec: PlanSpec,
    limit: int | None = None,
    by_email: bool = False,
    only: str | None = None,
    skip: str | None = None,
) -> str:
    """Contacts to send: ``email``, ``hash``, ``contact`` JSON, in the plan's order.

    Not sorted: the stream starts at once and DuckDB builds the JSON in parallel
    while earlier batches are uploaded. A resumed run skips confirmed batches by
    their recorded addresses (``store.batch_emails``), so no order is needed.
    ``by_email`` (with a small ``limit``) picks the first contacts by address
    instead, so a preview's sample is the same from one run to the next.
    ``only``: a table of (``email``, ``digest``): just those people, and only
    with those exact payloads (a stored changeset being applied). ``skip``: a
    table of ``email``: addresses not to send (a resumed run's confirmed ones).
    """
    top = f"LIMIT {int(limit)}" if limit is not None else ""
    order = "ORDER BY email" if by_email else ""
    joins = ""
    if only is not None:
        joins += f" SEMI JOIN {only} o ON o.email = p.email AND o.digest = p.hash"
    if skip is not None:
        joins += f" ANTI JOIN {skip} s ON s.email = p.email"
    if not spec.keep_payloads:
        # A reviewed-only plan: the values of these few rows, from the source by
        # row number (DuckDB pushes the join's keys into the scan), in the
        # order the plan would send them.
        return f"""
            SELECT email, hash, {spec.contact_json()} AS contact
            FROM (SELECT p._row, p.email, p.hash FROM plan_rows p{joins}
                  WHERE status = 'to_send' {order or "ORDER BY _row"} {top}) p
            JOIN (SELECT {_col(spec.row_column)} AS _source_row{spec.values_sql()}
                  FROM {spec.source} n) v ON v._source_row = p._row
            {order or "ORDER BY _row"}
        """
    return f"""
        SELECT email, hash, {spec.contact_json()} AS contact
        FROM (SELECT p.* FROM plan_rows p{joins} WHERE status = 'to_send' {order} {top})
        {order}
    """


def changeset_sql() -> str:
    """Every planned row as one operation of the changeset (see ``store.changeset``).

    ``add`` (not in the ledger) and ``update`` carry the digest of the payload
    to send, not the payload: `apply` plans again and sends only people whose
    payload has that digest (building their JSON here would double the cost
    of a plan). ``unchanged`` carries its digest; a ``rejected`` row its
    reason. A row that a resumed legacy run had already confirmed
    (``skipped``) is sent again by nobody and stays on the list:
    ``unchanged``. Not sorted: a million rows stream out as DuckDB produces
    them.
    """
    return f"""
        SELECT email, CAST(_key_order AS VARCHAR) AS key,
               CASE WHEN status = 'to_send' AND ledger_hash IS NULL THEN 'add'
                    WHEN status = 'to_send' THEN 'update'
                    WHEN status IN ('unchanged', 'skipped') THEN 'unchanged'
                    ELSE 'rejected' END AS op,
               CASE WHEN status NOT IN {ON_LIST} THEN status END AS reason,
               detail, source_email, CAST(hash AS UBIGINT) AS digest,
               NULL::VARCHAR AS contact
        FROM plan_rows
    """


def rejected_sql(spec: PlanSpec, statuses: Sequence[str], limit: int | None = None) -> str:
    """Excluded rows in source order, with the key and the email as the source has them
    (kept by the plan: the source is not read again)."""
    in_list = ", ".join(quote_literal(s) for s in statuses)
    top = f"LIMIT {int(limit)}" if limit is not None else ""
    return f"""
        SELECT CAST(_key_order AS VARCHAR), coalesce(source_email, email), status, detail
        FROM plan_rows WHERE status IN ({in_list}) ORDER BY _row {top}
    """
