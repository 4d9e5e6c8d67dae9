"""`uv run python -m tests.bench [--quick]`: run every scenario, print the table, write JSON."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import orjson

from tests.bench import report
from tests.bench.scenarios import Bench, Config, derive, measured_targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--small", type=int, default=100_000, help="profiles, small workspace")
    parser.add_argument("--large", type=int, default=1_000_000, help="profiles, large workspace")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario")
    parser.add_argument(
        "--startup-repeat", type=int, default=10, help="runs of each start-up scenario"
    )
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--no-tui", action="store_true", help="skip the TUI start-up probe")
    parser.add_argument(
        "--doc", type=Path, default=None, help="rewrite the results part of this Markdown file"
    )
    parser.add_argument(
        "--render", type=Path, default=None, metavar="JSON", help="only render a saved run"
    )
    parser.add_argument(
        "--quick", action="store_true", help="10,000 and 100,000 profiles, one run each"
    )
    parser.add_argument(
        "--startup-only",
        action="store_true",
        help="only the start-up scenarios (--version, runs and the other review commands, "
        "segments, the TUI), on the small workspace",
    )
    args = parser.parse_args(argv)
    if args.startup_only and args.doc is not None:
        parser.error("--doc rewrites the full results; a --startup-only run has only start-up")
    if args.quick:
        args.small, args.large, args.repeat, args.startup_repeat = 10_000, 100_000, 1, 3
    cfg = Config(
        small=args.small,
        large=args.large,
        repeat=args.repeat,
        startup_repeat=args.startup_repeat,
        out=args.out,
        include_tui=not args.no_tui,
        startup_only=args.startup_only,
    )
    if args.render is not None:
        results = orjson.loads(args.render.read_bytes())
        # Ratios and targets as this version defines them; the measurements are kept.
        derive(results["scenarios"])
        size = results["config"]
        saved = replace(
            cfg,
            small=size["small"],
            large=size["large"],
            startup_only=size.get("startup_only", False),
        )
        results["targets"] = report.check_targets(results, measured_targets(saved))
        print(report.render(results))
        if args.doc is not None:
            report.update_doc(args.doc, results)
        return 0
    command = "uv run python -m tests.bench " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    results = Bench(cfg).run(command.strip())
    path = report.write_json(results, cfg.out)
    print(report.render(results))
    print(f"\nJSON: {path}")
    if args.doc is not None:
        report.update_doc(args.doc, results)
    return 0 if all(t["pass"] for t in results["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
