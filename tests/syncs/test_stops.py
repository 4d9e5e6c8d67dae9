"""A run-due stopped mid-run (systemd stopping the service: SIGTERM; a crash or
the OOM killer: SIGKILL) leaves a run the next run-due finishes: same run, the
exact list, no confirmed batch sent again."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from connector.syncs import utc_now
from tests.engine.conftest import expected_emails
from tests.syncs.conftest import Clock, add_sync, history_of
from tests.syncs.test_overlap import due_now, finish, start_run_due

pytestmark = pytest.mark.slow  # run-due processes stopped by signals


def upserts(emulator) -> int:
    return sum(1 for x in emulator.exchanges if x.method == "PUT" and x.status == 202)


def wait_for_a_sent_batch(env, proc: subprocess.Popen) -> int:
    history = history_of(env)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        run_id = history.get_sync("nightly").last_run_id
        if run_id and any(b.status == "sent" for b in history.get_run(run_id).batches):
            return run_id
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_stopped_run_due_is_finished_by_the_next(export_env, sig):
    add_sync(export_env, Clock(utc_now()), every="1h", cron=None)
    due_now(export_env, "nightly")
    export_env.emulator.set_faults(job_delay=3)  # the import job stays pending a while

    first = start_run_due(export_env)
    run_id = wait_for_a_sent_batch(export_env, first)
    first.send_signal(sig)
    out, err = first.communicate(timeout=60)
    history = history_of(export_env)  # opening it marks a dead process's run interrupted
    if sig == signal.SIGTERM:
        assert first.returncode == 4, err
        assert json.loads(out)[0]["result"] == "cancelled"
        assert history.get_run(run_id).status == "cancelled"
        assert history.get_sync("nightly").running_pid is None
    else:
        assert history.get_run(run_id).status == "interrupted"
        assert history.get_sync("nightly").running_pid == first.pid
    assert upserts(export_env.emulator) == 1

    export_env.emulator.set_faults(job_delay=0)
    code, attempts = finish(start_run_due(export_env))  # the next minute's timer
    assert code == 0
    assert [(a["sync"], a["result"], a["run"]) for a in attempts] == [
        ("nightly", "succeeded", run_id)
    ]
    assert history.get_run(run_id).status == "succeeded"
    assert upserts(export_env.emulator) == 1  # the pending batch was confirmed, not resent
    members = export_env.emulator.state.list_members(export_env.list_id)
    assert members == expected_emails(export_env.rows, ["germany"])
    sync = history.get_sync("nightly")
    assert (sync.running_pid, sync.last_result) == (None, "succeeded")
