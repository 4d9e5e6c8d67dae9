"""Who each applied run touched, and how: the per-person record of a run.

One owner-only Parquet file per run (``<state>/people/run-<id>.parquet``),
rewritten whenever the run ends (a resumed run's file covers every attempt):

- ``added`` / ``updated``: in a batch SendGrid confirmed, not rejected by it
  (added: the ledger did not have them; updated: it did);
- ``rejected_by_sendgrid``: in a confirmed batch, refused by SendGrid, with
  its reason;
- ``rejected``: left out by the plan (no consent, invalid email, duplicate,
  too long, no email), with the reason;
- ``removed``: confirmed off the list by reading membership back;
- ``remove_failed``: a removal that was tried and not confirmed (still on the
  list as far as anyone knows), with why;
- ``not_sent``: planned but not sent or not confirmed (the run was cancelled,
  failed, or is waiting to be resumed).

Files are kept with their run and pruned only by an explicit command.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from store.atomic import write_atomic
from store.paths import _private_dir
from store.records import Person
from store.workspace import quote_literal

if TYPE_CHECKING:  # reading a run's record needs no planning code
    from store.changeset import Changeset

PEOPLE_OPS = (
    "added", "updated", "rejected_by_sendgrid", "rejected", "removed", "remove_failed",
    "not_sent",
)  # fmt: skip
PEOPLE_SCHEMA = pa.schema(
    [("email", pa.string()), ("key", pa.string()), ("op", pa.string()), ("reason", pa.string())]
)


def people_file(state: Path, run_id: int) -> Path:
    return _private_dir(Path(state) / "people") / f"run-{run_id}.parquet"


def _emails(values: Iterable[str]) -> pa.Table:
    return pa.table({"email": pa.array(sorted(set(values)), pa.string())})


def write_people(
    path: Path,
    changeset: Changeset,
    *,
    sent: pa.Array,
    errored: Mapping[str, str],
    removed: Iterable[str],
    remove_failed: Mapping[str, str],
) -> dict[str, int]:
    """Write the run's record from its changeset and what SendGrid confirmed;
    returns how many people each op names."""
    counts = dict.fromkeys(PEOPLE_OPS, 0)

    def write(handle: BinaryIO) -> None:
        con = duckdb.connect()
        try:
            _register_outcomes(con, sent, errored, removed, remove_failed)
            reader = con.sql(_people_sql(changeset.path)).to_arrow_reader(65_536)
            # Streamed: a million people never sit in memory at once. LZ4
            # without statistics, as for changesets: written while the user waits.
            with pq.ParquetWriter(
                handle, PEOPLE_SCHEMA, compression="lz4", write_statistics=False
            ) as out:
                for batch in reader:
                    batch = batch.cast(PEOPLE_SCHEMA)
                    for item in batch.column("op").value_counts().to_pylist():
                        counts[item["values"]] += int(item["counts"])
                    out.write_batch(batch)
        finally:
            con.close()

    write_atomic(Path(path), write)
    return counts


def _register_outcomes(
    con: duckdb.DuckDBPyConnection,
    sent: pa.Array,
    errored: Mapping[str, str],
    removed: Iterable[str],
    remove_failed: Mapping[str, str],
) -> None:
    con.register("_sent", pa.table({"email": sent.cast(pa.string())}))
    for name, why in (("_errored", errored), ("_remove_failed", remove_failed)):
        con.register(
            name,
            pa.table(
                {
                    "email": pa.array(list(why), pa.string()),
                    "why": pa.array(list(why.values()), pa.string()),
                }
            ),
        )
    con.register("_removed", _emails(removed))


def _people_sql(changeset: Path) -> str:
    """One pass over the changeset: each person's outcome from the sets of
    confirmed, refused and removed addresses (mark joins: no DISTINCT, no
    second or third read of the file)."""
    changes = f"read_parquet({quote_literal(str(changeset))})"
    return f"""
        SELECT CASE WHEN c.op = 'rejected' THEN coalesce(c.email, c.source_email)
                    ELSE c.email END AS email,
               CASE WHEN c.op <> 'remove' THEN c.key END AS key,
               CASE WHEN c.op = 'rejected' THEN 'rejected'
                    WHEN c.op = 'remove' THEN
                        CASE WHEN c.email IN (SELECT email FROM _removed) THEN 'removed'
                             WHEN f.email IS NOT NULL THEN 'remove_failed'
                             ELSE 'not_sent' END
                    WHEN e.email IS NOT NULL THEN 'rejected_by_sendgrid'
                    WHEN c.email IN (SELECT email FROM _sent) THEN
                        CASE WHEN c.op = 'add' THEN 'added' ELSE 'updated' END
                    ELSE 'not_sent' END AS op,
               CASE WHEN c.op = 'rejected' THEN c.reason || coalesce(': ' || c.detail, '')
                    WHEN c.op = 'remove' THEN f.why
                    WHEN e.email IS NOT NULL THEN e.why END AS reason
        FROM {changes} c
        LEFT JOIN _errored e ON e.email = c.email AND c.op IN ('add', 'update')
        LEFT JOIN _remove_failed f ON f.email = c.email AND c.op = 'remove'
        WHERE c.op <> 'unchanged'
    """


def write_people_csv(rows: Iterable[tuple[Any, ...]], path: Path) -> int:
    """Write (email, key, op, reason) rows as CSV, owner-only like every file of
    personal data, formula cells neutralised; returns how many."""
    from store.rejected_csv import safe_cell

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    written = 0
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("email", "key", "op", "reason"))
        for row in rows:
            writer.writerow([safe_cell(v) for v in row])
            written += 1
    return written


def read_people(
    path: Path, ops: Sequence[str] | None = None, limit: int | None = None
) -> Iterator[Person]:
    """(email, key, op, reason) of a run's record, by op then email."""
    if not Path(path).is_file():
        return
    con = duckdb.connect()
    try:
        where = ""
        if ops:
            where = "WHERE op IN (" + ", ".join(quote_literal(o) for o in ops) + ")"
        top = f"LIMIT {int(limit)}" if limit is not None else ""
        order = "CASE op " + " ".join(
            f"WHEN {quote_literal(op)} THEN {i}" for i, op in enumerate(PEOPLE_OPS)
        )
        cur = con.execute(
            f"SELECT email, key, op, reason FROM read_parquet({quote_literal(str(path))}) "
            f"{where} ORDER BY {order} END, email {top}"
        )
        while batch := cur.fetchmany(10_000):
            yield from (Person(*row) for row in batch)
    finally:
        con.close()
