"""A plan of a large workspace against the dry-run of an older segsync, side by side.

    uv run python -m tests.bench.plan_ab [--old 6cd6ec6] [--rows 1000000] [--repeat 3]

Issue 11's check: "a plan of 1,000,000 is no slower than today's dry-run". The
old code (``--old``, by default the last commit before changesets) is checked
out into a temporary git worktree and run with this virtualenv's Python; the
two commands alternate on the same workspace, with the same bytecode cache
policy, so both see the same machine load. Prints one JSON document: wall,
CPU and peak RSS of each run, medians and the ratio new/old of the medians
(below 1: the plan is faster). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from tests.bench.measure import run_measured
from tests.bench.report import machine
from tests.bench.workloads import make_workspace

ROOT = Path(__file__).resolve().parents[2]
OLD_DRY_RUN = ("export", "bench", "--segment", "everyone", "--dry-run", "--json")
NEW_PLAN = ("plan", "bench", "--segment", "everyone", "--json")

# Runs with the tree's own code: its History writes the schema that tree expects.
MAKE_STATE = """
import sys
from pathlib import Path
from store.history import History
from store.plan import FieldMapping
from tests.bench.workloads import MAPPING
h = History(Path(sys.argv[1]) / "history.db")
d = h.add_destination("bench", base_url="http://127.0.0.1:9", list_id="L", list_name="x",
                      api_key_env="NO_SUCH_VARIABLE", key_storage="env", cap=2_000_000)
h.set_mapping(d.id, FieldMapping(**MAPPING))
"""


def _env(tree: Path, state: Path, workspace: Path, pycache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed copy: bytecode cached
    env.update(
        PYTHONPATH=str(tree),
        PYTHONPYCACHEPREFIX=str(pycache / tree.name),
        SEGSYNC_STATE_DIR=str(state),
        SEGSYNC_WORKSPACE=str(workspace),
        SEGSYNC_NO_KEYRING="1",
    )
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default="6cd6ec6", help="the older commit to compare with")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "bench_results" / "work")
    args = parser.parse_args(argv)
    workspace = make_workspace(args.work / f"ws-{args.rows}", args.rows)
    with tempfile.TemporaryDirectory(prefix="segsync-plan-ab-") as tmp:
        scratch = Path(tmp)
        old_tree = scratch / "old"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old_tree), args.old],
            check=True,
        )
        try:
            trees = {"old_dry_run": (old_tree, OLD_DRY_RUN), "new_plan": (ROOT, NEW_PLAN)}
            envs = {}
            for name, (tree, _) in trees.items():
                state = scratch / f"state-{name}"
                state.mkdir()
                env = _env(tree, state, workspace, scratch / "pycache")
                subprocess.run(
                    [sys.executable, "-c", MAKE_STATE, str(state)], env=env, cwd=tree, check=True
                )
                # one untimed run each: bytecode compiled, files in the page cache
                run_measured([sys.executable, "-m", "tui", *trees[name][1]], env=env, cwd=tree)
                envs[name] = env
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
            for _ in range(args.repeat):
                for name, (tree, command) in trees.items():
                    sample = run_measured(
                        [sys.executable, "-m", "tui", *command], env=envs[name], cwd=tree
                    )
                    runs[name].append(
                        {"wall": sample.wall, "cpu": sample.cpu, "peak_rss_mb": sample.peak_rss_mb}
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)],
                check=False,
            )
    medians: dict[str, dict[str, float]] = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "peak_rss_mb")}
        for name, rs in runs.items()
    }
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    result: dict[str, Any] = {
        "machine": machine(),
        "commit": head,
        "old": args.old,
        "rows": args.rows,
        "runs": runs,
        "medians": medians,
        "plan_over_old_dry_run": {
            k: medians["new_plan"][k] / medians["old_dry_run"][k] for k in ("wall", "cpu")
        },
        "load_average_after": os.getloadavg(),
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
