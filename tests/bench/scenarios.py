"""The benchmark scenarios of issue 6, run in one go, each repeated.

Every measured command is a child process (exporter, baseline, limit
scripts), so its CPU time and peak RSS are its own; the emulator is a
separate process whose CPU is read with psutil around each export.

Children run with a bytecode cache (PYTHONPYCACHEPREFIX under bench_results/)
even when the caller's environment sets PYTHONDONTWRITEBYTECODE: without one,
each start recompiles SQLAlchemy & co. from source (~6 s on this machine),
which an installed segsync never does. A warm-up run fills the cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tests.bench import report
from tests.bench.measure import Sample, run_measured, summarise
from tests.bench.workloads import (
    BENCH_KEY_ENV,
    DESTINATION,
    SEGMENT,
    EmulatorProcess,
    StateDir,
    emulator_process,
    make_state,
    make_workspace,
    seed_runs,
    segsync_argv,
)

PUT = "PUT /v3/marketing/contacts"
HISTORY_RUNS = 200
"""Runs in the history `segsync runs` lists at start-up: its default page."""
STARTUP_SCENARIOS = (
    "version", "runs", "runs_show", "plans", "destinations", "map", "syncs", "segments",
    "tui_first_screen", "tui_bare",
)  # fmt: skip


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions; the smoke test shrinks them all."""

    small: int = 100_000
    large: int = 1_000_000
    repeat: int = 3
    startup_repeat: int = 10
    out: Path = Path("bench_results")
    seed: int = 7
    include_tui: bool = True
    startup_only: bool = False  # only scenario 6, on the small workspace
    pycache: Path | None = None  # default: out/pycache
    # A scenario stops repeating (after two runs) once it has taken this long,
    # so one slow build cannot push a full run far past ten minutes.
    budget_s: float = 40.0
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))

    @property
    def work(self) -> Path:
        return self.out / "work"


def targets(cfg: Config) -> list[report.Target]:
    """The targets in force: issue 17's (performance, round two) where it set
    them, issue 6's elsewhere; sizes in the names follow the configuration.
    Each floor is a scenario of the same run that does less than its target
    must (docs/benchmarks.md, "Round six")."""
    small, large = f"{cfg.small:,}", f"{cfg.large:,}"
    imports = ("limit_import_export", "wall")
    plan_alone = ("limit_plan_changeset", "wall")
    return [
        report.Target(f"{small} profiles end to end", "e2e_small", "wall", 0.8, floor=imports),
        report.Target(f"{large} profiles end to end", "e2e_large", "wall", 12.0),
        report.Target(
            f"{large} end to end: peak RSS",
            "e2e_large",
            "peak_rss_mb",
            300,
            unit="MB",
            floor=("limit_plan_changeset", "peak_rss_mb"),
        ),
        report.Target(
            "discard sink within 1.6x of the serialisation limit",
            "discard_large",
            "vs_limit_x",
            1.6,
            unit="x",
        ),
        report.Target(
            "speed-up over the official library (wall, discard sink)",
            "discard_large",
            "speedup_wall_x",
            4.0,
            at_least=True,
            unit="x",
        ),
        report.Target(
            "speed-up over the official library (CPU, discard sink)",
            "discard_large",
            "speedup_cpu_x",
            4.0,
            at_least=True,
            unit="x",
        ),
        report.Target(
            f"dry-run preview of {large}", "dry_run_large", "wall", 1.2, floor=plan_alone
        ),
        report.Target(
            f"unchanged incremental re-export of {large}",
            "incremental_large",
            "wall",
            1.2,
            floor=plan_alone,
        ),
        report.Target(
            "unchanged incremental re-export: upserts sent",
            "incremental_large",
            "puts",
            1,
            unit="n",
        ),
        report.Target(
            "TUI first screen (headless)",
            "tui_first_screen",
            "first_screen",
            0.30,
            floor=("tui_bare", "first_screen"),
        ),
        report.Target("segsync --version", "version", "wall", 0.2),
        report.Target("segsync runs", "runs", "wall", 0.25),
        # the other commands that review the record: the same bar as `runs`
        report.Target("segsync runs show 1", "runs_show", "wall", 0.25),
        report.Target("segsync plans", "plans", "wall", 0.25),
        report.Target("segsync destinations", "destinations", "wall", 0.25),
        report.Target("segsync map bench", "map", "wall", 0.25),
        report.Target("segsync syncs", "syncs", "wall", 0.25),
        report.Target(
            "segsync segments", "segments", "wall", 0.2, floor=("limit_import_duckdb", "wall")
        ),
    ]


