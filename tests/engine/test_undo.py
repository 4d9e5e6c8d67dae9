"""Undo a run: the list goes back to what it was before the run, and undo of an
undo puts the run's changes back; recorded as runs of kind `undo`."""

from __future__ import annotations

import orjson
import pytest

from store.history import History
from store.paths import history_path
from tests.engine.conftest import expected_emails, run_cli
from tests.engine.test_changesets import cli_json, leave_germany
from tui.cli import main

pytestmark = pytest.mark.slow  # end to end against the emulator


def members(export_env) -> set[str]:
    return export_env.emulator.state.list_members(export_env.list_id)


def test_undo_round_trip_restores_the_list_and_undo_of_undo_redoes_it(export_env, capsys):
    code, _ = cli_json(capsys, "export", "news", "--segment", "germany", "--mode", "mirror")
    assert code == 0
    before_run = members(export_env)
    # The run to undo: some leave `germany` (removed), `france` joins (added).
    leave_germany(export_env, 15, to="ES")
    code, run = cli_json(
        capsys, "export", "news", "--segment", "germany", "--segment", "france",
        "--mode", "mirror",
    )  # fmt: skip
    assert code == 0, run
    after_run = members(export_env)
    assert after_run != before_run
    added, removed = after_run - before_run, before_run - after_run
    assert added and removed

    code, preview = cli_json(capsys, "undo", str(run["run"]), "--dry-run")
    assert code == 0
    assert preview["counts"]["to_remove"] == len(added)
    assert preview["counts"]["to_add"] == len(removed)
    assert preview["counts"]["updated_not_restored"] > 0  # said, not silently dropped
    assert members(export_env) == after_run  # a dry run changes nothing

    # Taking off everyone the run added is more than the default guardrail allows.
    code, refused = cli_json(capsys, "undo", str(run["run"]), "--yes")
    assert (code, refused["status"]) == (2, "refused")
    assert members(export_env) == after_run
    code, undone = cli_json(
        capsys, "undo", str(run["run"]), "--yes", "--allow-removals", str(len(added))
    )
    assert code == 0, undone
    assert members(export_env) == before_run
    history = History(history_path(export_env.state_dir))
    undo_run = history.get_run(undone["run"])
    assert (undo_run.kind, undo_run.undo_of) == ("undo", run["run"])

    capsys.readouterr()
    code = run_cli(main, "undo", str(undone["run"]), "--yes")
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"undo of run {undone['run']} to news" in err  # not "upsert"
    assert members(export_env) == after_run


def test_undoing_an_older_run_warns_about_people_later_runs_touched(export_env, capsys):
    code, first = cli_json(capsys, "export", "news", "--segment", "germany")
    assert code == 0
    code, _ = cli_json(capsys, "export", "news", "--segment", "germany")  # updates them all
    assert code == 0
    capsys.readouterr()
    assert run_cli(main, "undo", str(first["run"]), "--dry-run") == 0
    out = capsys.readouterr().out
    expected = expected_emails(export_env.rows, ["germany"])
    assert f"{len(expected):,} of them were changed again by later runs" in out


def test_undo_needs_a_run_with_a_people_record(export_env, capsys):
    capsys.readouterr()
    assert run_cli(main, "undo", "999", "--dry-run") == 2
    assert "no run 999" in capsys.readouterr().err


@pytest.mark.parametrize("answer", ["n", ""])
def test_undo_asks_before_changing_the_list(export_env, capsys, monkeypatch, answer):
    code, run = cli_json(capsys, "export", "news", "--segment", "germany")
    assert code == 0
    before = members(export_env)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("sys.stdin.readline", lambda: answer + "\n")
    capsys.readouterr()
    assert run_cli(main, "undo", str(run["run"])) == 2
    assert members(export_env) == before
    assert "nothing was changed" in capsys.readouterr().err
    capsys.readouterr()
    run_cli(main, "runs", "--json")
    assert [r["id"] for r in orjson.loads(capsys.readouterr().out)] == [run["run"]]
