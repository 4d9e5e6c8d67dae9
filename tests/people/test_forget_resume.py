"""Forget while a killed export waits to be resumed: the resume must neither send
the person nor write them back into any record."""

from __future__ import annotations

import orjson
import pyarrow.ipc as ipc
import pytest

from store.history import History
from store.paths import history_path
from tests.engine.conftest import expected_emails, run_cli
from tests.engine.test_resume import kill_after, received_emails, start_export
from tests.people.traces import holders
from tests.upload_log import confirmed_emails
from tui.cli import main

pytestmark = pytest.mark.slow  # export processes stopped and resumed


def test_a_resumed_run_leaves_out_people_forgotten_since_it_stopped(export_env, capsys):
    emulator, state = export_env.emulator, export_env.state_dir
    segments = ["germany", "france"]
    emulator.set_faults(job_delay=0.2, latency=0.1)  # slow enough that some are never packed
    proc = start_export(
        export_env, "--segment", "germany", "--segment", "france",
        "--batch-size", "60", "--concurrency", "1",
    )  # fmt: skip
    kill_after(proc, "job completed", 2)
    emulator.set_faults(job_delay=0.0, latency=0.0)
    with History(history_path(state)) as history:
        run = history.list_runs()[0]
        assert run.status == "interrupted"
        confirmed = confirmed_emails(emulator, history, run.id)
    expected = expected_emails(export_env.rows, segments)
    sent_already = sorted(confirmed & expected)[0]  # on the list, in a batch file
    packed = set()  # every address put in a batch so far, confirmed or not
    for path in (state / "runs" / str(run.id)).glob("*.arrow"):
        with ipc.open_file(path) as reader:
            packed.update(reader.read_all().column("email").to_pylist())
    not_yet = sorted(expected - packed)[0]  # only in the plan so far
    assert sent_already in emulator.state.list_members(export_env.list_id)
    assert (state / "runs" / str(run.id)).is_dir()
    assert any(p.suffix == ".arrow" for p in holders(state, sent_already))

    for email in (sent_already, not_yet):
        capsys.readouterr()
        code = run_cli(main, "forget", email, "--yes", "--json")
        report = orjson.loads(capsys.readouterr().out)
        assert code == 0 and report["complete"], orjson.dumps(report).decode()
        assert holders(state, email) == {}

    since = len(emulator.exchanges)
    capsys.readouterr()
    code = run_cli(main, "export", "news", "--resume", str(run.id), "--json")
    summary = orjson.loads(capsys.readouterr().out)
    assert code == 0, summary
    assert summary["status"] == "succeeded"
    sent_now = received_emails(emulator, since)
    assert sent_already not in sent_now and not_yet not in sent_now
    assert not set(sent_now) & confirmed  # the confirmed batches are still not sent again
    assert emulator.state.list_members(export_env.list_id) == expected - {sent_already, not_yet}
    for email in (sent_already, not_yet):
        assert holders(state, email) == {}
