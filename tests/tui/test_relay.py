"""The engine-event relay: order kept, progress coalesced, cancel honoured."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from textual.app import App

from connector.events import BatchSent, Event, PhaseStarted, RunFinished, RunStarted
from tui.messages import EngineEvent, ExportEnded, ExportProgress
from tui.relay import ExportRunner, relay_events


async def stream(events: list[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event


def batches(n: int) -> list[Event]:
    return [BatchSent(1, seq, 10, 100, f"job-{seq}", seq * 10, n * 10) for seq in range(1, n + 1)]


async def test_every_event_is_relayed_in_order_and_progress_is_throttled() -> None:
    events: list[Event] = [
        RunStarted(1, "news", ("a",), "upsert", False),
        PhaseStarted(1, "uploading", total=1000),
        *batches(100),
        RunFinished(1, "succeeded"),
    ]
    posted: list[object] = []
    clock = iter(i * 0.01 for i in range(10_000))  # 10 ms between events
    await relay_events(stream(events), posted.append, clock=lambda: next(clock))
    relayed = [m.event for m in posted if isinstance(m, EngineEvent)]
    assert relayed == events
    progress = [m for m in posted if isinstance(m, ExportProgress)]
    # one at the phase start, about one per 100 ms, and the final total
    assert 5 <= len(progress) <= 15
    assert (progress[-1].done, progress[-1].total) == (1000, 1000)
    assert posted.index(progress[-1]) < len(posted) - 1  # final progress before RunFinished


class Recorder(App[None]):
    """Records the export messages it handles, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.handled: list[object] = []

    def on_export_progress(self, message: ExportProgress) -> None:
        self.handled.append(message.done)

    def on_engine_event(self, message: EngineEvent) -> None:
        self.handled.append(message.event)


async def test_a_burst_of_progress_collapses_to_the_newest_and_no_event_is_dropped() -> None:
    started = RunStarted(1, "news", ("a",), "upsert", False)
    finished = RunFinished(1, "succeeded")
    app = Recorder()
    async with app.run_test() as pilot:
        # posted faster than handled: one burst, nothing processed in between
        for message in (
            ExportProgress("uploading", 10, 100, 1.0),
            ExportProgress("uploading", 20, 100, 2.0),
            EngineEvent(started),
            ExportProgress("uploading", 30, 100, 3.0),
            ExportProgress("uploading", 40, 100, 4.0),
            ExportProgress("uploading", 50, 100, 5.0),
            EngineEvent(finished),
        ):
            app.post_message(message)
        await pilot.pause()
    assert app.handled == [20, started, 50, finished]


def test_runner_cancel_sets_the_engines_cancel_event_from_another_thread() -> None:
    seen_cancel = threading.Event()

    async def engine(cancel: asyncio.Event) -> AsyncIterator[Event]:
        yield RunStarted(1, "news", ("a",), "upsert", False)
        await cancel.wait()
        seen_cancel.set()
        yield RunFinished(1, "cancelled", {}, "cancelled by the user")

    posted: list[object] = []
    runner = ExportRunner(engine, posted.append)
    thread = threading.Thread(target=runner.run)
    thread.start()
    runner.cancel()
    thread.join(timeout=5)
    assert seen_cancel.is_set()
    finished = [m.event for m in posted if isinstance(m, EngineEvent)][-1]
    assert isinstance(finished, RunFinished) and finished.status == "cancelled"
    assert isinstance(posted[-1], ExportEnded) and posted[-1].cancelled


def test_runner_reports_a_refusal_as_text() -> None:
    async def engine(cancel: asyncio.Event) -> AsyncIterator[Event]:
        raise ValueError("Destination 'news' has no data-privacy acknowledgment.")
        yield  # pragma: no cover

    posted: list[object] = []
    ExportRunner(engine, posted.append).run()
    assert isinstance(posted[-1], ExportEnded)
    assert posted[-1].error == "Destination 'news' has no data-privacy acknowledgment."


def test_cancel_after_the_run_ended_is_not_an_error() -> None:
    """Cancel pressed as a run ends (or seen by it as it starts) found its loop
    closed and raised "Event loop is closed" (this file's cancel test flaked on it)."""

    async def engine(cancel: asyncio.Event) -> AsyncIterator[Event]:
        yield RunFinished(1, "succeeded", {}, "")

    posted: list[object] = []
    runner = ExportRunner(engine, posted.append)
    runner.run()
    runner.cancel()  # nothing left to stop
    assert isinstance(posted[-1], ExportEnded)
