"""A frozen changeset: what one plan decided for each person, read back from its file.

`segsync plan` (and every preview) writes one Parquet file per plan under
``<state>/plans/``: one row per planned profile and per person to take off the
list, each with a single operation:

- ``add``: not on the list as far as the ledger knows; carries the digest of
  the payload to send.
- ``update``: on the list; carries the digest of the payload to send (its values
  changed, or the run is not incremental).
- ``unchanged``: on the list with the same payload digest; nothing is sent.
- ``remove``: on the list, no longer in the segments (mirror mode).
- ``rejected``: not sent, with its ``reason`` (no_consent, invalid_email, ...)
  and ``detail``.

`apply` sends exactly the ``add`` and ``update`` rows of that file and takes off
exactly its ``remove`` rows, so what a reviewer saw is what happens. A plan's
file holds no payloads (writing a million contacts' JSON doubled the cost of a
plan): `apply` plans the same rows again and sends each person only with the
payload whose digest the file holds, refusing when any differs. An undo's
changeset is made from a run's record, not from the profiles: it carries the
``contact`` JSON to send. The same file is the run's record of whom it
meant to touch; what SendGrid then did is recorded per person by
``store.people``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

import duckdb
import pyarrow as pa

from store.paths import _private_dir
from store.records import EXCLUSIONS, RejectedRow
from store.workspace import quote_literal

OPS = ("add", "update", "unchanged", "remove", "rejected")
CHANGESET_SCHEMA = pa.schema(
    [
        ("email", pa.string()),
        ("key", pa.string()),
        ("op", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("source_email", pa.string()),
        ("digest", pa.uint64()),
        ("contact", pa.string()),
    ]
)


def plans_dir(state: Path) -> Path:
    """The folder of changeset files (owner-only: they hold personal data)."""
    return _private_dir(Path(state) / "plans")


def changeset_file(state: Path, plan_id: int) -> Path:
    return plans_dir(state) / f"plan-{plan_id}.parquet"


class Changeset:
    """Read access to one changeset file, on a private in-memory DuckDB connection."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"the changeset file {self.path} is missing (pruned, or the state folder "
                "was moved): plan again"
            )
        self._con = duckdb.connect()
        self._con.execute(
            f"CREATE VIEW changes AS SELECT * FROM read_parquet({quote_literal(str(self.path))})"
        )

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Changeset:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def op_counts(self) -> dict[str, int]:
        """How many people each operation names (every op, zero included)."""
        found = dict(self._con.execute("SELECT op, count(*) FROM changes GROUP BY op").fetchall())
        return {op: int(found.get(op, 0)) for op in OPS}

    def contacts(
        self, skip: pa.Array | None = None, rows_per_batch: int = 16_384, limit: int | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The ``contact`` JSON this file carries (an undo's re-adds) as Arrow
        batches of ``email``, ``hash`` and ``contact``, leaving out the addresses
        in ``skip`` (the confirmed batches of the run being resumed)."""
        cur = self._con.cursor()
        try:
            where = "op IN ('add', 'update')"
            if skip is not None and len(skip):
                cur.register("_skip", pa.table({"email": skip.cast(pa.string())}))
                where += " AND email NOT IN (SELECT email FROM _skip)"
            top = f"LIMIT {int(limit)}" if limit is not None else ""
            query = f"SELECT email, digest AS hash, contact FROM changes WHERE {where} {top}"
            yield from cur.sql(query).to_arrow_reader(rows_per_batch)
        finally:
            cur.close()

    def to_send(self) -> pa.Table:
        """(``email``, ``digest``) of every ``add`` and ``update``: who is sent,
        with which payload (``store.plan.Plan.contacts(only=...)``)."""
        return self._con.sql(
            "SELECT email, digest FROM changes WHERE op IN ('add', 'update')"
        ).to_arrow_table()

    def removals(self) -> list[str]:
        """Emails to take off the list, ascending."""
        rows = self._con.execute(
            "SELECT email FROM changes WHERE op = 'remove' ORDER BY email"
        ).fetchall()
        return [r[0] for r in rows]

    def people(self, ops: Sequence[str], limit: int | None = None) -> list[tuple[str, ...]]:
        """(email, key, op, reason, detail) of the rows with one of ``ops``, by email."""
        in_list = ", ".join(quote_literal(o) for o in ops)
        top = f"LIMIT {int(limit)}" if limit is not None else ""
        return self._con.execute(
            f"SELECT coalesce(email, source_email), key, op, reason, detail FROM changes "
            f"WHERE op IN ({in_list}) ORDER BY email NULLS LAST {top}"
        ).fetchall()

    def rejected(
        self, limit: int | None = None, categories: Sequence[str] = EXCLUSIONS
    ) -> Iterator[RejectedRow]:
        """Rows the plan excluded, optionally only some categories."""
        in_list = ", ".join(quote_literal(c) for c in categories)
        top = f"LIMIT {int(limit)}" if limit is not None else ""
        cur = self._con.cursor()
        try:
            cur.execute(
                "SELECT key, coalesce(source_email, email), reason, detail FROM changes "
                f"WHERE op = 'rejected' AND reason IN ({in_list}) {top}"
            )
            while batch := cur.fetchmany(10_000):
                yield from map(RejectedRow._make, batch)
        finally:
            cur.close()

    def keys_for(self, emails: Iterable[str]) -> dict[str, str | None]:
        """The profile key of each of these (normalised) emails, where the plan has one."""
        wanted = pa.table({"email": pa.array(sorted(set(emails)), pa.string())})
        cur = self._con.cursor()
        try:
            cur.register("_wanted", wanted)
            rows = cur.execute(
                "SELECT c.email, any_value(c.key) FROM changes c "
                "SEMI JOIN _wanted w ON w.email = c.email "
                "WHERE c.op IN ('add', 'update') GROUP BY c.email"
            ).fetchall()
        finally:
            cur.close()
        return dict(rows)

    def merged_ledger(
        self,
        ledger: Path | None,
        *,
        sent: pa.Array | None,
        errored: Iterable[str],
        removed: Iterable[str],
    ) -> pa.Table:
        """The ledger after applying this changeset (in part).

        ``sent``: the addresses in batches SendGrid confirmed (None: every
        ``add``/``update``). Those, minus the ones SendGrid reported as errored,
        take this changeset's digest; ``unchanged`` rows keep theirs; earlier
        ledger rows stay unless replaced or confirmed ``removed``. An errored or
        unconfirmed contact keeps its old row (or none), so the next incremental
        run tries it again; a removal that was not confirmed stays listed, so the
        next mirror run tries it again.
        """
        cur = self._con.cursor()
        try:
            for name, values in (("_errored", errored), ("_removed", removed)):
                column = pa.array(sorted({e.strip().lower() for e in values}), pa.string())
                cur.register(name, pa.table({"email": column}))
            sent_filter = ""
            if sent is not None:
                cur.register("_sent", pa.table({"email": sent.cast(pa.string())}))
                sent_filter = "AND (op = 'unchanged' OR email IN (SELECT email FROM _sent))"
            if ledger is not None and Path(ledger).is_file():
                old = f"read_parquet({quote_literal(str(ledger))})"
            else:
                old = "(SELECT NULL::VARCHAR AS email, NULL::UBIGINT AS hash WHERE false)"
            return cur.sql(
                f"""
                WITH fresh AS (
                    SELECT email, digest AS hash FROM changes
                    WHERE op IN ('add', 'update', 'unchanged') {sent_filter}
                      AND email NOT IN (SELECT email FROM _errored)
                )
                SELECT email, hash FROM fresh
                UNION ALL
                SELECT l.email, CAST(l.hash AS UBIGINT) FROM {old} l
                ANTI JOIN fresh f ON f.email = l.email
                ANTI JOIN _removed r ON r.email = l.email
                """
            ).to_arrow_table()
        finally:
            cur.close()
