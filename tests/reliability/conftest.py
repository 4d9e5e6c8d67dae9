"""An export environment over the emulator: workspace, state dir, destination, mapping.

Exports run in-process through the real CLI (`tui.cli.main`) or as real
`python -m tui` subprocesses, so what is tested is what a user runs.
The figures each test adds to `FIGURES` (counts) and `record_latency` (timings,
summarised as n/median/max milliseconds) are written to the JSON file named by
$SEGSYNC_RELIABILITY_FIGURES at the end of the session (docs/reliability.md
quotes them). With $SEGSYNC_RELIABILITY_FIGURES_MERGE=1 a session that ran only
some modules updates the keys it measured and keeps the others; `_sessions`
records, for every key, which run (commit, time, modules, outcome) it comes
from, so a figure is never quoted without its run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from connector.emulator import Emulator
from store.plan import EXCLUSIONS
from tests.engine.conftest import run_cli
from tests.reliability.profiles import make_columns, write_workspace
from tui.cli import main

FIGURES: Counter[str] = Counter()
LATENCIES: defaultdict[str, list[float]] = defaultdict(list)
MAPPING = (
    "email=email",
    "first_name=first_name",
    "last_name=last_name",
    "country=country",
    "city=city",
    "--consent-column",
    "email_opt_in",
)


def record_latency(name: str, seconds: float) -> None:
    """A measured duration for the figures (printed by the test too; never asserted
    tightly: the machine is shared)."""
    LATENCIES[name].append(seconds)


def _latency_figures() -> dict[str, dict[str, float]]:
    return {
        f"{name}_ms": {
            "n": len(values),
            "median": round(statistics.median(values) * 1000, 1),
            "max": round(max(values) * 1000, 1),
        }
        for name, values in sorted(LATENCIES.items())
    }


def _commit() -> str:
    """HEAD, marked when the code that ran differs from it (uncommitted changes)."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "diff", "--quiet", "HEAD", "--", "store", "connector", "tui", "tests"],
        capture_output=True,
        check=False,
    )
    commit = done.stdout.strip() or "unknown"
    return f"{commit}+uncommitted" if dirty.returncode == 1 else commit


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("SEGSYNC_RELIABILITY_FIGURES")
    measured = {**dict(FIGURES), **_latency_figures()}
    if not (target and measured):
        return
    path = Path(target)
    merge = os.environ.get("SEGSYNC_RELIABILITY_FIGURES_MERGE", "") not in ("", "0")
    old = orjson.loads(path.read_bytes()) if merge and path.is_file() else {}
    sessions = [
        {**s, "keys": [k for k in s["keys"] if k not in measured]} for s in old.pop("_sessions", [])
    ]
    modules = sorted({item.nodeid.split("::")[0] for item in session.items})
    sessions.append(
        {
            "utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M"),
            "commit": _commit(),
            "modules": modules,
            "tests": session.testscollected,
            "failed": session.testsfailed,
            "keys": sorted(measured),
        }
    )
    data = {**old, **measured, "_sessions": [s for s in sessions if s["keys"]]}
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))


@dataclass
class Env:
    """One workspace and state dir; destinations are added on the emulator."""

    workspace: Path
    state_dir: Path
    emulator: Emulator
    lists: dict[str, str] = field(default_factory=dict)  # destination -> list id

    def variables(self) -> dict[str, str]:
        return {
            "SEGSYNC_STATE_DIR": str(self.state_dir),
            "SEGSYNC_WORKSPACE": str(self.workspace),
            "SEGSYNC_NO_KEYRING": "1",
            "DEST_KEY": self.emulator.api_key,
        }

    def subprocess_env(self) -> dict[str, str]:
        return {**os.environ, **self.variables()}

    def add_destination(self, name: str, *, cap: int = 1_000_000) -> str:
        """A destination on a new emulator list, mapped and consented; returns the list id."""
        list_id = self.emulator.state.create_list(f"list-{name}")["id"]
        code = run_cli(
            main,
            "destinations",
            "add",
            name,
            "--list-id",
            list_id,
            "--api-key-env",
            "DEST_KEY",
            "--base-url",
            self.emulator.url,
            "--cap",
            str(cap),
            "--agree",
        )
        assert code == 0
        assert run_cli(main, "map", name, *MAPPING) == 0
        self.lists[name] = list_id
        return list_id

    def members(self, name: str) -> set[str]:
        return self.emulator.state.list_members(self.lists[name])

    def start(self, *args: str) -> subprocess.Popen[str]:
        """`python -m tui ARGS` as a real process (log lines on stderr)."""
        return subprocess.Popen(
            [sys.executable, "-m", "tui", *args],
            env=self.subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def export_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    """`segsync export ARGV --json` in-process: exit code, summary, stderr."""
    capsys.readouterr()
    code = run_cli(main, "export", *argv, "--json")
    captured = capsys.readouterr()
    out = captured.out
    return code, (orjson.loads(out) if out.strip() else {}), captured.err


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    capsys.readouterr()
    code = run_cli(main, *argv)
    out = capsys.readouterr().out
    return code, (orjson.loads(out) if out.strip() else None)


def assert_counts_add_up(counts: dict[str, int]) -> None:
    """selected = to_send + unchanged + skipped + each exclusion; sent = created+updated+errored."""
    excluded = sum(counts[c] for c in EXCLUSIONS)
    assert counts["selected"] == (
        counts["to_send"] + counts["unchanged"] + counts["skipped"] + excluded
    ), counts
    assert counts["sent"] == counts["created"] + counts["updated"] + counts["errored"], counts


def sent_emails(emulator: Emulator, since: int = 0, accepted_only: bool = True) -> list[str]:
    """Every address in PUT /v3/marketing/contacts bodies recorded after exchange `since`."""
    out: list[str] = []
    for exchange in emulator.exchanges[since:]:
        if exchange.method != "PUT" or exchange.endpoint != "/v3/marketing/contacts":
            continue
        if accepted_only and exchange.status != 202:
            continue
        body = exchange.request_json
        if isinstance(body, dict):
            out.extend(c["email"] for c in body.get("contacts", []))
    return out


def injected_faults(emulator: Emulator) -> Counter[str]:
    """Faults the emulator answered with (dropped connections are recorded as status 0)."""
    names = {0: "dropped", 429: "429", 500: "500", 503: "503"}
    return Counter(names[e.status] for e in emulator.exchanges if e.status in names)


@pytest.fixture
def env(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Env:
    """A small (3,000 profiles) environment with the variables set for in-process runs."""
    workspace = write_workspace(tmp_path / "ws", make_columns(3000))
    made = Env(workspace, tmp_path / "state", emulator)
    for name, value in made.variables().items():
        monkeypatch.setenv(name, value)
    return made
