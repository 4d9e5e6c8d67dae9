"""Benchmarks of the changesets round: removals, plans, cancel, explain.

    uv run python -m tests.bench.changesets [--large 1000000] [--out bench_results]

Prints one JSON document (also written to ``<out>/changesets-<time>.json``):

- ``upsert_10k`` / ``remove_10k``: the same ~10,000 contacts put on the
  emulator's list by an export, then all taken off by a mirror run of a segment
  that selects nobody (confirmed by reading membership back); the ratio is
  the target (removals within 3x of upserts).
- ``plan_large``: `segsync plan` of the large workspace (a plan is what a
  dry-run was; compare with the dry-run figure of earlier runs in
  docs/benchmarks.md).
- ``cancel``: SIGINT sent to an export once its first batch was accepted,
  while import jobs stay pending (polling), and once while it waits out a
  rate limit: seconds from the signal to the process's exit, and its status.
- ``explain_large``: `segsync explain` of one address in the large workspace,
  the whole command and the answer alone (in-process, imports excluded).

Each figure is one run, measured with the same bytecode cache and machine
state as the main benchmark (``tests.bench``); compare ratios, not seconds,
across machines. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.bench.measure import run_measured
from tests.bench.report import machine
from tests.bench.workloads import (
    DESTINATION,
    SEGMENT,
    emulator_process,
    make_workspace,
    scratch_state,
    segsync_argv,
)

NOBODY = '\n[segments.nobody]\nwhere = "false"\n'


def _env(base: dict[str, str], pycache: Path) -> dict[str, str]:
    env = dict(base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _json(sample: Any) -> dict[str, Any]:
    return orjson.loads(sample.stdout)


def removals_vs_upserts(work: Path, pycache: Path) -> dict[str, Any]:
    """~10,000 contacts uploaded, then the same contacts removed."""
    ws = make_workspace(work / "ws-16500", 16_500)
    toml = ws / "segments.toml"
    if NOBODY not in toml.read_text():
        with toml.open("a") as out:
            out.write(NOBODY)
    with emulator_process() as emu, scratch_state(work, emu, ws, cap=1_000_000) as state:
        env = _env(state.env, pycache)
        up = run_measured(
            segsync_argv("export", DESTINATION, "--segment", SEGMENT, "--json"), env=env
        )
        sent = _json(up)["counts"]["sent"]
        down = run_measured(
            segsync_argv(
                "export", DESTINATION, "--segment", "nobody", "--mode", "mirror",
                "--allow-removals", str(sent), "--json",
            ),
            env=env,
        )  # fmt: skip
        counts = _json(down)["counts"]
        members = httpx.get(f"{emu.url}/_emulator/lists/{emu.list_id}/emails", timeout=60).json()
    return {
        "upsert_10k": {"contacts": sent, "wall": up.wall, "cpu": up.cpu},
        "remove_10k": {
            "removed": counts["removed"],
            "remove_failed": counts["remove_failed"],
            "left_on_list": len(members) if isinstance(members, list) else members,
            "wall": down.wall,
            "cpu": down.cpu,
        },
        "remove_over_upsert_x": down.wall / up.wall,
    }


def plan_large(ws: Path, work: Path, pycache: Path) -> dict[str, Any]:
    with emulator_process() as emu, scratch_state(work, emu, ws, cap=2_000_000) as state:
        env = _env(state.env, pycache)
        runs = []
        for _ in range(2):
            sample = run_measured(
                segsync_argv("plan", DESTINATION, "--segment", SEGMENT, "--json"), env=env
            )
            runs.append({"wall": sample.wall, "cpu": sample.cpu, "peak_rss_mb": sample.peak_rss_mb})
        counts = _json(sample)["counts"]
    return {"runs": runs, "selected": counts["selected"], "to_send": counts["to_send"]}


def _cancel_once(env: dict[str, str], marker: str) -> dict[str, Any]:
    """Start an export, SIGINT it when ``marker`` shows on stderr; time the exit."""
    proc = subprocess.Popen(
        segsync_argv("export", DESTINATION, "--segment", SEGMENT, "--batch-size", "2000"),
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if marker in line:
            break
    signalled = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    code = proc.wait()
    return {
        "seconds_to_exit": time.perf_counter() - signalled,
        "exit_code": code,
        "last_line": (lines + rest.splitlines())[-1].strip() if rest or lines else "",
    }


def cancel_latency(work: Path, pycache: Path) -> dict[str, Any]:
    ws = make_workspace(work / "ws-100000", 100_000)
    out: dict[str, Any] = {}
    with emulator_process() as emu, scratch_state(work, emu, ws, cap=2_000_000) as state:
        env = _env(state.env, pycache)
        httpx.post(f"{emu.url}/_emulator/faults", json={"job_delay": 30}, timeout=10)
        out["while_polling"] = _cancel_once(env, "accepted as job")
    with emulator_process() as emu, scratch_state(work, emu, ws, cap=2_000_000) as state:
        env = _env(state.env, pycache)
        httpx.post(f"{emu.url}/_emulator/faults", json={"script": ["ok"] * 3 + ["429"] * 50},
                   timeout=10)  # fmt: skip
        out["while_rate_limited"] = _cancel_once(env, "rate limit")
    return out


def explain_large(ws: Path, work: Path, pycache: Path) -> dict[str, Any]:
    import duckdb

    profiles = f"read_parquet('{ws / 'profiles.parquet'}')"
    middle = duckdb.execute(f"SELECT count(*) // 2 FROM {profiles}").fetchall()[0][0]
    email = duckdb.execute(
        f"SELECT lower(trim(email)) FROM {profiles} WHERE email LIKE '%@%' "
        f"LIMIT 1 OFFSET {int(middle)}"
    ).fetchall()[0][0]
    with emulator_process() as emu, scratch_state(work, emu, ws, cap=2_000_000) as state:
        env = _env(state.env, pycache)
        walls = [
            run_measured(
                segsync_argv("explain", email, "--segment", SEGMENT, "--json"), env=env
            ).wall
            for _ in range(3)
        ]
        code = (
            "import time,sys;from store.explain import explain;from store.workspace import "
            "Workspace;from store.history import History;from pathlib import Path;"
            f"s=Path({str(state.path)!r});h=History(s/'history.db');d=h.get_destination("
            f"{DESTINATION!r});m=h.get_mapping(d.id);w=Workspace.open({str(ws)!r});"
            "t=time.perf_counter();explain(w,s,destination=d,mapping=m,segments=("
            f"{SEGMENT!r},),email={email!r});print(time.perf_counter()-t)"
        )
        inner = [
            float(run_measured([sys.executable, "-c", code], env=env).stdout) for _ in range(3)
        ]
    return {"command_wall": walls, "answer_seconds": inner}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.changesets")
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    args = parser.parse_args(argv)
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    pycache = args.out / "pycache"
    started = datetime.now(UTC)
    large = make_workspace(work / f"ws-{args.large}", args.large)
    results: dict[str, Any] = {
        "machine": machine(),
        "started": started.isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }
    print("removals vs upserts ...", file=sys.stderr)
    results.update(removals_vs_upserts(work, pycache))
    print("plan ...", file=sys.stderr)
    results["plan_large"] = plan_large(large, work, pycache)
    print("cancel ...", file=sys.stderr)
    results["cancel"] = cancel_latency(work, pycache)
    print("explain ...", file=sys.stderr)
    results["explain_large"] = explain_large(large, work, pycache)
    text = orjson.dumps(results, option=orjson.OPT_INDENT_2).decode()
    print(text)
    path = args.out / f"changesets-{started:%Y%m%dT%H%M%S}.json"
    path.write_text(text + "\n")
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    raise SystemExit(main())
