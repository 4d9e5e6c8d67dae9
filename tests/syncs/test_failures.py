"""Someone hears about it: a failed run, a guardrail refusal, or SendGrid
rejecting too many rows is recorded as an alert and handed to the sync's
on-failure command (summary JSON on stdin, no key, under a timeout); a key
that only lives in an unreachable keyring is refused naming the fix."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.engine.conftest import run_cli
from tests.syncs.conftest import add_sync, history_of, make_runner
from tui.cli import main

pytestmark = pytest.mark.slow  # scheduled exports end to end


def hook_writing_to(folder) -> str:
    """A command that keeps what it was given: stdin, and its environment."""
    return f"cat > {folder}/summary.json; env > {folder}/env.txt"


def test_a_guardrail_refusal_alerts_and_the_hook_gets_the_summary_without_the_key(
    export_env, clock, tmp_path
):
    history = history_of(export_env)
    destination = history.get_destination("news")
    history.update_destination(destination.id, max_adds=10)  # germany adds ~700
    add_sync(export_env, clock, every="1h", cron=None, on_failure=hook_writing_to(tmp_path))
    clock.advance(hours=1)

    [attempt] = make_runner(export_env, clock).run_due()

    assert attempt.result == "refused" and attempt.failed
    assert attempt.hook is not None and attempt.hook.status == "ok"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sync"] == "nightly"
    assert summary["destination"] == "news"
    assert summary["result"] == "refused" and summary["failed"] is True
    assert summary["run"] == attempt.run_id
    assert "limit of 10 adds" in summary["message"]
    assert summary["see"] == f"segsync runs show {attempt.run_id}"
    assert history.get_run(attempt.run_id).status == "refused"
    key = export_env.emulator.api_key
    assert key not in (tmp_path / "summary.json").read_text()
    env = (tmp_path / "env.txt").read_text()
    assert key not in env and "DEST_KEY=" not in env
    assert "SEGSYNC_SYNC=nightly" in env and "SEGSYNC_RESULT=refused" in env

    [alert] = history.sync_alerts()
    assert (alert.sync_name, alert.event.result) == ("nightly", "refused")
    assert export_env.emulator.state.list_members(export_env.list_id) == set()


def test_sendgrid_rejecting_more_than_the_share_is_a_failure(export_env, clock, tmp_path):
    export_env.emulator.set_faults(row_error_rate=0.2, seed=3)
    add_sync(export_env, clock, name="strict", every="1h", cron=None, max_rejected_share=0.05,
             on_failure=hook_writing_to(tmp_path))  # fmt: skip
    add_sync(export_env, clock, name="lenient", every="1h", cron=None, segments=["france"],
             max_rejected_share=0.5)  # fmt: skip
    clock.advance(hours=1)

    attempts = {a.sync: a for a in make_runner(export_env, clock).run_due()}

    strict, lenient = attempts["strict"], attempts["lenient"]
    assert strict.result == "rejected" and strict.failed
    assert "over this sync's limit of 5.0%" in strict.message
    assert lenient.result == "partial" and not lenient.failed
    history = history_of(export_env)
    assert history.get_run(strict.run_id).status == "partial"  # the run itself is as it was
    assert json.loads((tmp_path / "summary.json").read_text())["result"] == "rejected"
    assert [a.sync_name for a in history.sync_alerts()] == ["strict"]
    assert history.get_sync("lenient").last_success_at is not None
    assert history.get_sync("strict").last_success_at is None


def test_a_hook_that_hangs_is_stopped_and_recorded_and_run_due_goes_on(export_env, clock, tmp_path):
    history = history_of(export_env)
    history.update_destination(history.get_destination("news").id, max_adds=1)
    pid_file = tmp_path / "child.pid"
    # The shell's child would hold the pipes open if only the shell were killed.
    hang = f"sleep 30 & echo $! > {pid_file}; wait"
    add_sync(export_env, clock, name="a", every="1h", cron=None, on_failure=hang,
             hook_timeout=0.5)  # fmt: skip
    add_sync(export_env, clock, name="b", every="1h", cron=None, on_failure="exit 7")
    clock.advance(hours=1)

    started = time.monotonic()
    attempts = make_runner(export_env, clock).run_due()
    assert time.monotonic() - started < 20
    assert [(a.sync, a.result, a.hook.status) for a in attempts] == [
        ("a", "refused", "timeout"),
        ("b", "refused", "failed"),
    ]
    events = history.sync_events(history.get_sync("b").id)
    assert [(e.kind, e.result) for e in events] == [("hook", "failed"), ("run", "refused")]
    assert "exited 7" in events[0].message
    assert not _alive(int(pid_file.read_text()))  # the whole group was stopped


def test_a_run_that_cannot_start_is_a_failure_with_its_reason(export_env, clock, tmp_path):
    add_sync(export_env, clock, every="1h", cron=None, on_failure=hook_writing_to(tmp_path))
    (export_env.workspace / "profiles.parquet").unlink()
    clock.advance(hours=1)
    [attempt] = make_runner(export_env, clock).run_due()
    assert attempt.result == "failed" and attempt.run_id is None
    assert "profiles.parquet" in attempt.message
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["run"] is None and summary["see"] == "segsync syncs show nightly"


def test_a_key_only_in_an_unreachable_keyring_is_refused_naming_the_destination_and_fix(
    export_env, clock, monkeypatch, capsys
):
    """Under a timer the keyring is locked or absent (SEGSYNC_NO_KEYRING here):
    run-due says which destination and how to give it a key, and after
    `syncs key-file` the same sync runs."""
    history = history_of(export_env)
    destination = history.get_destination("news")
    history.update_destination(destination.id, key_storage="keyring", api_key_env=None)
    monkeypatch.delenv("DEST_KEY")
    add_sync(export_env, clock, every="1h", cron=None)
    clock.advance(hours=1)
    runner = make_runner(export_env, clock)

    [attempt] = runner.run_due()
    assert attempt.result == "failed"
    assert "destination 'news' keeps its API key in the OS keyring" in attempt.message
    assert "segsync syncs key-file news" in attempt.message
    assert [a.sync_name for a in history.sync_alerts()] == ["nightly"]

    monkeypatch.setattr(sys, "stdin", _Lines(export_env.emulator.api_key + "\n"))
    assert run_cli(main, "syncs", "key-file", "news", "--api-key-stdin") == 0
    key_file = export_env.state_dir / "keys" / f"destination-{destination.id}.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert export_env.emulator.api_key not in capsys.readouterr().out
    clock.advance(hours=1)
    assert [a.result for a in runner.run_due()] == ["succeeded"]

    os.chmod(key_file, 0o644)  # a key others can read is not used unattended
    clock.advance(hours=1)
    [attempt] = runner.run_due()
    assert attempt.result == "failed" and "chmod 600" in attempt.message


def test_run_due_reads_keys_from_the_private_env_file_and_refuses_a_shared_one(
    export_env, monkeypatch, capsys
):
    from connector.syncs import load_env_file
    from store.history_errors import SyncError

    monkeypatch.delenv("DEST_KEY")
    env_file = export_env.state_dir / "syncs.env"
    env_file.write_text(f"# keys for the timer\nexport DEST_KEY='{export_env.emulator.api_key}'\n")
    os.chmod(env_file, 0o644)
    with pytest.raises(SyncError, match="chmod 600"):
        load_env_file(export_env.state_dir)
    os.chmod(env_file, 0o600)
    assert load_env_file(export_env.state_dir) == ["DEST_KEY"]
    assert os.environ["DEST_KEY"] == export_env.emulator.api_key

    monkeypatch.setenv("ALREADY", "kept")
    env_file.write_text("ALREADY=replaced\n")
    load_env_file(export_env.state_dir)
    assert os.environ["ALREADY"] == "kept"  # the caller's environment wins


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper does not count)."""
    for _ in range(50):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False
        if "State:\tZ" in status:
            return False
        time.sleep(0.05)
    return True


class _Lines:
    def __init__(self, text: str) -> None:
        self.text = text

    def readline(self) -> str:
        return self.text

    def isatty(self) -> bool:
        return False