def measured_targets(cfg: Config) -> list[report.Target]:
    """The targets of the scenarios this configuration runs (a start-up-only run
    does not report the exports it skipped as misses)."""
    if not cfg.startup_only:
        return targets(cfg)
    return [t for t in targets(cfg) if t.scenario in STARTUP_SCENARIOS]


class Bench:
    """One benchmark run: workspaces, scenarios, results."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        cache = (cfg.pycache or cfg.out / "pycache").resolve()
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env["PYTHONPYCACHEPREFIX"] = str(cache)
        self.scenarios: dict[str, dict[str, Any]] = {}
        self.workspaces: dict[str, Path] = {}
        self.states: list[Path] = []  # removed after the run; workspaces are kept for reuse

    # -- helpers ---------------------------------------------------------------

    def _env(self, state: StateDir | None = None) -> dict[str, str]:
        env = dict(state.env) if state else dict(self.env)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = self.env["PYTHONPYCACHEPREFIX"]
        return env

    def _record(self, key: str, title: str, rows: list[dict[str, Any]], **extra: Any) -> None:
        numeric = [{k: v for k, v in r.items() if isinstance(v, int | float)} for r in rows]
        summary = {k: s.to_json() for k, s in summarise(numeric).items()}
        self.scenarios[key] = {"title": title, "reps": rows, "summary": summary, **extra}
        wall = summary.get("wall") or summary.get("first_screen")
        shown = (
            f"{wall['median']:.3f} s (min {wall['min']:.3f}, max {wall['max']:.3f})" if wall else ""
        )
        self.cfg.log(f"  {title}: {shown}")

    def _median(self, key: str, metric: str) -> float | None:
        return self.scenarios.get(key, {}).get("summary", {}).get(metric, {}).get("median")

    def _state(self, emu: EmulatorProcess, workspace: Path) -> StateDir:
        state = make_state(self.cfg.work, emu, workspace, cap=2 * self.cfg.large)
        self.states.append(state.path)
        return state

    def _export(self, emu: EmulatorProcess, state: StateDir, *flags: str) -> dict[str, Any]:
        """One measured `segsync export --json`, with the emulator's side counted apart."""
        before, cpu_before = emu.stats(), emu.cpu_seconds()
        argv = segsync_argv("export", DESTINATION, "--segment", SEGMENT, "--json", *flags)
        sample = run_measured(argv, env=self._env(state))
        after, cpu_after = emu.stats(), emu.cpu_seconds()
        out = orjson.loads(sample.stdout)
        if out["status"] not in ("succeeded", "dry_run"):
            raise RuntimeError(f"export ended {out['status']}: {out['message']}")
        counts = out["counts"]
        return {
            **_sample_row(sample),
            "rows_per_s": counts["selected"] / sample.wall,
            "contacts_per_s": counts["to_send"] / sample.wall,
            "selected": counts["selected"],
            "to_send": counts["to_send"],
            "unchanged": counts.get("unchanged", 0),
            "requests": after["requests_total"] - before["requests_total"],
            "puts": after["requests"].get(PUT, 0) - before["requests"].get(PUT, 0),
            "emulator_cpu": cpu_after - cpu_before,
            "engine_s": out["seconds"],
        }

    # -- scenarios ---------------------------------------------------------------

    def prepare(self) -> None:
        cfg = self.cfg
        cfg.work.mkdir(parents=True, exist_ok=True)
        sizes = (
            (("small", cfg.small),)
            if cfg.startup_only
            else (("small", cfg.small), ("large", cfg.large))
        )
        for label, rows in sizes:
            cfg.log(f"workspace of {rows:,} profiles")
            self.workspaces[label] = make_workspace(cfg.work / f"ws-{rows}", rows, cfg.seed)
        cfg.log("warm-up (bytecode cache, OS file cache)")
        with emulator_process() as emu:
            state = self._state(emu, self.workspaces["small"])
            self._export(emu, state)
        if cfg.startup_only:
            return
        run_measured([sys.executable, "-m", "tests.bench.baseline", "--help"], env=self._env())
        run_measured([sys.executable, "-m", "tests.bench.limit", "--help"], env=self._env())

    def _repeat(self, once: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
        """`cfg.repeat` runs of `once`, or fewer (at least two) past the time budget."""
        rows: list[dict[str, Any]] = []
        started = time.perf_counter()
        for _ in range(self.cfg.repeat):
            rows.append(once())
            if len(rows) >= 2 and time.perf_counter() - started > self.cfg.budget_s:
                break
        return rows

    def end_to_end(self) -> None:
        """Scenario 1, then 4 and 5 on the last large run's emulator and ledger."""
        self._end_to_end("small", self.cfg.small)
        self._end_to_end("large", self.cfg.large)

    def _end_to_end(self, label: str, size: int) -> None:
        last = contextlib.ExitStack()
        kept: list[tuple[EmulatorProcess, StateDir]] = []

        def once() -> dict[str, Any]:
            last.close()  # the previous run's emulator; the last one stays up
            emu = last.enter_context(emulator_process())
            state = self._state(emu, self.workspaces[label])
            kept[:] = [(emu, state)]
            return self._export(emu, state)

        with last:
            self._record(f"e2e_{label}", f"export {size:,} end to end", self._repeat(once))
            if label == "large":
                self._dry_run_and_incremental(*kept[0])

    def _dry_run_and_incremental(self, emu: EmulatorProcess, state: StateDir) -> None:
        large = f"{self.cfg.large:,}"
        runs = self._repeat(lambda: self._export(emu, state, "--dry-run"))
        self._record("dry_run_large", f"dry-run preview {large}", runs)
        runs = self._repeat(lambda: self._export(emu, state, "--incremental"))
        self._record("incremental_large", f"incremental, unchanged {large}", runs)

    def discard_and_baseline(self) -> None:
        """Scenarios 2 (discard sink) and 3 (official library), same emulator kinds, same run."""
        cfg = self.cfg
        large = f"{cfg.large:,}"
        workspace = self.workspaces["large"]
        base_discard: list[dict[str, Any]] = []
        base_real: list[dict[str, Any]] = []

        def once() -> dict[str, Any]:
            with emulator_process(discard=True) as emu:
                row = self._export(emu, self._state(emu, workspace))
                base_discard.append(self._baseline(emu, workspace, cfg.large))
            with emulator_process() as emu:
                base_real.append(self._baseline(emu, workspace, cfg.large))
            return row

        self._record("discard_large", f"export {large}, discard sink", self._repeat(once))
        self._record(
            "baseline_discard_large", f"official library {large}, discard sink", base_discard
        )
        self._record("baseline_large", f"official library {large} end to end", base_real)

    def _baseline(self, emu: EmulatorProcess, workspace: Path, rows: int) -> dict[str, Any]:
        state = self._state(emu, workspace)  # only for the key in its environment
        argv = [
            sys.executable, "-m", "tests.bench.baseline",
            "--profiles", str(workspace / "profiles.parquet"),
            "--url", emu.url, "--list-id", emu.list_id, "--key-env", BENCH_KEY_ENV,
        ]  # fmt: skip
        before, cpu_before = emu.stats(), emu.cpu_seconds()
        sample = run_measured(argv, env=self._env(state))
        after, cpu_after = emu.stats(), emu.cpu_seconds()
        out = orjson.loads(sample.stdout)
        return {
            **_sample_row(sample),
            "rows_per_s": rows / sample.wall,
            "contacts_per_s": out["sent"] / sample.wall,
            "sent": out["sent"],
            "too_large": out["too_large"],
            "jobs_completed": out["jobs"].get("completed", 0),
            "requests": after["requests_total"] - before["requests_total"],
            "puts": after["requests"].get(PUT, 0) - before["requests"].get(PUT, 0),
            "emulator_cpu": cpu_after - cpu_before,
        }

    def limit(self) -> None:
        """Scenario 2's floor: the selection to bodies in-process; the emulator's ingest."""
        workspace = self.workspaces["large"]
        large = f"{self.cfg.large:,}"
        titles = {
            "plan_pack": f"limit: segsync plan + pack {large}, no network",
            "plan_changeset": f"limit: plan + changeset {large}, no network, no history",
            "duckdb_json": f"limit: DuckDB to_json bodies {large}",
            "arrow_orjson": f"limit: Arrow to_pylist + orjson {large}",
            "ingest": f"emulator ingest of {large} (in-process)",
        }
        for kind, title in titles.items():
            argv = [sys.executable, "-m", "tests.bench.limit", kind, "--workspace", str(workspace)]

            def once(argv: list[str] = argv) -> dict[str, Any]:
                sample = run_measured(argv, env=self._env())
                return {**_sample_row(sample), **orjson.loads(sample.stdout)}

            # The emulator's ingest is slow and steady: one run says enough.
            rows = [once()] if kind == "ingest" else self._repeat(once)
            self._record(f"limit_{kind}", title, rows)

    def startup(self) -> None:
        """Scenario 6: `segsync --version`, `segsync runs` over a history of
        `HISTORY_RUNS` runs, `runs show 1`, `plans`, `destinations`, `map` and
        `syncs` there,
        `segsync segments` of the small workspace, and the
        TUI's first screen, headless. Each command is the installed entry point,
        warmed once so its modules are in the bytecode cache."""
        segsync = str(Path(sys.executable).with_name("segsync"))
        n = self.cfg.startup_repeat
        rows = [
            _sample_row(run_measured([segsync, "--version"], env=self._env())) for _ in range(n)
        ]
        self._record("version", "segsync --version", rows)
        # Floors under start-up: importing what every command needs (DuckDB)
        # and what an export needs (with SQLModel for the history).
        for key, modules, title in IMPORT_FLOORS:
            argv = [sys.executable, "-c", f"import {modules}"]
            run_measured(argv, env=self._env())  # warm-up: the bytecode cache
            rows = [_sample_row(run_measured(argv, env=self._env())) for _ in range(n)]
            self._record(key, title, rows)
        with emulator_process() as emu:
            state = self._state(emu, self.workspaces["small"])
            env = self._env(state)
            self._export(emu, state)  # one real run, then copies of it
            seed_runs(state.path, HISTORY_RUNS - 1)
            commands = {
                "runs": (["runs"], f"segsync runs ({HISTORY_RUNS} runs in history)"),
                "runs_show": (["runs", "show", "1"], "segsync runs show 1 (a run with its batch)"),
                "plans": (["plans"], "segsync plans"),
                "destinations": (["destinations"], "segsync destinations"),
                "map": (["map", DESTINATION], f"segsync map {DESTINATION} (the saved mapping)"),
                "syncs": (["syncs"], "segsync syncs (none saved)"),
                "segments": (["segments"], f"segsync segments ({self.cfg.small:,} profiles)"),
            }
            for name, (argv, title) in commands.items():
                run_measured([segsync, *argv], env=env)  # warm-up
                rows = [_sample_row(run_measured([segsync, *argv], env=env)) for _ in range(n)]
                self._record(name, title, rows)
            if not self.cfg.include_tui:
                return
            self._probe_tui(env)  # warm-up: Textual's own modules into the bytecode cache
            rows = [self._probe_tui(env) for _ in range(n)]
            bare = [self._probe_tui(env, "--bare") for _ in range(n)]
        self._record("tui_first_screen", "TUI headless, spawn to exit", rows)
        self._record("tui_bare", "limit: bare Textual app, same widgets, spawn to exit", bare)

    def _probe_tui(self, env: dict[str, str], *flags: str) -> dict[str, Any]:
        env = {**env, "SEGSYNC_BENCH_T0": repr(time.time())}
        sample = run_measured([sys.executable, "-m", "tests.bench.tui_probe", *flags], env=env)
        out = orjson.loads(sample.stdout.strip().splitlines()[-1])
        return {"first_screen": out["first_screen"], **_sample_row(sample)}

    # -- derived numbers -------------------------------------------------------

    def derive(self) -> None:
        derive(self.scenarios)

    def run(self, command: str) -> dict[str, Any]:
        started = datetime.now(UTC)
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        self.prepare()
        steps = (
            ("end to end, dry-run, incremental", self.end_to_end),
            ("discard sink and official library", self.discard_and_baseline),
            ("the limit", self.limit),
            ("start-up", self.startup),
        )
        if self.cfg.startup_only:
            steps = (("start-up", self.startup),)
        try:
            for title, step in steps:
                self.cfg.log(title)
                step()
        finally:
            for path in self.states:
                shutil.rmtree(path, ignore_errors=True)
        self.derive()
        results: dict[str, Any] = {
            "started": started.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": time.perf_counter() - t0,
            "command": command,
            "commit": _commit(),
            "machine": report.machine(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "config": {
                "small": self.cfg.small,
                "large": self.cfg.large,
                "repeat": self.cfg.repeat,
                "startup_repeat": self.cfg.startup_repeat,
                "startup_only": self.cfg.startup_only,
            },
            "scenarios": self.scenarios,
        }
        results["targets"] = report.check_targets(results, measured_targets(self.cfg))
        return results


LIMITS = ("limit_plan_pack", "limit_duckdb_json", "limit_arrow_orjson")
IMPORT_FLOORS = (
    ("limit_import_duckdb", "duckdb", "limit: python -c 'import duckdb'"),
    (
        "limit_import_export",
        "duckdb, pyarrow.parquet, httpx, sqlmodel",
        "limit: import duckdb, pyarrow, httpx, sqlmodel (an export's libraries)",
    ),
)


def derive(scenarios: dict[str, dict[str, Any]]) -> None:
    """Ratios between scenarios, stored under each scenario's "derived".

    The serialisation limit is the fastest of the in-process references
    (segsync's own plan + pack, DuckDB `to_json`, Arrow + orjson): what no
    exporter beats on this machine.
    """

    def median(key: str, metric: str) -> float | None:
        return scenarios.get(key, {}).get("summary", {}).get(metric, {}).get("median")

    discard, discard_cpu = median("discard_large", "wall"), median("discard_large", "cpu")
    derived: dict[str, float] = {}
    limits = [m for key in LIMITS if (m := median(key, "wall"))]
    if discard and limits:
        derived["vs_limit_x"] = discard / min(limits)
    own = median("limit_plan_pack", "wall")
    if discard and own:
        derived["vs_plan_pack_x"] = discard / own
    base_wall = median("baseline_discard_large", "wall")
    base_cpu = median("baseline_discard_large", "cpu")
    if discard and base_wall:
        derived["speedup_wall_x"] = base_wall / discard
    if discard_cpu and base_cpu:
        derived["speedup_cpu_x"] = base_cpu / discard_cpu
    if "discard_large" in scenarios:
        scenarios["discard_large"]["derived"] = derived
    e2e, e2e_cpu = median("e2e_large", "wall"), median("e2e_large", "cpu")
    base_e2e, base_e2e_cpu = median("baseline_large", "wall"), median("baseline_large", "cpu")
    if e2e and base_e2e and e2e_cpu and base_e2e_cpu and "e2e_large" in scenarios:
        scenarios["e2e_large"]["derived"] = {
            "speedup_wall_x": base_e2e / e2e,
            "speedup_cpu_x": base_e2e_cpu / e2e_cpu,
        }


def _commit() -> str | None:
    """The code measured: HEAD, marked when the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}{' (modified)' if dirty else ''}"


def _sample_row(sample: Sample) -> dict[str, Any]:
    return {"wall": sample.wall, "cpu": sample.cpu, "peak_rss_mb": sample.peak_rss_mb}
