"""Shared fixtures: an in-process SendGrid emulator on a free loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from connector.emulator import Emulator

# Tests start many `python -m tui` subprocesses (kills, resumes, load). Where the
# environment forbids bytecode files, each of them would recompile SQLAlchemy and
# friends (~3 s of CPU apiece); let them write and reuse .pyc like an install does.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh emulator per test: `.url`, `.state`, `.api_key` (every scope),
    `.read_only_key`, `.faults` (live settings) and `.set_faults(**changes)`.
    Records exchanges (`.exchanges`) so any test can check conformance."""
    with Emulator(record=True) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _isolated_state(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No test touches the developer's real keyring or state directory."""
    monkeypatch.setenv("SEGSYNC_NO_KEYRING", "1")
    monkeypatch.setenv("SEGSYNC_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster for the whole session (tests/postgres/cluster.py).

    Skipped, with the reason, where the server binaries are missing, so the rest
    of the suite runs anywhere; CI installs them and sets SEGSYNC_REQUIRE_POSTGRES=1,
    which turns that skip into a failure.
    """
    from tests.postgres.cluster import running_cluster, why_unavailable

    reason = why_unavailable()
    if reason is not None:
        if os.environ.get("SEGSYNC_REQUIRE_POSTGRES"):
            pytest.fail(f"SEGSYNC_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)
    with running_cluster() as cluster:
        yield cluster


# Scenario modules in folders other engineers own, marked `slow` here until
# their owners mark them in the files (`pytestmark = pytest.mark.slow`, as every
# other scenario module does): `uv run pytest -m "not slow"` is the quick loop,
# `uv run pytest` still runs everything. The TUI's Pilot tests take 1-10 s
# each: all of tests/tui is slow but its import and message-relay checks.
SLOW_ELSEWHERE = (
    "tests/cli/test_commands.py",
    "tests/cli/test_map.py",
    "tests/cli/test_output.py",
    "tests/tui/",
)
QUICK_ELSEWHERE = ("tests/tui/test_startup.py", "tests/tui/test_relay.py")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SLOW_ELSEWHERE) and not item.nodeid.startswith(QUICK_ELSEWHERE):
            item.add_marker(pytest.mark.slow)
