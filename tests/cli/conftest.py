"""The command line's tests reuse the engine's environment: a workspace with a
known answer, a state folder and a destination `news` on the emulator's list."""

from __future__ import annotations

import orjson
import pytest

from tests.engine.conftest import export_env, run_cli  # noqa: F401 - fixture and helper
from tui.cli import main


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr) of this call only."""
    capsys.readouterr()
    code = run_cli(main, *argv)
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object, str]:
    code, out, err = cli(capsys, *argv, "--json")
    return code, orjson.loads(out), err
