"""Fixtures for scheduled syncs: the engine tests' workspace and destination,
a clock the test moves by hand, and a runner wired to both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.engine import EngineSettings
from connector.syncs import SyncRunner, create_sync
from store.history import History
from store.paths import history_path
from tests.engine.conftest import ExportEnv, export_env  # noqa: F401 (the fixture)


class Clock:
    """``now`` for the scheduler: starts at a fixed instant and moves only when told."""

    def __init__(self, start: datetime) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **delta: float) -> datetime:
        self.value += timedelta(**delta)
        return self.value

    def set(self, value: datetime) -> datetime:
        self.value = value
        return value


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 2, 12, 0, 0, tzinfo=UTC))


def history_of(env: ExportEnv) -> History:
    return History(history_path(env.state_dir))


def make_runner(env: ExportEnv, clock: Clock, **kwargs: Any) -> SyncRunner:
    lines: list[str] = []
    runner = SyncRunner(
        history_of(env),
        env.state_dir,
        now=clock,
        settings=EngineSettings(poll_interval=0.02, poll_max_interval=0.1),
        log=lines.append,
        **kwargs,
    )
    runner.lines = lines  # type: ignore[attr-defined]
    return runner


def add_sync(env: ExportEnv, clock: Clock, name: str = "nightly", **kwargs: Any):
    config: dict[str, Any] = {"segments": ["germany"], "every": None, "cron": None}
    config.update(kwargs)
    if not (config["every"] or config["cron"] or config.get("on_refresh")):
        config["cron"] = "0 2 * * *"
    return create_sync(
        history_of(env),
        name=name,
        destination="news",
        workspace=env.workspace,
        now=clock(),
        timezone=config.pop("timezone", "UTC"),
        **config,
    )
