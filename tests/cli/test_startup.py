"""What a command imports before it answers (no times asserted: the benchmark,
`python -m tests.bench --startup-only`, measures those).

The commands that only read the history (`runs`, `runs show`, `runs rejected`,
`runs evidence`, `plans`, `plans show`, `destinations`, `map DEST`, `syncs`,
`syncs show`, `syncs alerts`, `where`; `explain` too, tested with its
workspace, in tests/engine/test_explain.py) read it without SQLAlchemy
(`store.history_read`), and a command loads only its own module's parsers
(`cli.main.COMMANDS`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from store.history import History
from store.records import FieldMapping

ORM = {"sqlalchemy", "sqlmodel", "pydantic"}
HEAVY = ORM | {"duckdb", "httpx", "pyarrow", "textual"}
CODE = """
import json, sys
from cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def imports(*argv: str) -> tuple[int, set[str], str]:
    """(exit code, modules loaded, stdout) of `segsync ARGV` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", CODE, *argv], capture_output=True, text=True, check=True
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"]), done.stdout


def top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def commands(modules: set[str]) -> set[str]:
    return {m for m in modules if m.startswith("cli.")} - {"cli.main", "cli.common"}


def test_runs_lists_history_without_sqlalchemy(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with History(state / "history.db") as history:
        dest = history.add_destination("news", base_url="https://api.sendgrid.com", list_id="1")
        history.finish_run(history.start_run(dest.id, ["vip"]), "succeeded")
    code, modules, out = imports("runs", "--state-dir", str(state))
    assert code == 0 and "news" in out and "vip" in out
    assert top(modules) & HEAVY == set()
    assert commands(modules) == {"cli.runs"}


def test_runs_on_a_new_state_folder_creates_the_history_as_before(tmp_path: Path) -> None:
    state = tmp_path / "state"
    code, _modules, _out = imports("runs", "--state-dir", str(state))
    assert code == 0 and (state / "history.db").is_file()


def test_version_and_segments_load_no_other_commands() -> None:
    code, modules, out = imports("--version")
    assert code == 0 and out.startswith("segsync ")
    assert commands(modules) == set()
    _code, modules, _out = imports("segments", "--help")
    assert commands(modules) == {"cli.commands"}


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder with a destination, a run with a batch and a rejected row, a plan."""
    state = tmp_path_factory.mktemp("reviewed") / "state"
    state.mkdir(mode=0o700)
    with History(state / "history.db") as history:
        dest = history.add_destination("news", base_url="https://api.sendgrid.com", list_id="l1")
        history.set_mapping(dest.id, FieldMapping(email="mail", reserved={}, custom={"tier": "t"}))
        run = history.start_run(dest.id, ["vip"])
        history.add_batch(run, 0, 2, 512, "a@example.com", "b@example.com")
        history.mark_batch_sent(run, 0, "job-zero")
        history.mark_batch_finished(run, 0, "errored", 1, 0, 1)
        history.add_rejected(run, [(0, "k2", "b@example.com", "invalid mailbox", "sendgrid")])
        history.finish_run(run, "partial", counts={"to_send": 2, "sent": 2, "errored": 1})
        history.add_sync(
            created_at=datetime.now(UTC), name="nightly", destination_id=dest.id,
            workspace="/w", segments=["vip"], mode="upsert", incremental=True,
            trigger="every", every_seconds=86400,
        )  # fmt: skip
        history.add_sync_event(1, "run", "failed", datetime.now(UTC), message="boom", alert=True)
        history.add_plan(
            destination_id=dest.id, destination_name="news", segments=["vip"], mode="upsert",
            incremental=False, counts={"to_add": 7}, basis={}, created_at=datetime.now(UTC),
        )  # fmt: skip
    return state


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["runs", "show", "1"], "job-zero"),
        (["runs", "show", "1", "--json"], '"job_id": "job-zero"'),
        (["plans"], "+7"),
        (["plans", "show", "1", "--json"], '"to_add": 7'),
        (["plans", "show", "1"], "plan 1: news"),
        (["destinations"], "news  list"),
        (["destinations", "list", "--json"], '"list_id": "l1"'),
        (["where"], "ledger of news"),
        (["runs", "evidence", "1", "--json"], '"run": 1'),
        (["map", "news"], "(custom field)"),
        (["syncs"], "nightly"),
        (["syncs"], "1 failure(s) not acknowledged"),
        (["syncs", "show", "nightly"], "run failed !: boom"),
        (["syncs", "alerts"], "nightly: run failed"),
    ],
)
def test_reviewing_the_record_needs_no_sqlalchemy(
    reviewed: Path, argv: list[str], shown: str
) -> None:
    code, modules, out = imports(*argv, "--state-dir", str(reviewed))
    assert code == 0 and shown in out
    assert top(modules) & ORM == set()


def test_rejected_rows_and_a_missing_run_without_sqlalchemy(reviewed: Path, tmp_path: Path) -> None:
    csv = tmp_path / "rejected.csv"
    code, modules, _out = imports("runs", "rejected", "1", "--csv", str(csv), "--state-dir",
                                  str(reviewed))  # fmt: skip
    assert code == 0 and "invalid mailbox" in csv.read_text()
    assert top(modules) & ORM == set()
    for argv in (["runs", "show", "9"], ["plans", "show", "9"], ["destinations", "show", "x"]):
        done = subprocess.run(
            [sys.executable, "-c", CODE, *argv, "--state-dir", str(reviewed)],
            capture_output=True,
            text=True,
        )
        report = json.loads(done.stderr.strip().splitlines()[-1])
        assert report["code"] == 2, done.stderr  # a user error, not "unexpected ..."
        assert "no " in done.stderr and "unexpected" not in done.stderr
        assert top(set(report["modules"])) & ORM == set()
