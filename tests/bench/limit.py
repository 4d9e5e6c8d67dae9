"""The limit: how fast this machine can turn the selection into request bodies at all.

Run as its own process (`python -m tests.bench.limit KIND --workspace DIR`) so
each is measured like an export (wall, CPU, peak RSS); each prints JSON with
its inner stage timings. No network anywhere.

- `plan_pack`: segsync's own path without the network: `store.plan` then
  `connector.batching.pack_bodies`; what an export costs before any request.
- `plan_changeset`: what every preview must do, and nothing else: plan
  without keeping payloads, then write the frozen changeset (`store.plan`,
  `Plan.save_changeset`). No SendGrid look-ups, no history, no findings: a
  floor under the dry-run and the unchanged incremental re-export.
- `duckdb_json`: the bare reference: DuckDB reads the same selection,
  serialises each contact with `to_json(struct_pack(...))`, and 25,000 rows
  are joined into each body (no validation, no dedup, NULLs kept as
  null: cheaper than the real job, so a floor, not a target).
- `arrow_orjson`: the same rows as Arrow, `to_pylist()` + `orjson.dumps` per body.
- `ingest`: the emulator's own ingest cost for the bodies segsync builds:
  parse, validate and store every contact on an in-process `EmulatorState`,
  as its PUT handler and job worker do, minus HTTP.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import orjson

from tests.bench.workloads import MAPPING, SEGMENT

ROWS_PER_BODY = 25_000  # what fits in 6 MB for the sample data


def _plan(workspace: Path, field_ids: dict[str, str]) -> tuple[Any, float]:
    from store.plan import PlanRequest, plan_export
    from store.records import FieldMapping
    from store.workspace import Workspace

    started = time.perf_counter()
    ws = Workspace.open(workspace)
    plan = plan_export(
        ws,
        PlanRequest(
            segments=(SEGMENT,), mapping=FieldMapping(**MAPPING), custom_field_ids=field_ids
        ),
    )
    return plan, time.perf_counter() - started


def _pack(plan: Any, list_id: str) -> tuple[list[bytes], float]:
    from connector.batching import pack_bodies

    started = time.perf_counter()
    bodies = [body.data for body in pack_bodies(plan.contacts(), [list_id])]
    return bodies, time.perf_counter() - started


def plan_pack(workspace: Path) -> dict[str, Any]:
    from connector.batching import pack_bodies

    plan, plan_s = _plan(workspace, {})
    with plan:
        total = count = 0
        started = time.perf_counter()
        for body in pack_bodies(plan.contacts(), ["bench-list"]):
            total += len(body.data)  # each body is dropped at once, as after its upload
            count += 1
        pack_s = time.perf_counter() - started
        contacts = plan.counts["to_send"]
    return {
        "plan_s": plan_s,
        "pack_s": pack_s,
        "total_s": plan_s + pack_s,
        "contacts": contacts,
        "bodies": count,
        "bytes": total,
    }


def plan_changeset(workspace: Path) -> dict[str, Any]:
    import tempfile

    from store.plan import PlanRequest, plan_export
    from store.records import FieldMapping
    from store.workspace import Workspace

    started = time.perf_counter()
    ws = Workspace.open(workspace)
    request = PlanRequest(segments=(SEGMENT,), mapping=FieldMapping(**MAPPING), keep_payloads=False)
    with plan_export(ws, request) as plan, tempfile.TemporaryDirectory() as folder:
        planned = time.perf_counter()
        plan.save_changeset(Path(folder) / "changeset.parquet")
        written = time.perf_counter()
        selected = plan.counts["selected"]
    return {
        "plan_s": planned - started,
        "changeset_s": written - planned,
        "total_s": written - started,
        "selected": selected,
    }


_FIELDS = (
    "email := lower(trim(email))",
    "first_name := first_name",
    "last_name := last_name",
    "city := city",
    "state_province_region := state",
    "country := country",
    "postal_code := postal_code",
    "custom_fields := struct_pack(loyalty_tier := loyalty_tier, "
    "lifetime_value := lifetime_value, signup_date := strftime(signup_date, '%Y-%m-%d'))",
)


def _selection(workspace: Path) -> str:
    return (
        f"SELECT * FROM read_parquet('{workspace / 'profiles.parquet'}') "
        "WHERE coalesce(email_opt_in, false) AND email IS NOT NULL"
    )


def duckdb_json(workspace: Path) -> dict[str, Any]:
    started = time.perf_counter()
    prefix, suffix = '{"list_ids":["bench-list"],"contacts":[', "]}"
    sql = f"SELECT to_json(struct_pack({', '.join(_FIELDS)})) FROM ({_selection(workspace)})"
    bodies = []
    with duckdb.connect() as con:
        for batch in con.sql(sql).to_arrow_reader(ROWS_PER_BODY):
            json_rows = batch.column(0).to_pylist()
            bodies.append((prefix + ",".join(json_rows) + suffix).encode())
    total_s = time.perf_counter() - started
    return {"total_s": total_s, "bodies": len(bodies), "bytes": sum(map(len, bodies))}


def arrow_orjson(workspace: Path) -> dict[str, Any]:
    started = time.perf_counter()
    with duckdb.connect() as con:
        table = con.sql(
            "SELECT lower(trim(email)) AS email, first_name, last_name, city, "
            "state AS state_province_region, country, postal_code, loyalty_tier, "
            "CAST(lifetime_value AS DOUBLE) AS lifetime_value, "
            f"strftime(signup_date, '%Y-%m-%d') AS signup_date FROM ({_selection(workspace)})"
        ).to_arrow_table()
    read_s = time.perf_counter() - started
    bodies = []
    for batch in table.to_batches(ROWS_PER_BODY):
        bodies.append(orjson.dumps({"list_ids": ["bench-list"], "contacts": batch.to_pylist()}))
    total_s = time.perf_counter() - started
    return {"read_s": read_s, "total_s": total_s, "bodies": len(bodies)}


def ingest(workspace: Path) -> dict[str, Any]:
    from connector.emulator.demo import seed_demo, tune_gc_for_bulk_ingest
    from connector.emulator.faults import FaultInjector
    from connector.emulator.state import EmulatorState

    state = EmulatorState(FaultInjector({"rate_limit": None}))
    tune_gc_for_bulk_ingest(state)  # as the emulator's own process does
    _key, list_id = seed_demo(state)
    ids = {f["name"]: f["id"] for f in state.fields}
    plan, _plan_s = _plan(workspace, ids)
    with plan:
        bodies, _pack_s = _pack(plan, list_id)
    started = time.perf_counter()
    for data in bodies:  # what the PUT handler does, then the job worker
        list_ids, contacts = state.validate_upsert(orjson.loads(data))
        state.submit_upsert(list_ids, contacts)
    accepted_s = time.perf_counter() - started
    state.drain()
    total_s = time.perf_counter() - started
    return {
        "accept_s": accepted_s,
        "total_s": total_s,
        "contacts": len(state.contacts),
        "bodies": len(bodies),
    }


KINDS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "plan_pack": plan_pack,
    "plan_changeset": plan_changeset,
    "duckdb_json": duckdb_json,
    "arrow_orjson": arrow_orjson,
    "ingest": ingest,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--workspace", type=Path, required=True)
    args = parser.parse_args()
    sys.stdout.write(orjson.dumps(KINDS[args.kind](args.workspace)).decode())


if __name__ == "__main__":
    main()
