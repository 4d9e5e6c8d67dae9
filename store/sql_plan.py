"""SQL text for planning an export: one vectorised statement, no per-row Python.

Kept apart from ``store.plan`` so the query can be read top to bottom: select the
union of segments, normalise and validate, categorise exclusions, keep one row per
email, build the SendGrid contact JSON and its hash, then compare with the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from store.workspace import quote_ident, quote_literal

EMAIL_MAX_LENGTH = 254
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


def _text(column: str) -> str:
    """A column as trimmed text, with '' treated like NULL (both mean 'no value')."""
    return f"NULLIF(trim(CAST({quote_ident(column)} AS VARCHAR)), '')"


def custom_value_json(column: str, duck_type: str) -> str:
    """JSON for a custom field value: numbers stay numbers, dates become YYYY-MM-DD."""
    col = quote_ident(column)
    base = duck_type.upper().split("(")[0].strip()
    if base in _NUMERIC:
        if base in ("FLOAT", "DOUBLE"):
            return f"CASE WHEN isfinite({col}) THEN to_json({col}) END"
        return f"to_json({col})"
    if base == "DATE" or base.startswith("TIMESTAMP"):
        return f"to_json(strftime({col}, '%Y-%m-%d'))"
    return f"to_json({_text(column)})"


def plan_sql(
    *,
    where: str,
    email_column: str,
    key_column: str | None,
    consent_column: str | None,
    reserved: Mapping[str, str],
    limits: Mapping[str, int | None],
    custom: Sequence[tuple[str, str, str]],
    skip_ranges: Sequence[tuple[str, str]],
    incremental: bool,
) -> str:
    """CREATE TABLE plan_rows: one row per selected profile with its status.

    ``reserved`` maps SendGrid field -> column; ``custom`` lists (json key, column,
    DuckDB type). ``status`` is an exclusion category, ``skipped``, ``unchanged`` or
    ``to_send``; ``contact`` and ``hash`` are set only for rows that passed.
    """
    key_order = quote_ident(key_column) if key_column else "_row"
    key_text = (
        f"CAST({quote_ident(key_column)} AS VARCHAR)" if key_column else "CAST(_row AS VARCHAR)"
    )
    if consent_column:
        consent = (
            f"coalesce(lower(trim(CAST({quote_ident(consent_column)} AS VARCHAR))) "
            f"IN ({', '.join(quote_literal(t) for t in TRUTHY)}), false)"
        )
        consent_detail = quote_literal(f"{consent_column} is not true")
    else:
        consent, consent_detail = "true", "NULL"

    reserved_cols = [
        f"{_text(col)} AS {quote_ident('r_' + field)}" for field, col in reserved.items()
    ]
    custom_cols = [
        f"{custom_value_json(col, typ)} AS {quote_ident(f'c_{i}')}"
        for i, (_, col, typ) in enumerate(custom)
    ]
    too_long = [
        f"CASE WHEN length({quote_ident('r_' + f)}) > {limits[f]} THEN "
        f"'{f} has ' || length({quote_ident('r_' + f)}) || ' characters (max {limits[f]})' END"
        for f in reserved
        if limits.get(f) is not None
    ]
    too_long_detail = f"concat_ws('; ', {', '.join(too_long)})" if too_long else "NULL"

    members = ["'\"email\":' || to_json(email)"]
    members += [
        f"CASE WHEN {quote_ident('r_' + f)} IS NOT NULL THEN "
        f"{quote_literal(json.dumps(f) + ':')} || to_json({quote_ident('r_' + f)}) END"
        for f in reserved
    ]
    if custom:
        parts = [
            f"CASE WHEN {quote_ident(f'c_{i}')} IS NOT NULL THEN "
            f"{quote_literal(json.dumps(key) + ':')} || {quote_ident(f'c_{i}')} END"
            for i, (key, _, _) in enumerate(custom)
        ]
        inner = f"concat_ws(',', {', '.join(parts)})"
        members.append(
            f"CASE WHEN {inner} <> '' THEN '\"custom_fields\":{{' || {inner} || '}}' END"
        )
    contact = "'{' || concat_ws(',', " + ", ".join(members) + ") || '}'"

    skip = " OR ".join(
        f"email BETWEEN {quote_literal(lo)} AND {quote_literal(hi)}" for lo, hi in skip_ranges
    )
    skip = skip or "false"
    unchanged = "ledger_hash = hash" if incremental else "false"

    extra = "".join(", " + c for c in [*reserved_cols, *custom_cols])
    return f"""
    CREATE TABLE plan_rows AS
    WITH sel AS (
        SELECT row_number() OVER () AS _row, * FROM profiles WHERE {where}
    ),
    prep AS (
        SELECT _row, {key_order} AS _key_order, {key_text} AS key,
               CAST({quote_ident(email_column)} AS VARCHAR) AS raw_email,
               NULLIF(lower(trim(CAST({quote_ident(email_column)} AS VARCHAR))), '') AS email,
               {consent} AS _consent{extra}
        FROM sel
    ),
    checked AS (
        SELECT *,
            CASE WHEN NOT _consent THEN 'no_consent'
                 WHEN email IS NULL THEN 'no_email'
                 WHEN length(email) > {EMAIL_MAX_LENGTH}
                      OR strpos(email, '@') > {LOCAL_PART_MAX_LENGTH + 1}
                      OR NOT regexp_full_match(email, {quote_literal(EMAIL_REGEX)})
                      THEN 'invalid_email'
                 WHEN {too_long_detail} <> '' THEN 'too_long'
            END AS _first_check
        FROM prep
    ),
    ranked AS (
        SELECT *,
            row_number() OVER w AS _rank,
            first_value(key) OVER w AS _kept_key
        FROM checked
        WINDOW w AS (PARTITION BY email, _first_check IS NULL
                     ORDER BY _key_order ASC NULLS LAST, _row)
    ),
    categorised AS (
        SELECT *,
            coalesce(_first_check, CASE WHEN _rank > 1 THEN 'duplicate' END) AS category
        FROM ranked
    ),
    payload AS (
        SELECT *,
            CASE WHEN category IS NULL THEN {contact} END AS contact
        FROM categorised
    ),
    hashed AS (
        SELECT p.*, hash(p.contact) AS hash, l.hash AS ledger_hash
        FROM payload p LEFT JOIN ledger l ON l.email = p.email AND p.category IS NULL
    )
    SELECT _row, key, raw_email, email, contact,
           CASE WHEN contact IS NOT NULL THEN hash END AS hash,
           coalesce(category, CASE WHEN {skip} THEN 'skipped'
                                   WHEN {unchanged} THEN 'unchanged'
                                   ELSE 'to_send' END) AS status,
           CASE category
               WHEN 'no_consent' THEN {consent_detail}
               WHEN 'no_email' THEN 'email is empty'
               WHEN 'invalid_email' THEN
                   CASE WHEN length(email) > {EMAIL_MAX_LENGTH}
                        THEN 'email has ' || length(email) || ' characters (max {EMAIL_MAX_LENGTH})'
                        ELSE 'not a valid email address' END
               WHEN 'too_long' THEN {too_long_detail}
               WHEN 'duplicate' THEN 'same email as row with key ' || _kept_key
           END AS detail
    FROM hashed
    """
