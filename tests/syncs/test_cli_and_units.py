"""`segsync syncs ...` as a user types it, and the timer it installs: the units
systemd would load, the crontab line cron would run, and their removal."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from connector.schedule_units import (
    CRON_MARKER,
    cron_line,
    run_due_argv,
    systemd_units,
    unit_name,
    without_cron_line,
)
from connector.syncs import parse_every, utc_now
from store.history_errors import SyncError
from tests.engine.conftest import run_cli
from tests.syncs.conftest import history_of
from tui.cli import main

pytestmark = pytest.mark.slow  # scheduled exports end to end


def cli_json(capsys, *argv: str):
    capsys.readouterr()
    code = run_cli(main, *argv, "--json")
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_add_list_show_edit_pause_resume_remove(export_env, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(export_env.workspace)  # --workspace defaults to here: stored absolute
    monkeypatch.delenv("SEGSYNC_WORKSPACE")
    code = run_cli(main, "syncs", "add", "nightly", "--destination", "news", "--segment",
                   "germany", "--cron", "0 2 * * *", "--tz", "Europe/Berlin", "--mode",
                   "mirror", "--on-failure", "mail -s failed me")  # fmt: skip
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "added sync nightly" in out and "warning" not in out

    history = history_of(export_env)
    history.update_destination(history.get_destination("news").id, key_storage="keyring",
                               api_key_env=None)  # fmt: skip
    assert run_cli(main, "syncs", "add", "keyed", "--destination", "news", "--segment",
                   "germany", "--every", "1h") == 0  # fmt: skip
    assert "warning: news keeps its key in the OS keyring" in capsys.readouterr().out
    assert run_cli(main, "syncs", "remove", "keyed") == 0

    code, [row] = cli_json(capsys, "syncs", "list")
    assert code == 0
    assert row["name"] == "nightly" and row["destination"] == "news"
    assert row["workspace"] == str(export_env.workspace.resolve())
    assert row["trigger"] == "cron 0 2 * * * (Europe/Berlin)"
    assert row["last_result"] is None and row["next_run_at"] is not None
    assert row["paused"] is False and row["alerts"] == 0

    assert run_cli(main, "syncs", "add", "nightly", "--destination", "news", "--segment",
                   "germany", "--every", "1h") == 2  # fmt: skip
    assert "already exists" in capsys.readouterr().err
    assert run_cli(main, "syncs", "add", "x", "--destination", "news", "--segment",
                   "nowhere", "--every", "1h") == 2  # fmt: skip
    assert "unknown segment" in capsys.readouterr().err
    assert run_cli(main, "syncs", "add", "y", "--destination", "news", "--segment",
                   "germany", "--cron", "61 * * * *") == 2  # fmt: skip
    assert "five-field cron" in capsys.readouterr().err

    assert run_cli(main, "syncs", "edit", "nightly", "--every", "6h", "--no-on-failure") == 0
    code, data = cli_json(capsys, "syncs", "show", "nightly")
    assert data["trigger"] == "every" and data["every_seconds"] == 6 * 3600
    assert data["on_failure"] is None and data["mode"] == "mirror"

    assert run_cli(main, "syncs", "pause", "nightly") == 0
    code, [row] = cli_json(capsys, "syncs", "list")
    assert row["paused"] is True and row["next_run_at"] is None
    assert run_cli(main, "syncs", "resume", "nightly") == 0
    code, [row] = cli_json(capsys, "syncs", "list")
    assert row["paused"] is False and row["next_run_at"] is not None

    assert run_cli(main, "syncs", "remove", "nightly") == 0
    code, rows = cli_json(capsys, "syncs", "list")
    assert rows == []


def test_run_due_exit_code_says_whether_anything_failed_and_alerts_can_be_acked(export_env, capsys):
    history = history_of(export_env)
    for name, segment in (("good", "germany"), ("bad", "france")):
        assert run_cli(main, "syncs", "add", name, "--destination", "news", "--segment",
                       segment, "--every", "1h") == 0  # fmt: skip
    assert run_cli(main, "syncs", "run-due") == 0  # nothing due: nothing failed
    bad = history.get_sync("bad")
    for sync in history.list_syncs():
        history.update_sync(sync.id, updated_at=utc_now(),
                            next_due_at=utc_now() - timedelta(minutes=1))  # fmt: skip
    (export_env.workspace / "segments.toml").write_text(
        (export_env.workspace / "segments.toml").read_text().replace("country = 'FR'", "country = ")
    )  # france's predicate is broken now

    code, attempts = cli_json(capsys, "syncs", "run-due")
    assert code == 1
    assert {a["sync"]: a["result"] for a in attempts} == {"good": "succeeded", "bad": "failed"}
    assert "france" in next(a["message"] for a in attempts if a["sync"] == "bad")
    for sync in history.list_syncs():
        history.update_sync(sync.id, updated_at=utc_now(),
                            next_due_at=utc_now() - timedelta(minutes=1))  # fmt: skip
    capsys.readouterr()
    assert run_cli(main, "syncs", "run-due", "--quiet") == 1  # what cron would mail
    err = capsys.readouterr().err
    assert "sync bad: failed" in err and "sync good" not in err
    code, alerts = cli_json(capsys, "syncs", "alerts")
    assert "bad" in {a["sync"] for a in alerts}
    assert run_cli(main, "syncs", "alerts", "--ack", "bad") == 0
    code, alerts = cli_json(capsys, "syncs", "alerts")
    assert "bad" not in {a["sync"] for a in alerts}
    assert history.get_sync(bad.id).last_result == "failed"


def test_every_accepts_units_and_refuses_less_than_a_minute():
    assert parse_every("6h") == 21600
    assert parse_every("1h30m") == 5400
    assert parse_every("1d") == 86400
    for bad in ("30s", "6", "h", "six hours", "6h x", ""):
        with pytest.raises(SyncError):
            parse_every(bad)


# -- units ------------------------------------------------------------------------------------


def test_systemd_units_run_this_segsync_every_minute_with_the_state_folder(tmp_path):
    state = tmp_path / "my state%dir"
    units = systemd_units(state)
    assert units.name == unit_name(state) and units.name.startswith("segsync-syncs-")
    service = units.service.splitlines()
    assert "Type=oneshot" in service
    assert f'Environment="SEGSYNC_STATE_DIR={tmp_path}/my state%%dir"' in service
    exec_start = next(line for line in service if line.startswith("ExecStart="))
    assert exec_start.endswith(f'--state-dir "{tmp_path}/my state%%dir" syncs run-due')
    assert Path(shlex.split(exec_start.removeprefix("ExecStart="))[0]).is_absolute()
    assert not any(line.startswith("TimeoutStartSec") for line in service)
    timer = units.timer.splitlines()
    assert "OnCalendar=*-*-* *:*:00" in timer
    assert f"Unit={units.name}.service" in timer
    assert "WantedBy=timers.target" in timer


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_the_installed_units(export_env, tmp_path, capsys):
    folder = tmp_path / "units"
    assert run_cli(main, "syncs", "install", "--systemd-user", "--unit-dir", str(folder)) == 0
    out = capsys.readouterr()
    assert "systemd-analyze verify reports" not in out.err
    files = sorted(folder.iterdir())
    assert [f.suffix for f in files] == [".service", ".timer"]
    done = subprocess.run(
        ["systemd-analyze", "verify", *map(str, files)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    # And it does catch a broken unit, so the check above means something.
    broken = folder / "broken.service"
    broken.write_text("[Service]\nType=oneshot\nExecStart=relative/path run\n")
    done = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True)
    assert done.returncode != 0
    broken.unlink()

    assert run_cli(main, "syncs", "uninstall", "--systemd-user", "--unit-dir", str(folder)) == 0
    assert list(folder.iterdir()) == []


def test_the_installed_service_command_runs_run_due(export_env, tmp_path):
    """The ExecStart a timer would run really is a working run-due."""
    argv = run_due_argv(export_env.state_dir)
    env = {**export_env.env(), "SEGSYNC_STATE_DIR": "/nonexistent-should-not-be-used"}
    done = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_the_crontab_line_every_minute_with_state_log_and_marker(tmp_path):
    state = tmp_path / "st%ate"
    line = cron_line(state)
    fields = line.split(" ", 5)
    assert fields[:5] == ["*"] * 5
    command = fields[5]
    assert "syncs run-due --quiet" in command
    assert "%" not in command.replace("\\%", "")  # cron would cut the command at a bare %
    # What the shell gets once cron has turned each \% back into %:
    words = shlex.split(command.replace("\\%", "%").split(f" {CRON_MARKER}")[0])
    assert words[0] == f"SEGSYNC_STATE_DIR={state}"
    assert words[-3:] == [">>", str(state / "syncs.log"), "2>&1"]
    assert words[1:-3] == [*run_due_argv(state), "--quiet"]
    assert line.endswith(f"{CRON_MARKER} {unit_name(state)}")

    other = cron_line(tmp_path / "other")
    crontab = f"MAILTO=me\n0 5 * * * backup\n{line}\n{other}\n"
    kept, removed = without_cron_line(crontab, state)
    assert removed == 1
    assert kept == f"MAILTO=me\n0 5 * * * backup\n{other}\n"


def test_install_cron_prints_the_line(export_env, capsys):
    assert run_cli(main, "syncs", "install", "--cron") == 0
    out = capsys.readouterr()
    assert out.out.strip() == cron_line(export_env.state_dir)
    assert "crontab -e" in out.err
