"""The inverse of a run's membership effects, as a changeset like any other.

Undo takes off the list those the run added and puts back those it removed,
from the run's people record (store.people). Field values the run updated
are not restored: SendGrid keeps no history of them, and segsync does not
keep old values either; the plan says so. Undo of an undo works because an
undo run has a people record of its own.

A person a later run touched again (updated, removed, added back) is named:
undoing an old run would undo that later change too, so the user is warned
and shown who.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq

from store.atomic import write_atomic
from store.changeset import CHANGESET_SCHEMA
from store.people import people_file
from store.workspace import quote_literal


@dataclass(frozen=True)
class UndoPlan:
    """What undoing a run would do, before it is stored as a plan."""

    to_remove: int  # added by the run: taken off again
    to_add: int  # removed by the run: put back
    updated_not_restored: int
    touched_later: tuple[str, ...]  # people a later run changed again (all of them)


def build_undo(state: Path, run_id: int, later_runs: Sequence[int], out: Path) -> UndoPlan:
    """Write the undo changeset of ``run_id`` to ``out``; ``later_runs`` are the
    ids of later runs to the same list (to find who they touched again)."""
    record = people_file(state, run_id)
    if not record.is_file():
        raise FileNotFoundError(
            f"run {run_id} has no record of the people it touched (it ran before segsync "
            "kept one, or it sent nothing), so there is nothing to undo from"
        )
    con = duckdb.connect()
    try:
        source = f"read_parquet({quote_literal(str(record))})"
        table = con.sql(
            f"""
            SELECT email, key,
                   CASE op WHEN 'added' THEN 'remove' ELSE 'add' END AS op,
                   NULL::VARCHAR AS reason, NULL::VARCHAR AS detail,
                   NULL::VARCHAR AS source_email, NULL::UBIGINT AS digest,
                   CASE WHEN op = 'removed'
                        THEN CAST(json_object('email', email) AS VARCHAR) END AS contact
            FROM {source} WHERE op IN ('added', 'removed') AND email IS NOT NULL
              AND email NOT LIKE 'forgotten:%'  -- erased people are never put back
            """
        ).to_arrow_table()
        updated = con.execute(f"SELECT count(*) FROM {source} WHERE op = 'updated'").fetchall()[0]
        later_files = [
            str(people_file(state, r)) for r in later_runs if people_file(state, r).is_file()
        ]
        touched: list[str] = []
        if later_files and table.num_rows:
            con.register("_undo", table)
            files = "[" + ", ".join(quote_literal(f) for f in later_files) + "]"
            touched = [
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT email FROM read_parquet({files}) "
                    "WHERE op IN ('added', 'updated', 'removed') "
                    "AND email IN (SELECT email FROM _undo) ORDER BY email"
                ).fetchall()
            ]
    finally:
        con.close()
    table = table.cast(CHANGESET_SCHEMA)
    write_atomic(out, lambda handle: pq.write_table(table, handle))
    ops = pc.value_counts(table.column("op")).to_pylist()
    found = {item["values"]: item["counts"] for item in ops}
    return UndoPlan(
        to_remove=int(found.get("remove", 0)),
        to_add=int(found.get("add", 0)),
        updated_not_restored=int(updated[0]) if updated else 0,
        touched_later=tuple(touched),
    )
