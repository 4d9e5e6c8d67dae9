"""Why a person was or was not sent: one answer from the live profiles and the records.

`explain` answers with the same rules the planner applies (it runs the real
plan, restricted to the person's rows, so it cannot disagree with an export),
plus what the records say: the destination's ledger (is the person on the
list as far as segsync knows, with the same values?) and every run's people
record (added, updated, removed, rejected, with SendGrid's reason).

It reads the profile source a few times with a filter on one address: well
under a second on a million profiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from store.ledger import ledger_file
from store.limits import EMAIL_MAX_LENGTH, RESERVED_FIELD_LIMITS
from store.plan import PlanRequest, plan_export
from store.records import FieldMapping
from store.sql_plan import EMAIL_REGEX, LOCAL_PART_MAX_LENGTH, PlanSpec
from store.workspace import NUMBERED_VIEW, Workspace, quote_ident, quote_literal

PERSON = "_person"  # the person's numbered rows, copied once from the profiles


class ExplainError(Exception):
    """The question cannot be answered as asked (no such key, bad input)."""


@dataclass
class RowAnswer:
    row: int
    key: str | None
    source_email: str | None
    email: str | None
    email_verdict: str
    consent_value: Any
    consent_ok: bool | None
    segments: dict[str, bool | None]
    fields: list[dict[str, Any]]
    status: str | None = None  # the plan's verdict; None: in none of the segments
    detail: str | None = None


@dataclass
class Answer:
    email: str | None
    destination: str
    list_id: str | None
    segments: dict[str, str]  # the destination's segments: name -> predicate
    consent_column: str | None
    rows: list[RowAnswer] = field(default_factory=list)
    on_list: bool = False
    payload: str = "unknown"  # unchanged | changed | unknown | not on the list
    since_run: int | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = ""

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _email_expr(column: str) -> str:
    return f"NULLIF(lower(trim(CAST(n.{quote_ident(column)} AS VARCHAR))), '')"


def explain(
    ws: Workspace,
    state: Path,
    *,
    destination: Any,
    mapping: FieldMapping,
    segments: tuple[str, ...],
    email: str | None = None,
    key: str | None = None,
    custom_field_ids: Mapping[str, str] | None = None,
) -> Answer:
    """The answer for one person, found by normalised ``email`` or profile ``key``.

    ``custom_field_ids``: the SendGrid ids the last plan sent custom fields by
    (``History.latest_custom_field_ids``): the payload digest includes the
    field keys, so without them every person with a custom field would read
    as "changed"."""
    if (email is None) == (key is None):
        raise ExplainError("name one person: an email address or --key KEY")
    predicates = {s.name: s.where for s in ws.segments()}
    answer = Answer(
        email=email.strip().lower() if email else None,
        destination=destination.name,
        list_id=destination.list_id,
        segments={name: predicates.get(name, "") for name in segments},
        consent_column=mapping.consent_column,
    )
    email_expr = _email_expr(mapping.email)
    ledger = ledger_file(state, destination.base_url, destination.list_id or "")
    con = ws.connect(allowed_paths=[ledger] if ledger.is_file() else [])
    owned = True  # until the plan takes the connection over
    try:
        if key is not None:
            if ws.key is None:
                raise ExplainError(
                    f"{ws.config_path} names no [profiles] key column, so --key cannot be used"
                )
            found = con.execute(
                f"SELECT DISTINCT {email_expr} FROM {NUMBERED_VIEW} n "
                f"WHERE CAST(n.{quote_ident(ws.key)} AS VARCHAR) = ?",
                [key],
            ).fetchall()
            if not found:
                answer.verdict = f"no profile has key {key!r}"
                return answer
            answer.email = found[0][0]
        if answer.email is not None:
            _copy_person(con, mapping, email_expr, answer.email)
            answer.rows = _rows(con, ws, mapping, predicates, email_expr, answer.email)
        if answer.email is not None and answer.rows and segments:
            _plan_verdicts(con, ws, ledger, mapping, segments, answer, custom_field_ids or {})
            owned = False  # the plan took the connection over and closed it
    finally:
        if owned:
            con.close()
    if answer.email is not None:
        _records(state, destination, answer)
    answer.verdict = _verdict(answer)
    return answer


def _copy_person(con: Any, mapping: FieldMapping, email_expr: str, email: str) -> None:
    """The person's numbered rows in a small table, so the profiles are scanned
    once. The ILIKE on the raw column (a superset: ``_`` and ``%`` only widen it)
    lets DuckDB skip the costly normalisation for nearly every row."""
    raw = f"CAST(n.{quote_ident(mapping.email)} AS VARCHAR)"
    con.execute(
        f"CREATE TEMP TABLE {PERSON} AS SELECT * FROM {NUMBERED_VIEW} n "
        f"WHERE {raw} ILIKE ? AND {email_expr} = ?",
        [f"%{email}%", email],
    )


def _rows(
    con: Any,
    ws: Workspace,
    mapping: FieldMapping,
    predicates: dict[str, str],
    email_expr: str,
    email: str,
) -> list[RowAnswer]:
    """The person's rows with everything judged per row, in one filtered scan."""
    spec = PlanSpec(
        where="true",
        email_column=mapping.email,
        key_column=ws.key,
        consent=None,
        reserved={},
        limits=RESERVED_FIELD_LIMITS,
        custom=[],
    )
    consent_sql, consent_value = "NULL", "NULL"
    if mapping.consent_column:
        types = {c.name: c.type for c in ws.columns(con)}
        consent = (mapping.consent_column, types[mapping.consent_column])
        consent_sql = replace(spec, consent=consent).consent_ok()
        consent_value = f"n.{quote_ident(mapping.consent_column)}"
    fields = sorted(mapping.reserved.items())
    field_sql = "".join(f", CAST(n.{quote_ident(col)} AS VARCHAR)" for _f, col in fields)
    segment_sql = "".join(f", ({where})" for where in predicates.values())
    key_sql = f"CAST(n.{quote_ident(ws.key)} AS VARCHAR)" if ws.key else "NULL"
    valid = (
        f"length(e) <= {EMAIL_MAX_LENGTH} AND strpos(e, '@') <= {LOCAL_PART_MAX_LENGTH + 1} "
        f"AND regexp_full_match(e, {quote_literal(EMAIL_REGEX)})"
    )
    rows = con.execute(
        f"""
        SELECT _r, _k, _src, e, CASE WHEN e IS NULL THEN 'empty'
                                     WHEN {valid} THEN 'valid' ELSE 'invalid' END,
               * EXCLUDE (_r, _k, _src, e)
        FROM (
            SELECT n.{quote_ident(ws.row_column)} AS _r, {key_sql} AS _k,
                   CAST(n.{quote_ident(mapping.email)} AS VARCHAR) AS _src,
                   {email_expr} AS e, {consent_value} AS _cv, {consent_sql} AS _cok
                   {field_sql}{segment_sql}
            FROM {PERSON} n WHERE {email_expr} = ?
        ) ORDER BY _r
        """,
        [email],
    ).fetchall()
    out = []
    names = list(predicates)
    for row in rows:
        r, k, src, e, verdict, cv, cok, *rest = row
        values, members = rest[: len(fields)], rest[len(fields) :]
        out.append(
            RowAnswer(
                row=int(r),
                key=k,
                source_email=src,
                email=e,
                email_verdict=verdict,
                consent_value=cv if not isinstance(cv, bytes) else cv.hex(),
                consent_ok=cok if mapping.consent_column else None,
                segments=dict(zip(names, members, strict=True)),
                fields=[
                    {
                        "field": f,
                        "column": col,
                        "value": v,
                        "length": len(v.strip()) if v is not None else 0,
                        "limit": RESERVED_FIELD_LIMITS.get(f),
                        "too_long": v is not None
                        and RESERVED_FIELD_LIMITS.get(f) is not None
                        and len(v.strip()) > (RESERVED_FIELD_LIMITS[f] or 0),
                    }
                    for (f, col), v in zip(fields, values, strict=True)
                ],
            )
        )
    return out


