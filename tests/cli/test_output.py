"""Data on stdout, messages on stderr; a closed pipe is not a crash; the dry
run's preview is JSON with its cuts marked and in full under --json."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tests.cli.conftest import cli, cli_json

pytestmark = pytest.mark.slow  # commands end to end against the emulator


def test_a_reader_that_goes_away_is_not_an_unexpected_error(export_env, capsys) -> None:
    """`segsync runs | head` ended with "unexpected BrokenPipeError ... report it"."""
    assert cli(capsys, "export", "news", "--segment", "germany")[0] == 0
    proc = subprocess.Popen(
        export_env.cli("runs"),
        env=export_env.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before segsync writes a line
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141  # as a shell reports SIGPIPE
    assert err == "", err


def test_export_prints_progress_on_stderr_and_the_result_on_stdout(export_env, capsys) -> None:
    code, out, err = cli(capsys, "export", "news", "--segment", "germany")
    assert code == 0, err
    assert "planning" in err and "uploading" in err
    assert "planning" not in out
    assert out.startswith("run 1 succeeded")


def test_listings_are_data_and_their_empty_notes_are_messages(export_env, capsys) -> None:
    code, out, err = cli(capsys, "runs")
    assert code == 0 and out == "" and "no runs yet" in err
    code, out, _err = cli(capsys, "destinations", "list")
    assert out.startswith("news  list 'newsletter'")


def test_dry_run_preview_is_json_on_stdout_with_cuts_marked(export_env, capsys) -> None:
    code, out, err = cli(capsys, "export", "news", "--segment", "germany", "--dry-run")
    assert code == 0, err
    lines = out.splitlines()
    start = lines.index("sample contacts:") + 1
    sample = orjson.loads(lines[start].strip())  # JSON, not a Python dict
    assert sample["email"].endswith("@example.com")
    body = lines[lines.index("first request body (PUT /v3/marketing/contacts):") + 1]
    assert len(body.strip()) <= 1500
    assert "[cut here: the body goes on; `--json` shows more of it" in out

    code, data, err = cli_json(capsys, "export", "news", "--segment", "germany", "--dry-run")
    assert code == 0, err
    assert data["status"] == "dry_run"
    assert data["sample_contacts"] and data["sample_contacts"][0]["email"]
    assert len(data["first_body"]) > 1500 and data["first_body"].startswith('{"list_ids"')
    assert data["first_body_cut"] is True and not data["first_body"].endswith("…")
    assert data["warnings"] == [] and data["ready"] is True


def test_a_plan_says_what_its_export_would_be_refused_for(export_env, capsys) -> None:
    """A preview once said "ready" and the export then failed on the cap: a
    plan names each check an export of it would fail, before anything is sent."""
    assert cli(capsys, "destinations", "set-cap", "news", "10")[0] == 0
    code, data, err = cli_json(capsys, "plan", "news", "--segment", "germany")
    assert code == 0, err
    assert data["ready"] is False
    caps = [f for f in data["findings"] if f["kind"] == "cap"]
    assert caps and caps[0]["blocking"] and "set-cap" in caps[0]["message"]
    assert "would refuse:" in err
    assert cli(capsys, "destinations", "set-cap", "news", "100000")[0] == 0
    code, data, err = cli_json(capsys, "plan", "news", "--segment", "germany")
    assert code == 0 and data["ready"] is True and data["findings"] == []


def test_invalid_rows_do_not_make_an_export_partial(export_env, capsys) -> None:
    """Exit 3 is `partial`: SendGrid's rejections, not rows the plan left out."""
    code, data, err = cli_json(capsys, "export", "news", "--segment", "germany")
    assert data["counts"]["invalid_email"] > 0
    assert (code, data["status"]) == (0, "succeeded"), err


def test_python_m_cli_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("segsync ")


def test_an_export_whose_reader_left_still_exits_by_how_the_run_ended(export_env) -> None:
    """`segsync export ... | head -1`: the run finishes and its exit code is the run's."""
    proc = subprocess.Popen(
        export_env.cli("export", "news", "--segment", "germany"),
        env=export_env.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert export_env.emulator.state.list_members(export_env.list_id)
