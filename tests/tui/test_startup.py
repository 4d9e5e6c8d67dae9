"""Start-up stays light: the app's modules import no DuckDB, SQLModel,
pyarrow or httpx (they load in workers, after the first screen is up)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"
HEAVY = ("duckdb", "sqlmodel", "sqlalchemy", "pyarrow", "httpx")


def test_importing_the_app_imports_nothing_heavy() -> None:
    code = (
        "import sys, tui.app, tui.local_backend;"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


BUILT_BY_WORKERS = (
    "store.records",
    "connector.events",
    "connector.models",
    "connector.findings",
    "store.postgres_source",
)
"""Modules of dataclasses (records, engine events, a Postgres source): building
them took over 50 ms before the first paint, where no screen holds one until a
worker has run (a Postgres workspace's header label aside)."""


def test_the_first_screen_builds_no_records() -> None:
    """What runs before the first paint (the app's modules, the header's
    workspace label) names records for type checking only."""
    code = (
        "import sys; from pathlib import Path; import tui.app;"
        "from tui.local_backend import LocalBackend;"
        f"LocalBackend(workspace=Path({str(SAMPLE_DATA)!r}), state_dir=None).workspace_label;"
        f"print(','.join(m for m in {BUILT_BY_WORKERS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_version_goes_to_stdout_and_the_cli_does_not_read_metadata_otherwise() -> None:
    from importlib.metadata import version

    out = subprocess.run(
        [sys.executable, "-m", "tui", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout == f"segsync {version('segsync')}\n"
    code = "import sys, tui.cli; print('importlib.metadata' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert imported.stdout.strip() == "False"
