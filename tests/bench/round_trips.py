"""How long a preview and an export wait on SendGrid's round trips.

    uv run python -m tests.bench.round_trips [--latency 0.2] [--rows 16500] [--repeat 3]
                                             [--json PATH]

The main benchmark's emulator answers on loopback in a millisecond, so it
cannot see what a user far from SendGrid waits for: every request that waits
for the one before it costs a whole round trip (a fifth of a second is usual
across an ocean). Here the same commands run twice against the emulator: once
answering at once, once holding every response ``--latency`` seconds. The
difference divided by the latency is the number of round trips the command
waited for one after another; the requests it made are counted per endpoint.

Commands: `segsync export --dry-run` (a preview with its findings),
`segsync export` (an upsert) and `segsync destinations test` (the key and
the list), each on a fresh state (the destination `bench` on the emulator's
demo list) of the sample workspace. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.bench.report import machine
from tests.bench.workloads import (
    DESTINATION,
    SEGMENT,
    EmulatorProcess,
    emulator_process,
    make_workspace,
    scratch_state,
    segsync_argv,
)

EXPORT = ("export", DESTINATION, "--segment", SEGMENT)
COMMANDS = {
    "dry_run": (*EXPORT, "--dry-run"),
    "export": EXPORT,
    "destinations_test": ("destinations", "test", DESTINATION),
}


def _set_latency(emu: EmulatorProcess, seconds: float) -> None:
    httpx.post(f"{emu.url}/_emulator/faults", json={"latency": seconds}, timeout=30)


def _requests(emu: EmulatorProcess) -> dict[str, int]:
    """Requests per endpoint so far (the emulator's own counters)."""
    return {str(k): int(v) for k, v in emu.stats()["requests"].items()}


def _once(
    emu: EmulatorProcess,
    work: Path,
    workspace: Path,
    pycache: Path,
    argv: tuple[str, ...],
    rows: int,
) -> dict[str, Any]:
    with scratch_state(work, emu, workspace, cap=2 * rows) as state:
        env = {k: v for k, v in state.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
        before = _requests(emu)
        started = time.perf_counter()
        done = subprocess.run(
            segsync_argv(*argv),
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        after = _requests(emu)
    if done.returncode != 0:
        raise RuntimeError(f"segsync {' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    made = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    return {"wall": wall, "requests": made}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.round_trips", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per response")
    parser.add_argument("--rows", type=int, default=16_500, help="profiles in the workspace")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    work = (args.out / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    pycache = (args.out / "pycache").resolve()
    workspace = make_workspace(work / f"ws-{args.rows}", args.rows)
    started = datetime.now(UTC)
    results: dict[str, Any] = {}
    with emulator_process() as emu:
        for name, argv in COMMANDS.items():
            walls: dict[float, list[float]] = {}
            requests: dict[str, int] = {}
            for _ in range(args.repeat):  # alternating, so drift in load hits both alike
                for latency in (0.0, args.latency):
                    _set_latency(emu, latency)
                    run = _once(emu, work, workspace, pycache, argv, args.rows)
                    walls.setdefault(latency, []).append(run["wall"])
                    requests = run["requests"]
            _set_latency(emu, 0.0)
            fast = statistics.median(walls[0.0])
            slow = statistics.median(walls[args.latency])
            results[name] = {
                "argv": ["segsync", *argv],
                "wall_no_latency": walls[0.0],
                "wall_latency": walls[args.latency],
                "median_no_latency": round(fast, 3),
                "median_latency": round(slow, 3),
                "round_trips_waited": round((slow - fast) / args.latency, 1),
                "requests": requests,
            }
            print(
                f"{name:8s} {fast:5.2f} s -> {slow:5.2f} s at {args.latency:.2f} s a response: "
                f"~{results[name]['round_trips_waited']} round trips waited, "
                f"{sum(requests.values())} requests ({', '.join(sorted(requests))})"
            )
    document = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m tests.bench.round_trips", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "latency": args.latency,
        "rows": args.rows,
        "repeat": args.repeat,
        "results": results,
    }
    if args.json:
        args.json.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
