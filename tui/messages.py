"""Messages workers post, and the relay from engine events to messages.

Workers never touch widgets: they compute off the UI loop and post one of
these; the screen's handler owns every state change (the Harlequin rule).
Each message carries exactly what its handler needs.
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
from connector.findings import Finding
from connector.models import Check, ContactList
from store.records import (
    Column,
    Destination,
    FieldMapping,
    Person,
    RejectedRecord,
    Run,
    RunDetail,
    Segment,
    SegmentCount,
)
from tui.backend import (
    DestinationRow,
    ExportSettings,
    PlanReview,
    WorkspaceChoice,
)


class BackendFailed(Message):
    """A backend call failed; `action` says what was being done, `error` what to do."""

    def __init__(self, action: str, error: str) -> None:
        super().__init__()
        self.action = action
        self.error = error


# -- destinations -------------------------------------------------------------


class DestinationsLoaded(Message):
    def __init__(self, destinations: list[DestinationRow]) -> None:
        super().__init__()
        self.destinations = destinations


class ListCountLoaded(Message):
    """A destination's contact count on SendGrid, or why it could not be read."""

    def __init__(self, destination_id: int, count: int | None, error: str | None) -> None:
        super().__init__()
        self.destination_id = destination_id
        self.count = count
        self.error = error


class AccountListsLoaded(Message):
    def __init__(self, lists: list[ContactList]) -> None:
        super().__init__()
        self.lists = lists


class ConnectionChecked(Message):
    def __init__(self, checks: list[Check]) -> None:
        super().__init__()
        self.checks = checks


class DestinationSaved(Message):
    def __init__(self, destination: DestinationRow) -> None:
        super().__init__()
        self.destination = destination


class ConsentRecorded(Message):
    """``destination``: as stored now, its consent recorded."""

    def __init__(self, destination: Destination) -> None:
        super().__init__()
        self.destination = destination


class DestinationRemoved(Message):
    def __init__(self, destination_id: int) -> None:
        super().__init__()
        self.destination_id = destination_id


# -- segments -----------------------------------------------------------------


class SegmentsLoaded(Message):
    def __init__(self, segments: list[Segment], selected: tuple[str, ...]) -> None:
        super().__init__()
        self.segments = segments
        self.selected = selected


class SegmentCountsLoaded(Message):
    def __init__(self, counts: list[SegmentCount]) -> None:
        super().__init__()
        self.counts = counts


class UnionCounted(Message):
    """Distinct emails in the union of `names`; stale answers are ignored by name."""

    def __init__(self, names: tuple[str, ...], count: int) -> None:
        super().__init__()
        self.names = names
        self.count = count


# -- mapping ------------------------------------------------------------------


class MappingLoaded(Message):
    def __init__(
        self,
        columns: list[Column],
        custom_fields: list[str],
        mapping: FieldMapping,
        custom_fields_error: str | None,
        saved: bool = True,
    ) -> None:
        super().__init__()
        self.columns = columns
        self.custom_fields = custom_fields
        self.mapping = mapping
        self.custom_fields_error = custom_fields_error
        self.saved = saved  # False: a suggestion nobody saved yet


class SampleRowsLoaded(Message):
    def __init__(self, rows: list[dict[str, object]]) -> None:
        super().__init__()
        self.rows = rows


class MappingSaved(Message):
    def __init__(self, mapping: FieldMapping) -> None:
        super().__init__()
        self.mapping = mapping


# -- remembered between launches, workspaces -------------------------------------


class RememberedLoaded(Message):
    """The destination used last from this state folder (None: none remembered)."""

    def __init__(self, destination_id: int | None) -> None:
        super().__init__()
        self.destination_id = destination_id


class SelectionRestored(Message):
    """The segments last picked for a destination in this workspace."""

    def __init__(self, destination_id: int, segments: tuple[str, ...]) -> None:
        super().__init__()
        self.destination_id = destination_id
        self.segments = segments


class WorkspacesLoaded(Message):
    def __init__(self, workspaces: list[WorkspaceChoice]) -> None:
        super().__init__()
        self.workspaces = workspaces


class WorkspaceSwitched(Message):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label


# -- preview: the export's preflight --------------------------------------------


class PreflightChecked(Message):
    """What an export of the plan on screen would meet (None: the check itself
    failed); ``token`` names the choices it was made for, so a stale answer
    is dropped."""

    def __init__(self, findings: list[Finding] | None, token: tuple[object, ...]) -> None:
        super().__init__()
        self.findings = findings
        self.token = token


class CustomFieldsCreated(Message):
    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = names


class CapRaised(Message):
    def __init__(self, destination: Destination) -> None:
        super().__init__()
        self.destination = destination


# -- history ------------------------------------------------------------------


class RunsLoaded(Message):
    def __init__(self, runs: list[Run]) -> None:
        super().__init__()
        self.runs = runs


class RunDetailLoaded(Message):
    """A run, with the first of the rows it rejected (``detail.rejected`` counts all)."""

    def __init__(self, detail: RunDetail, rejected: list[RejectedRecord]) -> None:
        super().__init__()
        self.detail = detail
        self.rejected = rejected


class RejectedExported(Message):
    def __init__(self, path: str, rows: int) -> None:
        super().__init__()
        self.path = path
        self.rows = rows


class ExportApproved(Message):
    """The user confirmed: start this export."""

    def __init__(self, settings: ExportSettings) -> None:
        super().__init__()
        self.settings = settings


class PeopleLoaded(Message):
    """Who a run touched (the run detail's People tab)."""

    def __init__(self, people: list[Person]) -> None:
        super().__init__()
        self.people = people


class PlanToConfirm(Message):
    """A stored plan, read for the apply question; ``guardrail`` is why the
    engine refused it (a yes then allows exactly its removals)."""

    def __init__(self, settings: ExportSettings, review: PlanReview, guardrail: str = "") -> None:
        super().__init__()
        self.settings = settings
        self.review = review
        self.guardrail = guardrail


class ExportStateChanged(Message):
    """A real export started (`runner` set) or ended (None). Posted by the
    export screen and handled by the app, which asks before quitting while
    one runs and cancels it through `runner`."""

    def __init__(self, runner: ExportRunner | None) -> None:
        super().__init__()
        self.runner = runner


class SyncRunsChanged(Message):
    """The syncs run from the Syncs screen that are still running (their names).
    Posted by that screen and handled by the app, which asks before quitting
    while any runs: quitting would otherwise wait, on a blank screen, for the
    export inside it to finish."""

    def __init__(self, running: tuple[str, ...]) -> None:
        super().__init__()
        self.running = running


class ConsentGivenForExport(Message):
    """Consent was just recorded on the way to an export: ask to confirm it next."""

    def __init__(
        self, settings: ExportSettings, to_send: int | None, destination: Destination
    ) -> None:
        super().__init__()
        self.settings = settings
        self.to_send = to_send
        self.destination = destination


# -- export: engine events ----------------------------------------------------


class EngineEvent(Message):
    """One event from the engine, delivered in order, never dropped."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class ExportProgress(Message):
    """Where the current phase stands. Bursts collapse to the newest (`can_replace`),
    so a fast engine cannot flood the UI with repaints."""

    def __init__(self, phase: str, done: int, total: int | None, at: float) -> None:
        super().__init__()
        self.phase = phase
        self.done = done
        self.total = total
        self.at = at

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ExportProgress)


class ExportEnded(Message):
    """The event stream is over: normally, cancelled by the user, or crashed."""

    def __init__(self, cancelled: bool = False, error: str | None = None) -> None:
        super().__init__()
        self.cancelled = cancelled
        self.error = error


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
