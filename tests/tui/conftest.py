"""Fixtures for the terminal app: a fake backend with fixed data, a fixed
clock, and the app at 80x24 (the size every flow must work at)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.tui.fakes import FakeBackend
from tui.app import SegsyncApp

SIZE = (80, 24)


class TickingClock:
    """Each reading is one second after the previous: rows/s and ETA come out
    the same on every run, however fast the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def make_app(backend: FakeBackend) -> Callable[..., SegsyncApp]:
    def make(**kwargs: object) -> SegsyncApp:
        return SegsyncApp(kwargs.pop("backend", backend), clock=TickingClock(), **kwargs)

    return make


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Wait until no worker runs and every message they posted is handled
    (never a sleep): a handler may start another worker, hence the loop."""
    for _ in range(20):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if not any(worker.is_running for worker in pilot.app.workers):
            await pilot.pause()
            return


async def wait_until(pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait for what a worker thread does on its own time (an export held at a
    gate cannot settle): poll ``condition`` between message rounds, fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the app never got there"
        await pilot.pause(0.01)
