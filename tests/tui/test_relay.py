"""The engine-event relay: order kept, progress coalesced, cancel honoured."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from connector.events import BatchSent, Event, PhaseStarted, RunFinished, RunStarted
from tui.messages import EngineEvent, ExportEnded, ExportProgress, ExportRunner, relay_events


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


async def test_progress_messages_replace_each_other_but_not_events() -> None:
    older = ExportProgress("uploading", 10, 100, 1.0)
    newer = ExportProgress("uploading", 20, 100, 2.0)
    assert older.can_replace(newer)
    assert not older.can_replace(EngineEvent(RunStarted(1, "n", (), "upsert", False)))
    assert not EngineEvent(RunStarted(1, "n", (), "upsert", False)).can_replace(older)


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
