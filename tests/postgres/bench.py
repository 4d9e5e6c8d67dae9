"""Planning from PostgreSQL against planning the same rows from Parquet.

    uv run python -m tests.postgres.bench [--rows 1000000] [--repeat 3] [--url URL]
        [--readers 1,2,3] [--json PATH]

Starts a throwaway cluster (or uses ``--url``, whose ``public.profiles`` it
replaces), loads the synthetic profiles into it and writes the same rows as
Parquet, then plans every sample segment from each, alternately, each plan in a
process of its own (`tests.bench.measure`: wall, CPU, peak RSS of that process;
the server's CPU is not in it): opening the workspace, then `plan_export` as an
export does (consent column ``email_opt_in``). Each ``--readers`` value is a
Postgres workspace of its own over the same table (``[profiles] readers``); the
first is the one the target is judged on: Postgres within 2x of Parquet (median
wall, measured in the same run). Children share a warmed bytecode cache, as an
installed segsync would have one. Exits 1 when the target is missed or any two
plans' counts differ. ``--json`` writes every sample, the medians, the machine
and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
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


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", help="an existing database (its public.profiles is replaced)")
    parser.add_argument(
        "--readers", default="1", help="comma-separated [profiles] readers values (default 1)"
    )
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    readers = [int(n) for n in args.readers.split(",")]

    import contextlib
    import subprocess
    from datetime import UTC, datetime

    from store.sample import generate_postgres_workspace, generate_workspace
    from tests.bench.measure import run_measured
    from tests.bench.report import machine
    from tests.postgres.cluster import running_cluster

    started = datetime.now(UTC)
    load_before = _load_average()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(running_cluster()).url()
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="segsync-pgbench-")))
        t0 = time.perf_counter()
        generate_postgres_workspace(root / "pg", args.rows, url)
        loaded = time.perf_counter() - t0
        generate_workspace(root / "parquet", args.rows)
        sources = {"parquet": root / "parquet"}
        base = (root / "pg" / "segments.toml").read_text()
        for n in readers:
            folder = root / f"pg{n}"
            folder.mkdir()
            text = base.replace("[profiles]\n", f"[profiles]\nreaders = {n}\n", 1)
            (folder / "segments.toml").write_text(text)
            sources[f"postgres, {n} reader{'s' if n > 1 else ''}"] = folder
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        warm = [sys.executable, "-c", "import store.plan, store.workspace, adbc_driver_postgresql"]
        subprocess.run(warm, env=env, check=True)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
        for _ in range(args.repeat):
            for name, folder in sources.items():
                argv_child = [sys.executable, "-m", "tests.postgres.bench", "--child", str(folder)]
                sample = run_measured(argv_child, env=env)
                inner = json.loads(sample.stdout.strip().splitlines()[-1])
                results[name].append(
                    {"wall": sample.wall, "cpu": sample.cpu, "rss": sample.peak_rss_mb, **inner}
                )
    load_after = _load_average()
    print(f"rows: {args.rows:,}; loaded into Postgres in {loaded:.1f} s; repeats: {args.repeat}")
    print(f"load average before {load_before}, after {load_after} (1, 5, 15 min)")
    print("| source | wall (median) | open | plan | CPU | peak RSS | wall / parquet |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    medians: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        medians[name] = {
            key: statistics.median(r[key] for r in runs) for key in ("wall", "open", "plan", "cpu")
        }
        medians[name]["rss_max"] = max(r["rss"] for r in runs)
    for name, m in medians.items():
        ratio = m["wall"] / medians["parquet"]["wall"]
        print(
            f"| {name} | {m['wall']:.2f} s | {m['open']:.2f} s | {m['plan']:.2f} s "
            f"| {m['cpu']:.2f} s | {m['rss_max']:.0f} MB | {ratio:.2f}x |"
        )
    judged = list(sources)[1]
    ratio = medians[judged]["wall"] / medians["parquet"]["wall"]
    same = all(
        r["counts"] == results["parquet"][0]["counts"] for runs in results.values() for r in runs
    )
    verdict = "pass" if ratio <= TARGET_RATIO and same else "MISS"
    print(f"{judged} / parquet (median wall): {ratio:.2f}x (target <= {TARGET_RATIO}x): {verdict}")
    print(f"plans' counts identical: {same}")
    if args.json:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        document = {
            "machine": machine(),
            "started": started.isoformat(timespec="seconds"),
            "commit": commit,
            "command": "uv run python -m tests.postgres.bench " + " ".join(argv or sys.argv[1:]),
            "rows": args.rows,
            "loaded_seconds": loaded,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "runs": results,
            "medians": medians,
            "judged": judged,
            "ratio": ratio,
            "target_ratio": TARGET_RATIO,
            "counts_identical": same,
            "verdict": verdict,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"written to {args.json}")
    return 0 if verdict == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
