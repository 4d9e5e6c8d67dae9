"""What a command imports before it answers (no times asserted: the benchmark,
`python -m tests.bench --startup-only`, measures those).

`segsync runs` lists runs without SQLAlchemy (`store.history_read`), and a
command loads only its own module's parsers (`cli.main.COMMANDS`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from store.history import History

HEAVY = {"sqlalchemy", "sqlmodel", "pydantic", "duckdb", "httpx", "pyarrow", "textual"}
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
