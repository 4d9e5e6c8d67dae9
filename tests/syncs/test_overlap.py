"""Overlapping `run-due` processes (a slow run and the next minute's timer, or
cron and a person at once): a sync never runs twice for one due time, and a
claimed sync is neither run again nor reported skipped."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta

import pytest

from connector.syncs import utc_now
from tests.syncs.conftest import Clock, add_sync, history_of

pytestmark = pytest.mark.slow  # run-due processes started at once


def due_now(env, *names: str) -> None:
    history = history_of(env)
    for name in names:
        sync = history.get_sync(name)
        history.update_sync(
            sync.id, updated_at=utc_now(), next_due_at=utc_now() - timedelta(minutes=1)
        )


def start_run_due(env) -> subprocess.Popen:
    return subprocess.Popen(
        env.cli("syncs", "run-due", "--json"),
        env=env.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, list]:
    out, err = proc.communicate(timeout=120)
    assert out.strip(), err
    return proc.returncode, json.loads(out)


def two_syncs(env) -> None:
    clock = Clock(utc_now())
    add_sync(env, clock, name="a-germany", every="1h", cron=None)
    add_sync(env, clock, name="b-france", every="1h", cron=None, segments=["france"])
    due_now(env, "a-germany", "b-france")


def test_a_second_run_due_while_the_first_runs_neither_repeats_nor_skips(export_env):
    two_syncs(export_env)
    export_env.emulator.set_faults(job_delay=1.0)  # each run takes a second or more
    history = history_of(export_env)

    first = start_run_due(export_env)
    deadline = time.monotonic() + 60
    while history.get_sync("a-germany").running_pid is None:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    later = [start_run_due(export_env) for _ in range(2)]  # the next minutes' timers

    code, attempts = finish(first)
    assert code == 0
    assert [(a["sync"], a["result"]) for a in attempts] == [
        ("a-germany", "succeeded"),
        ("b-france", "succeeded"),
    ]
    for proc in later:
        assert finish(proc) == (0, [])  # both syncs were claimed: not due, not skipped
    runs = [r for r in history.list_runs() if not r.dry_run]
    assert sorted(r.segments for r in runs) == [("france",), ("germany",)]
    for name in ("a-germany", "b-france"):
        events = history.sync_events(history.get_sync(name).id)
        assert [(e.kind, e.result) for e in events] == [("run", "succeeded")]


def test_run_due_started_three_times_at_once_runs_each_sync_once(export_env):
    two_syncs(export_env)
    export_env.emulator.set_faults(job_delay=0.5)
    procs = [start_run_due(export_env) for _ in range(3)]
    results = [finish(p) for p in procs]

    assert all(code == 0 for code, _ in results)
    ran = [a["sync"] for _, attempts in results for a in attempts if a["result"] == "succeeded"]
    assert sorted(ran) == ["a-germany", "b-france"]
    history = history_of(export_env)
    runs = [r for r in history.list_runs() if not r.dry_run]
    assert len(runs) == 2
    for name in ("a-germany", "b-france"):
        sync = history.get_sync(name)
        assert sync.running_pid is None and sync.last_result == "succeeded"
        assert [e.kind for e in history.sync_events(sync.id)].count("run") == 1
