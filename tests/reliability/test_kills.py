"""`segsync export` killed with SIGKILL at seeded points, then resumed.

Each kill point starts a real `python -m tui export` process, reads its log
lines and kills it when a given line appeared (plus a delay drawn from a
seeded RNG), or after a fixed time since start (before any run row exists).
Latency and slow jobs on the emulator widen the windows so kills land with
requests in flight and jobs being polled. Afterwards: the history file passes
SQLite's integrity check, `--resume RUN` (or, with no run recorded, a fresh
export) ends with exactly the intended list, and no batch confirmed before the
kill is sent again.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from store.history import History
from store.paths import history_path
from store.plan import EXCLUSIONS
from tests.reliability.conftest import (
    FIGURES,
    Env,
    assert_counts_add_up,
    export_json,
    sent_emails,
)
from tests.reliability.profiles import intended_emails, make_columns, write_workspace
from tests.upload_log import confirmed_emails

pytestmark = pytest.mark.slow  # real export processes killed and resumed

ROWS = 9_000
SEGMENTS = ["everyone"]
RNG = random.Random(20261128)


@dataclass(frozen=True)
class KillPoint:
    """Kill once `marker` was logged `count` times, `delay` seconds later.
    `marker=None`: `delay` seconds after the process started."""

    marker: str | None
    count: int = 1
    delay: float = 0.0
    faults: tuple[tuple[str, Any], ...] = ()


KILL_POINTS: dict[str, KillPoint] = {
    "before_the_run_row_exists": KillPoint(None, delay=0.3),
    # Planning comes before the run row (a refused plan never becomes a run):
    # a kill there leaves no run and nothing sent.
    "while_planning": KillPoint("planning"),
    # The plan's rejected rows are written as the run starts ("run N: upsert to ...").
    "recording_plan_rejections": KillPoint("upsert to", delay=RNG.uniform(0.0, 0.1)),
    "first_request_in_flight": KillPoint("uploading"),
    "jobs_being_polled": KillPoint("accepted as job", 3, RNG.uniform(0.0, 0.2)),
    "between_batches": KillPoint("job completed", 4),
    "mid_upload_random": KillPoint("uploading", 1, RNG.uniform(0.3, 1.2)),
    "in_a_retry_wait": KillPoint("retrying", 1, faults=(("rate_5xx", 0.2),)),
    "in_a_rate_limit_wait": KillPoint("waiting", 2, faults=(("rate_429", 0.3),)),
    "recording_the_run": KillPoint("recording"),
}


@pytest.fixture(scope="module")
def kill_ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    columns = make_columns(ROWS, salt=1)
    folder = write_workspace(tmp_path_factory.mktemp("kills") / "ws", columns)
    return {"workspace": folder, "intended": intended_emails(columns, SEGMENTS)}


def kill_at(proc: subprocess.Popen[str], point: KillPoint) -> list[str]:
    """Follow the process's log; SIGKILL it at `point`. Returns the lines read."""
    lines: list[str] = []
    assert proc.stderr is not None
    if point.marker is None:
        time.sleep(point.delay)
    else:
        seen = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if point.marker in line:
                seen += 1
                if seen >= point.count:
                    time.sleep(point.delay)
                    break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the export ended before the kill:\n" + "".join(
        lines
    )
    return lines


def data_problems(counts: dict[str, int]) -> int:
    """Rows excluded for a data problem: these are stored one by one (no-consent
    exclusions are counted only: the user's own filter working)."""
    return sum(counts[c] for c in EXCLUSIONS if c != "no_consent")


def plan_rejections(history: History, run_id: int) -> list:
    return [r for r in history.rejected_rows(run_id) if r.source == "plan"]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("name", list(KILL_POINTS))
