"""The relay from the engine's events to the app's messages.

`ExportRunner` runs an export's event stream on its own loop in a thread;
`relay_events` posts each event and the progress it implies. Only the
screens that run exports import this (and with it the engine's event
types), on first visit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from textual.message import Message

from connector.events import (
    BatchSent,
    BatchSkipped,
    ContactsRemoved,
    Event,
    PhaseStarted,
    RunFinished,
)
from tui.messages import EngineEvent, ExportEnded, ExportProgress


@dataclass
class _ProgressTracker:
    """Turns counting events into cumulative progress for the current phase."""

    clock: Callable[[], float]
    phase: str = "planning"
    done: int = 0
    total: int | None = None

    def update(self, event: Event) -> ExportProgress | None:
        if isinstance(event, PhaseStarted):
            self.phase, self.done, self.total = event.phase, 0, event.total
        elif isinstance(event, BatchSent):
            self.done, self.total = event.sent_total, event.to_send
        elif isinstance(event, BatchSkipped):
            self.done += event.contacts
        elif isinstance(event, ContactsRemoved):
            self.done, self.total = event.removed, event.total
        else:
            return None
        return ExportProgress(self.phase, self.done, self.total, self.clock())


PROGRESS_INTERVAL = 0.1
"""Seconds between progress messages: fast enough to look live, slow enough
that a million-row run does not spend its time repainting."""


async def relay_events(
    events: AsyncIterator[Event],
    post: Callable[[Message], object],
    clock: Callable[[], float] = time.monotonic,
    interval: float = PROGRESS_INTERVAL,
) -> None:
    """Post each engine event as an `EngineEvent` (in order, none dropped) and
    the progress they imply as `ExportProgress`, at most one per `interval`
    except at a phase start and when a phase's total is reached."""
    tracker = _ProgressTracker(clock)
    last_posted = float("-inf")
    held: ExportProgress | None = None
    async for event in events:
        if isinstance(event, RunFinished) and held is not None:
            post(held)
            held = None
        post(EngineEvent(event))
        progress = tracker.update(event)
        if progress is not None:
            complete = progress.total is not None and progress.done >= progress.total
            if isinstance(event, PhaseStarted) or complete or progress.at - last_posted >= interval:
                post(progress)
                last_posted, held = progress.at, None
            else:
                held = progress
        if isinstance(event, RunFinished):
            break
    if held is not None:
        post(held)


class ExportRunner:
    """Runs an engine event stream on its own event loop in a thread.

    The engine plans in DuckDB and may block between awaits; on a loop of its
    own it can never freeze the UI. `cancel()` is thread-safe: it sets the
    engine's cancel event, so the engine stops sending, lets requests in
    flight finish, records the run as cancelled and says so in `RunFinished`.
    """

    def __init__(
        self,
        events: Callable[[asyncio.Event], AsyncIterator[Event]],
        post: Callable[[Message], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._events = events
        self._post = post
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel: asyncio.Event | None = None
        self._ready = threading.Event()
        self._cancel_requested = False

    def run(self) -> None:
        """Blocking: call from a thread worker."""
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._cancel = asyncio.Event()
        if self._cancel_requested:
            self._cancel.set()
        self._ready.set()
        try:
            await relay_events(self._events(self._cancel), self._post, self._clock)
        except Exception as error:  # shown in the app, never as a traceback
            self._post(
                ExportEnded(
                    cancelled=self._cancel_requested, error=str(error) or type(error).__name__
                )
            )
            return
        self._post(ExportEnded(cancelled=self._cancel_requested))

    def cancel(self) -> None:
        """Ask the run to stop, from any thread. A run that has already ended
        (it saw the request as it started, or finished on its own) has closed
        its loop: there is nothing left to stop, and that is not an error."""
        self._cancel_requested = True
        if self._ready.wait(timeout=5) and self._loop is not None and self._cancel is not None:
            with contextlib.suppress(RuntimeError):  # "Event loop is closed"
                self._loop.call_soon_threadsafe(self._cancel.set)
