"""An import job still pending at `job_timeout`, and the resume that settles it.

SendGrid's 202 only says a job was queued. When the engine gives up waiting
(`EngineSettings.job_timeout`) the batch was sent but nothing is confirmed:
the run must not count it, must not call itself a success, and a resume must
ask SendGrid about that job before anything else instead of sending the same
contacts again. The answers are computed from the rows in the test.
"""

from __future__ import annotations

import time

import pytest

from connector import events as ev
from connector.engine import ExportRequest
from store.history import History
from store.paths import history_path
from tests.engine.conftest import expected_emails
from tests.engine.test_engine_events import collect, engine_for
from tests.engine.test_resume import received_emails

pytestmark = pytest.mark.slow  # waits for import jobs held pending

JOB_DELAY = 1.5  # seconds each import job stays `pending` on the emulator


async def test_a_job_pending_past_the_timeout_fails_the_run_and_resume_settles_it(export_env):
    emulator = export_env.emulator
    want = expected_emails(export_env.rows, ["germany"])
    emulator.set_faults(job_delay=JOB_DELAY)
    engine = engine_for(export_env, job_timeout=0.2, max_contacts=200, concurrency=2)

    started = time.monotonic()
    first = await collect(engine, ExportRequest("news", ("germany",)))
    finished = first[-1]
    assert isinstance(finished, ev.RunFinished)
    assert finished.status == "failed", finished
    assert "still pending" in finished.message
    assert time.monotonic() - started < JOB_DELAY * 4  # gave up, did not wait the jobs out
    assert finished.counts["sent"] == 0  # nothing SendGrid confirmed is counted
    assert not any(isinstance(e, ev.JobFinished) for e in first)
    history = History(history_path(export_env.state_dir))
    batches = history.get_run(finished.run_id).batches
    expected_batches = -(-len(want) // 200)
    assert len(batches) == expected_batches
    assert {b.status for b in batches} == {"sent"}  # sent, never confirmed
    assert all(b.job_id for b in batches)
    sent_once = received_emails(emulator, 0)
    assert sorted(sent_once) == sorted(want)  # every contact went exactly once

    time.sleep(JOB_DELAY)  # SendGrid finishes the jobs meanwhile
    emulator.set_faults(job_delay=0.0)
    mark = len(emulator.exchanges)
    resumed = await collect(
        engine_for(export_env, max_contacts=200), ExportRequest("news", resume_run=finished.run_id)
    )
    done = resumed[-1]
    assert isinstance(done, ev.RunFinished)
    assert done.status == "succeeded", done
    assert done.run_id == finished.run_id
    assert received_emails(emulator, mark) == []  # settled by asking, not by sending again
    settled = [e for e in resumed if isinstance(e, ev.JobFinished)]
    assert sorted(e.seq for e in settled) == sorted(b.seq for b in batches)
    skipped = [e for e in resumed if isinstance(e, ev.BatchSkipped)]
    assert sum(e.contacts for e in skipped) == len(want)
    assert done.counts["sent"] == len(want)
    assert done.counts["skipped"] == len(want)
    assert {b.status for b in history.get_run(done.run_id).batches} == {"completed"}
    members = emulator.state.list_members(export_env.list_id)
    assert members == want
