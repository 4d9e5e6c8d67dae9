"""`segsync lists`, `segsync where`, the run list's filters, --segment a,b,
--resume without --workspace, and retries said live."""

from __future__ import annotations

import subprocess

import pytest

from store.history import History
from store.ledger import ledger_file
from store.paths import history_path
from tests.cli.conftest import cli, cli_json

pytestmark = pytest.mark.slow  # commands end to end against the emulator


def test_lists_by_destination_and_by_key_before_any_destination(export_env, capsys) -> None:
    other = export_env.emulator.state.create_list("Other list")["id"]
    code, out, err = cli(capsys, "lists", "news")
    assert code == 0, err
    assert export_env.list_id in out and other in out and "Other list" in out
    code, data, err = cli_json(
        capsys, "lists", "--api-key-env", "DEST_KEY", "--base-url", export_env.emulator.url
    )
    assert code == 0, err
    assert {(x["id"], x["name"]) for x in data} >= {(other, "Other list")}
    code, _out, err = cli(capsys, "lists", "--api-key-env", "NO_SUCH_VARIABLE")
    assert code == 2 and "NO_SUCH_VARIABLE is not set" in err


def test_where_prints_the_paths(export_env, capsys) -> None:
    code, data, _err = cli_json(capsys, "where")
    assert code == 0
    state = export_env.state_dir
    assert data["state_dir"] == str(state.absolute())
    assert data["history"] == str(state.absolute() / "history.db")
    assert data["keys"].endswith("keys") and data["plans"].endswith("plans")
    assert set(data["destination_ledgers"]) == {"news"}
    with History(state / "history.db") as history:
        dest = history.get_destination("news")
    assert data["destination_ledgers"]["news"] == str(
        ledger_file(state, dest.base_url, dest.list_id or "").absolute()
    )  # where an export writes it
    code, out, _err = cli(capsys, "where")
    assert "history" in out and str(state) in out


def test_where_creates_nothing(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SEGSYNC_STATE_DIR", str(tmp_path / "nowhere"))
    assert cli(capsys, "where")[0] == 0
    assert not (tmp_path / "nowhere").exists()


def test_where_names_ledgers_without_making_their_folder(tmp_path, capsys, monkeypatch) -> None:
    state = tmp_path / "state"
    with History(history_path(state)) as history:
        history.add_destination("news", base_url="https://api.sendgrid.com", list_id="l1")
    monkeypatch.setenv("SEGSYNC_STATE_DIR", str(state))
    code, data, _err = cli_json(capsys, "where")
    assert code == 0 and data["destination_ledgers"]["news"].startswith(str(state / "ledgers"))
    assert not (state / "ledgers").exists()  # `where` creates nothing


def test_runs_filters(export_env, capsys) -> None:
    assert cli(capsys, "export", "news", "--segment", "germany")[0] == 0
    assert cli(capsys, "export", "news", "--segment", "france")[0] == 0
    code, _out, err = cli(capsys, "runs", "--status", "bogus")
    assert code == 2 and "invalid choice: 'bogus'" in err  # was: "no runs yet"
    code, data, _err = cli_json(capsys, "runs", "--limit", "1")
    assert [r["segments"] for r in data] == [["france"]]
    code, data, _err = cli_json(capsys, "runs", "--since", "1h", "--status", "succeeded")
    assert len(data) == 2
    code, data, _err = cli_json(capsys, "runs", "--since", "2999-01-01")
    assert data == []
    code, _out, err = cli(capsys, "runs", "--since", "yesterday-ish")
    assert code == 2 and "not an age or a date" in err
    code, _out, err = cli(capsys, "runs", "--destination", "nope")
    assert code == 2 and "nope" in err
    code, data, _err = cli_json(capsys, "runs", "list", "--destination", "news")
    assert len(data) == 2


def test_segments_may_be_comma_separated(export_env, capsys) -> None:
    code, data, err = cli_json(capsys, "export", "news", "--segment", "germany,france")
    assert code == 0, err
    run = History(history_path(export_env.state_dir)).get_run(data["run"])
    assert tuple(run.segments) == ("germany", "france")


def test_resume_reuses_the_runs_workspace(export_env, capsys, monkeypatch, tmp_path) -> None:
    """--resume N needed --workspace again; now the run's own is used."""
    from tests.engine.test_resume import kill_after, start_export

    export_env.emulator.set_faults(job_delay=0.2)
    proc = start_export(export_env, "--segment", "germany", "--batch-size", "60",
                        "--concurrency", "1")  # fmt: skip
    kill_after(proc, "job completed", 2)
    export_env.emulator.set_faults(job_delay=0.0)
    run = History(history_path(export_env.state_dir)).list_runs()[0]
    assert run.status == "interrupted"
    monkeypatch.delenv("SEGSYNC_WORKSPACE")
    monkeypatch.chdir(tmp_path)  # no segments.toml here
    code, data, err = cli_json(capsys, "export", "--resume", str(run.id))
    assert code == 0, err
    assert data["status"] == "succeeded"


def test_retries_are_said_live_on_stderr(capsys, monkeypatch) -> None:
    """A refused connection was a minute of silence before the error."""
    import socket

    import connector.destinations

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(connector.destinations, "INTERACTIVE_MAX_WAIT", 1.5)
    monkeypatch.setenv("SOME_KEY", "SG." + "k" * 66)
    url = f"http://127.0.0.1:{port}"
    code, _out, err = cli(capsys, "destinations", "add", "x", "--list-id", "L",
                          "--api-key-env", "SOME_KEY", "--base-url", url)  # fmt: skip
    assert code == 2
    retries = [line for line in err.splitlines() if "retrying in" in line]
    assert retries, err
    assert retries[0].startswith("segsync: checking the key and list: GET /v3/scopes: ")
    assert "attempt 1 failed" in retries[0]


def test_an_export_says_each_retry_with_its_endpoint_even_with_json(export_env, capsys) -> None:
    export_env.emulator.set_faults(script=["503", "503"])
    code, _data, err = cli_json(capsys, "export", "news", "--segment", "germany")
    assert code == 0, err
    retries = [line for line in err.splitlines() if "retrying in" in line]
    assert len(retries) == 2, err
    assert retries[0].startswith("segsync: export: ") and "attempt 1 failed" in retries[0]
    assert "/v3/" in retries[0] and "503" in retries[0]
    export_env.emulator.set_faults(script=["429"])
    code, _data, err = cli_json(capsys, "export", "news", "--segment", "france")
    assert code == 0, err
    waits = [line for line in err.splitlines() if "for SendGrid's rate limit" in line]
    assert len(waits) == 1 and waits[0].startswith("segsync: export: ") and "waiting" in waits[0]


@pytest.mark.parametrize("argv", [["runs"], ["where"]])
def test_console_script_answers(argv, export_env) -> None:
    done = subprocess.run(export_env.cli(*argv), env=export_env.env(), capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_map_and_explain_say_how_to_save_a_missing_mapping(tmp_path, capsys, monkeypatch) -> None:
    state = tmp_path / "state"
    with History(history_path(state)) as history:
        history.add_destination("news", base_url="https://api.sendgrid.com", list_id="l1")
    monkeypatch.setenv("SEGSYNC_STATE_DIR", str(state))
    for argv in (["map", "news"], ["explain", "ann@example.com", "--destination", "news"]):
        code, _out, err = cli(capsys, *argv)
        assert code == 2, err
        assert "'news' has no field mapping yet: `segsync map news email=COLUMN ...`" in err