def _plan_verdicts(
    con: Any,
    ws: Workspace,
    ledger: Path,
    mapping: FieldMapping,
    segments: tuple[str, ...],
    answer: Answer,
    custom_field_ids: Mapping[str, str],
) -> None:
    """The planner's own verdict per row (duplicates, cuts, unchanged), restricted
    to this person: the same code as an export, so the two cannot disagree."""
    request = PlanRequest(
        segments=segments,
        mapping=mapping,
        custom_field_ids=dict(custom_field_ids),
        ledger=ledger if ledger.is_file() else None,
        incremental=True,
        only_email=answer.email,
        source=PERSON,
    )
    with plan_export(ws, request, con) as plan:
        verdicts = {r[0]: r[3:] for r in plan.row_verdicts()}  # row -> status, detail, ...
    for row in answer.rows:
        if row.row in verdicts:
            status, detail, known, same = verdicts[row.row]
            row.status = "to_send" if status == "unchanged" else status
            row.detail = detail
            if status in ("to_send", "unchanged"):
                answer.payload = "unchanged" if same else ("changed" if known else "new")


def _records(state: Path, destination: Any, answer: Answer) -> None:
    """What the ledger and the runs' people records say about this address."""
    import duckdb

    ledger = ledger_file(state, destination.base_url, destination.list_id or "")
    con = duckdb.connect()
    try:
        if ledger.is_file():
            hit = con.execute(
                f"SELECT count(*) FROM read_parquet({quote_literal(str(ledger))}) WHERE email = ?",
                [answer.email],
            ).fetchall()
            answer.on_list = bool(hit[0][0])
        people = sorted((Path(state) / "people").glob("run-*.parquet"))
        if people:
            files = "[" + ", ".join(quote_literal(str(p)) for p in people) + "]"
            rows = con.execute(
                f"SELECT filename, op, reason FROM read_parquet({files}, filename = true) "
                "WHERE email = ?",
                [answer.email],
            ).fetchall()
            for filename, op, reason in rows:
                run = int(Path(filename).stem.removeprefix("run-"))
                answer.runs.append({"run": run, "op": op, "reason": reason})
            answer.runs.sort(key=lambda r: r["run"])
    finally:
        con.close()
    adds = [r["run"] for r in answer.runs if r["op"] == "added"]
    answer.since_run = adds[-1] if adds and answer.on_list else None


def _verdict(answer: Answer) -> str:
    """The answer in one line."""
    if answer.email is None:
        return answer.verdict
    if not answer.rows:
        seen = " (the records below say what earlier runs did)" if answer.runs else ""
        return f"{answer.email} is not in the profile source{seen}"
    statuses = [r.status for r in answer.rows if r.status]
    if not statuses:
        return f"not selected: {answer.email} is in none of the segments of {answer.destination}"
    if "to_send" in statuses:
        how = {
            "unchanged": "already on the list with the same values (an incremental run sends "
            "nothing for them)",
            "changed": "on the list; values changed, so it would be updated",
            "new": "not on the list yet: it would be added",
        }.get(answer.payload, "would be sent")
        return f"would be sent: {how}"
    first = next(r for r in answer.rows if r.status)
    return f"not sent: {first.status}" + (f" ({first.detail})" if first.detail else "")
