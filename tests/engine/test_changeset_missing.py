"""A plan whose changeset file is gone (pruned by hand, a state folder copied
without it) is refused before anything is sent or any run is opened."""

from __future__ import annotations

import pytest

from store.changeset import changeset_file
from store.history import History
from store.paths import history_path
from tests.engine.conftest import run_cli
from tests.engine.test_changesets import cli_json
from tui.cli import main

pytestmark = pytest.mark.slow  # end to end against the emulator


@pytest.mark.parametrize("command", ["apply", "undo"])
def test_a_missing_changeset_is_refused_and_no_run_is_left_running(
    export_env, capsys, command: str
) -> None:
    code, run = cli_json(capsys, "export", "news", "--segment", "germany")
    assert code == 0, run
    history = History(history_path(export_env.state_dir))
    before = {r.id for r in history.list_runs()}
    if command == "apply":
        code, planned = cli_json(capsys, "plan", "news", "--segment", "germany")
        target = planned["plan"]
    else:  # an undo plan carries its contacts: applied without planning again
        code, planned = cli_json(capsys, "undo", str(run["run"]), "--dry-run")
        target = planned["plan"]
    assert code == 0, planned
    changeset_file(export_env.state_dir, target).unlink()
    sent = len(export_env.emulator.exchanges)

    capsys.readouterr()
    code = run_cli(main, "apply", str(target), "--yes", "--allow-removals", "100000")
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"plan-{target}.parquet is missing" in err and "plan again" in err
    runs = History(history_path(export_env.state_dir)).list_runs()
    assert {r.id for r in runs} == before  # no run opened, none left `running`
    assert all(r.status != "running" for r in runs)
    assert len(export_env.emulator.exchanges) == sent or all(
        e.method == "GET" for e in export_env.emulator.exchanges[sent:]
    )  # account checks at most: nothing sent
