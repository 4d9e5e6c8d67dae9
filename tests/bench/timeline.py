"""Where one export's time goes: its progress lines, timestamped from spawn.

`uv run python -m tests.bench.timeline [--discard] [--size N] [-- EXPORT FLAGS]`
runs one `segsync export` on the benchmark's workspace of N profiles (made by
`python -m tests.bench` first) against a fresh emulator, and prints each line
the command writes with the seconds since the process was spawned: start-up
ends at "run N: ...", planning at "plan: ...", the upload at "confirming",
recording at "run N succeeded". `--full-first` exports once untimed before, so
`--incremental` meets a ledger.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.workloads import (
    DESTINATION,
    SEGMENT,
    emulator_process,
    scratch_state,
    segsync_argv,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.timeline", description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000, help="workspace of N profiles")
    parser.add_argument("--discard", action="store_true", help="against the discard sink")
    parser.add_argument("--full-first", action="store_true", help="one untimed export first")
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("flags", nargs="*", help="extra `segsync export` flags (after --)")
    args = parser.parse_args(argv)
    workspace = args.out / "work" / f"ws-{args.size}"
    if not (workspace / "profiles.parquet").is_file():
        parser.error(f"{workspace} is missing: run `uv run python -m tests.bench` once first")
    with (
        emulator_process(discard=args.discard) as emu,
        scratch_state(args.out / "work", emu, workspace, cap=2 * args.size) as state,
    ):
        env = {k: v for k, v in state.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str((args.out / "pycache").resolve())
        export = segsync_argv("export", DESTINATION, "--segment", SEGMENT)
        if args.full_first:
            subprocess.run([*export, "--json"], env=env, capture_output=True, check=True)
        started = time.perf_counter()
        proc = subprocess.Popen([*export, *args.flags], env=env, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            print(f"{time.perf_counter() - started:6.2f}  {line.rstrip()[:100]}")
        code = proc.wait()
        print(f"{time.perf_counter() - started:6.2f}  exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