def test_killed_export_resumes_exact_without_resending(
    name: str, kill_ws, tmp_path: Path, emulator, monkeypatch, capsys
) -> None:
    point = KILL_POINTS[name]
    env = Env(kill_ws["workspace"], tmp_path / "state", emulator)
    for var, value in env.variables().items():
        monkeypatch.setenv(var, value)
    env.add_destination("news")
    emulator.set_faults(seed=11, latency=0.15, job_delay=0.3, **dict(point.faults))

    proc = env.start(
        "export", "news", "--segment", "everyone", "--batch-size", "500", "--concurrency", "2"
    )
    lines = kill_at(proc, point)
    mark = len(emulator.exchanges)
    emulator.set_faults(rate_5xx=0.0, rate_429=0.0, latency=0.0, job_delay=0.0)

    history = History(history_path(env.state_dir))  # a new process marks the dead run
    assert history.integrity_check() == "ok"
    runs = history.list_runs()
    for run in runs:
        assert run.status != "running", run  # finished or marked interrupted, never half
    if runs and name == "recording_the_run" and runs[0].status == "succeeded":
        # The last writes took less time than the kill needed to arrive: the run
        # is whole, and there is nothing to resume.
        assert env.members("news") == kill_ws["intended"]
        return
    if runs:
        run = history.get_run(runs[0].id)
        assert run.status == "interrupted", (run.status, "".join(lines))
        confirmed = confirmed_emails(emulator, history, run.id)
        confirmed_batches = len(history.confirmed_batches(run.id))
        code, summary, err = export_json(capsys, "news", "--resume", str(run.id))
    else:  # killed before the run row existed: nothing may have been sent
        assert name in ("before_the_run_row_exists", "while_planning"), "".join(lines)
        assert not [x for x in emulator.exchanges if x.method == "PUT"]
        confirmed, confirmed_batches = set(), 0
        code, summary, err = export_json(
            capsys, "news", "--segment", "everyone", "--batch-size", "500"
        )
    assert code == 0, (summary, err)
    assert summary["status"] == "succeeded", summary

    intended = kill_ws["intended"]
    assert env.members("news") == intended
    resent = [e for e in sent_emails(emulator, mark) if e in confirmed]
    assert resent == [], f"{len(resent)} contacts of confirmed batches were sent again"
    counts = summary["counts"]
    assert_counts_add_up(counts)
    assert counts["sent"] == len(intended)
    assert counts["to_send"] + counts["skipped"] == len(intended)
    after = History(history_path(env.state_dir))
    assert after.integrity_check() == "ok"
    # Rows excluded for a data problem are never recorded twice, kill or not
    # (that none is missing is test_plan_rejections_are_whole_after_a_kill).
    assert len(plan_rejections(after, summary["run"])) <= data_problems(counts)

    FIGURES["kills_survived"] += 1
    FIGURES["batches_confirmed_before_a_kill"] += confirmed_batches
    FIGURES["contacts_not_resent_after_a_kill"] += counts["skipped"]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("marker", ["upsert to", "uploading"])
def test_plan_rejections_are_whole_after_a_kill(
    marker: str, kill_ws, tmp_path: Path, emulator, monkeypatch, capsys
) -> None:
    """Killed before the excluded rows were written, the resumed run must still
    end with each of them in history, once, with its reason."""
    env = Env(kill_ws["workspace"], tmp_path / "state", emulator)
    for var, value in env.variables().items():
        monkeypatch.setenv(var, value)
    env.add_destination("news")
    emulator.set_faults(latency=0.15, job_delay=0.3)
    proc = env.start("export", "news", "--segment", "everyone", "--batch-size", "500")
    kill_at(proc, KillPoint(marker))
    emulator.set_faults(latency=0.0, job_delay=0.0)
    run_id = History(history_path(env.state_dir)).list_runs()[0].id

    code, summary, err = export_json(capsys, "news", "--resume", str(run_id))
    assert code == 0, (summary, err)
    recorded = plan_rejections(History(history_path(env.state_dir)), run_id)
    assert len(recorded) == data_problems(summary["counts"]) > 0
    assert all(r.reason.split(":")[0] in EXCLUSIONS and r.key is not None for r in recorded)
    FIGURES["kills_survived"] += 1


@pytest.mark.timeout(150)
def test_a_resume_killed_in_turn_resumes_exact(
    kill_ws, tmp_path: Path, emulator, monkeypatch, capsys
) -> None:
    """Killed, resumed, the resume killed too (under 5xx faults), resumed again:
    the list ends exact and no confirmed batch of either attempt is sent again."""
    env = Env(kill_ws["workspace"], tmp_path / "state", emulator)
    for var, value in env.variables().items():
        monkeypatch.setenv(var, value)
    env.add_destination("news")
    emulator.set_faults(seed=5, latency=0.15, job_delay=0.3)
    argv = ("--batch-size", "500", "--concurrency", "2")
    kill_at(
        env.start("export", "news", "--segment", "everyone", *argv), KillPoint("job completed", 3)
    )
    run_id = History(history_path(env.state_dir)).list_runs()[0].id

    emulator.set_faults(rate_5xx=0.15)
    kill_at(env.start("export", "news", "--resume", str(run_id)), KillPoint("job completed", 3))
    history = History(history_path(env.state_dir))
    assert history.integrity_check() == "ok"
    assert history.get_run(run_id).status == "interrupted"
    confirmed = confirmed_emails(emulator, history, run_id)
    mark = len(emulator.exchanges)

    emulator.set_faults(rate_5xx=0.0, latency=0.0, job_delay=0.0)
    code, summary, err = export_json(capsys, "news", "--resume", str(run_id))
    assert code == 0, (summary, err)
    assert env.members("news") == kill_ws["intended"]
    assert [e for e in sent_emails(emulator, mark) if e in confirmed] == []
    assert summary["counts"]["sent"] == len(kill_ws["intended"])
    assert_counts_add_up(summary["counts"])
    assert History(history_path(env.state_dir)).integrity_check() == "ok"
    FIGURES["kills_survived"] += 2
