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
