"""Messages workers post.

Workers never touch widgets: they compute off the UI loop and post one of
these; the screen's handler owns every state change (the Harlequin rule).
Each message carries exactly what its handler needs. The relay that turns
engine events into these messages is `tui.relay`.

The records they carry are named for type checking only: importing their
modules builds 35 dataclasses (~50 ms here), which the first screen
would pay before its paint although it holds none until a worker has run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from connector.events import Event
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
    from tui.relay import ExportRunner


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
