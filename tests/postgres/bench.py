"""Planning from PostgreSQL against planning the same rows from Parquet.

    uv run python -m tests.postgres.bench [--rows 1000000] [--repeat 3] [--url URL]

Starts a throwaway cluster (or uses ``--url``, whose ``public.profiles`` it
replaces), loads the synthetic profiles into it and writes the same rows as
Parquet, then plans every sample segment from each, alternately, each plan in a
process of its own (`tests.bench.measure`: wall, CPU, peak RSS of that process):
opening the workspace, then `plan_export` as an export does (consent column
``email_opt_in``). The target: Postgres within 2x of Parquet (median wall).
Exits 1 when it is missed or the two plans' counts differ.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_RATIO = 2.0


def child(workspace: str) -> None:
    """One plan, in this process: prints its phases and counts as JSON."""
    from dataclasses import replace

    from store.plan import PlanRequest, plan_export, suggest_mapping
    from store.workspace import Workspace

    started = time.perf_counter()
    ws = Workspace.open(workspace)
    opened = time.perf_counter()
    mapping = replace(suggest_mapping(ws.columns()), consent_column="email_opt_in")
    names = tuple(s.name for s in ws.segments())
    with plan_export(ws, PlanRequest(segments=names, mapping=mapping)) as plan:
        counts = dict(plan.counts)
    done = time.perf_counter()
    print(json.dumps({"open": opened - started, "plan": done - opened, "counts": counts}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", help="an existing database (its public.profiles is replaced)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0

    import contextlib

    from store.sample import generate_postgres_workspace, generate_workspace
    from tests.bench.measure import run_measured
    from tests.postgres.cluster import running_cluster

    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(running_cluster()).url()
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="segsync-pgbench-")))
        t0 = time.perf_counter()
        generate_postgres_workspace(root / "pg", args.rows, url)
        loaded = time.perf_counter() - t0
        generate_workspace(root / "parquet", args.rows)
        results: dict[str, list[dict[str, Any]]] = {"parquet": [], "postgres": []}
        for _ in range(args.repeat):
            for name, folder in (("parquet", root / "parquet"), ("postgres", root / "pg")):
                argv_child = [sys.executable, "-m", "tests.postgres.bench", "--child", str(folder)]
                sample = run_measured(argv_child)
                inner = json.loads(sample.stdout.strip().splitlines()[-1])
                results[name].append(
                    {"wall": sample.wall, "cpu": sample.cpu, "rss": sample.peak_rss_mb, **inner}
                )
    print(f"rows: {args.rows:,}; loaded into Postgres in {loaded:.1f} s; repeats: {args.repeat}")
    print("| source | wall (median) | open | plan | CPU | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    med: dict[str, float] = {}
    for name, runs in results.items():

        def m(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        med[name] = m("wall")
        print(
            f"| {name} | {m('wall'):.2f} s | {m('open'):.2f} s | {m('plan'):.2f} s "
            f"| {m('cpu'):.2f} s | {max(r['rss'] for r in runs):.0f} MB |"
        )
    ratio = med["postgres"] / med["parquet"]
    same = all(
        r["counts"] == results["parquet"][0]["counts"] for runs in results.values() for r in runs
    )
    verdict = "pass" if ratio <= TARGET_RATIO and same else "MISS"
    print(f"postgres / parquet (median wall): {ratio:.2f}x (target <= {TARGET_RATIO}x): {verdict}")
    print(f"plans' counts identical: {same}")
    return 0 if verdict == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
