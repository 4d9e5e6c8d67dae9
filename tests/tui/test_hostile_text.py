"""Hostile data through every screen (issue 14 items 1 and 2).

Values from profiles, segments.toml, the history database and SendGrid carry
terminal escapes (OSC 52 writes the clipboard, OSC 0 the window title, OSC 8
makes hidden links, CSI erases lines), bidi overrides and Textual markup. Each
test feeds them through the fake backend, drives the screen that shows them,
and checks the composed screen: nothing raw reaches the terminal, the escape
is shown visibly instead, markup is shown as written, and the app is still
running (a MarkupError would have ended it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from textual.widgets import Select

from connector.events import (
    BatchSent,
    Event,
    JobFinished,
    PhaseStarted,
    PlanReady,
    PreviewReady,
    RetryScheduled,
    RowsRejected,
    RunFinished,
    RunStarted,
)
from connector.events import Warning as EngineWarning
from connector.models import Check, ContactList
from store.records import Column, RejectedRecord, RunDetail, Segment, SegmentCount
from tests.tui.conftest import settle
from tests.tui.fakes import COLUMNS, ROWS, FakeBackend, with_destination
from tests.tui.rendered import raw_controls, screen_text
from tui.backend import (
    BackendError,
    DestinationForm,
    ExportSettings,
)
from tui.screens.destination_form import DestinationFormScreen
from tui.screens.export import ExportScreen
from tui.screens.pickers import ColumnPicker
from tui.screens.run_detail import RunDetailScreen

pytestmark = pytest.mark.slow  # Pilot flows, 1-10 s each

WIDE = (160, 40)  # every column fits, so everything hostile is on screen

CLIPBOARD = "\x1b]52;c;REFUQQ==\x1b\\Ann"
TITLE = "\x1b]0;owned\x07Bob"
LINK = "\x1b]8;;file:///etc/passwd\x1b\\here\x1b]8;;\x1b\\"
ERASE = "\x1b[2K\x1b[1Aok"
BIDI = "invoice\u202efdp.exe"
C1 = "x\x9b31my"
CLICK = "[@click=app.quit]x[/]"
BROKEN = "[/]broken"
LITERAL = "Customers [DE]"


class HostileBackend(FakeBackend):
    """The fake backend with every string a user cannot trust made hostile."""

    def __init__(self) -> None:
        super().__init__()
        first, second = self.destinations_data
        self.destinations_data = [
            with_destination(first, name=LITERAL, list_name=BROKEN, base_url=f"http://{TITLE}"),
            replace(with_destination(second, name=CLIPBOARD, list_name=CLICK), key_hint=BIDI),
        ]
        self.runs_data = [
            replace(
                run,
                destination_name=CLIPBOARD,
                segments=(BROKEN, LINK),
                operator=TITLE,
                message=f"SendGrid said {ERASE} {CLIPBOARD}",
            )
            for run in self.runs_data
        ]
        self.events_for = self._events

    def list_contact_count(self, destination_id: int) -> int:
        raise BackendError(f"SendGrid says: {CLIPBOARD} [/]{ERASE}")

    def account_lists(self, form: DestinationForm) -> list[ContactList]:
        return [ContactList("list-1", BROKEN, 1), ContactList("list-9", CLICK, 2)]

    def test_connection(self, form: DestinationForm) -> list[Check]:
        return [Check("API key", False, f"{CLIPBOARD} {BROKEN}")]

    def segments(self) -> list[Segment]:
        return [
            Segment(BROKEN, f"country = '{TITLE}'", LINK),
            Segment(LITERAL, f"email = '{BIDI}'", CLICK),
        ]

    def segment_counts(self) -> list[SegmentCount]:
        return [
            SegmentCount(BROKEN, None, f"Binder Error: {ERASE} [/]"),
            SegmentCount(LITERAL, 3),
        ]

    def union_count(self, names: tuple[str, ...]) -> int:
        return 3

    def columns(self) -> list[Column]:
        return [*COLUMNS, Column(LINK, "VARCHAR"), Column(BROKEN, "VARCHAR")]

    def custom_fields(self, destination_id: int) -> list[str]:
        return [CLICK]

    def sample_rows(self, columns: tuple[str, ...], limit: int) -> list[dict[str, object]]:
        rows = [dict(row, first_name=CLIPBOARD, last_name=TITLE) for row in ROWS]
        return [{c: row.get(c, BIDI) for c in columns} for row in rows[:limit]]

    def run_detail(self, run_id: int) -> RunDetail:
        detail = super().run_detail(run_id)
        return replace(
            detail, config={"segments": [CLIPBOARD], "mapping": {"email": TITLE}}, host=BIDI
        )

    def rejected_rows(self, run_id: int, limit: int) -> list[RejectedRecord]:
        return [
            RejectedRecord(run_id, 2, LINK, CLIPBOARD, f"SendGrid: {ERASE} {BROKEN}", "sendgrid")
        ]

    def _events(self, run_id: int, settings: ExportSettings) -> Sequence[Event]:
        counts = {"selected": 3, "to_send": 2, "no_email": 1, BROKEN: 1}
        if settings.dry_run:
            return [
                RunStarted(run_id, CLIPBOARD, settings.segments, "upsert", True),
                PlanReady(run_id, counts, 1),
                PreviewReady(
                    run_id,
                    counts,
                    ({"email": "ann@example.com", "first_name": CLIPBOARD, LINK: CLICK},),
                    ((TITLE, "invalid_email", f"{ERASE} {BROKEN}"),),
                    f'{{"contacts":[{{"first_name":"{CLIPBOARD}"}}]}}',
                    (BIDI,),
                ),
                EngineWarning(run_id, f"careful: {TITLE} {BROKEN}"),
                RunFinished(run_id, "dry_run", counts, "", 0.1),
            ]
        return [
            RunStarted(run_id, LITERAL, settings.segments, "upsert", False),
            PlanReady(run_id, counts, 1),
            PhaseStarted(run_id, "uploading", total=2),
            BatchSent(run_id, 1, 2, 100, f"job-{BROKEN}", 2, 2),
            RetryScheduled(run_id, 1, 0.5, f"503 {CLIPBOARD} [/]"),
            JobFinished(run_id, 1, f"job-{BROKEN}", CLICK, 1, 0, 1),
            RowsRejected(run_id, 1, ((TITLE, f"invalid {ERASE} {CLICK}"),)),
            EngineWarning(run_id, f"{LINK} [/]"),
            RunFinished(run_id, "partial", counts, f"SendGrid: {CLIPBOARD} {BROKEN}", 1.0),
        ]


def hostile_app(make_app, **kwargs: object):  # type: ignore[no-untyped-def]
    """The app on the hostile backend, its destination "Customers [DE]" chosen."""
    kwargs.setdefault("destination", LITERAL)
    return make_app(backend=HostileBackend(), **kwargs)


def assert_safe(app, *visible_parts: str) -> str:  # type: ignore[no-untyped-def]
    """No raw control on screen, the app alive, and `visible_parts` shown."""
    assert app.is_running
    assert raw_controls(app) == []
    text = screen_text(app)
    for part in visible_parts:
        assert part in text, f"{part!r} not on screen:\n{text}"
    return text


async def test_destinations_names_lists_errors_and_the_header(make_app) -> None:
    app = hostile_app(make_app)
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await settle(pilot)
        text = assert_safe(app, LITERAL, BROKEN, "▶ Customers [DE]", "http://\\x1b]0;owned\\x07Bob")
        assert "SendGrid says: \\x1b]52;c;REFUQQ==\\x1b\\Ann [/]\\x1b[2K" in text
        assert "segsync — Customers [DE] · sample_data" in text  # the header's subtitle
        await pilot.press("down")
        assert_safe(app, "\\x1b]52;c;REFUQQ==\\x1b\\Ann", CLICK, "invoice\\u202efdp.exe")
        await pilot.press("u")  # the notification names the destination
        await pilot.pause()
        assert_safe(app, "Using \\x1b]52;c;REFUQQ==")


async def test_edit_form_and_list_picker_show_list_names_literally(make_app, backend) -> None:
    hostile = HostileBackend()
    app = make_app(backend=hostile, destination=LITERAL)
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("down", "e")  # edit the destination named with OSC 52
        await settle(pilot)
        form = app.screen
        assert isinstance(form, DestinationFormScreen)
        assert_safe(app, "Edit \\x1b]52;c;REFUQQ==\\x1b\\Ann", CLICK)
        form.query_one("#api_key").value = "SG.key"  # type: ignore[attr-defined]
        await pilot.press("ctrl+l")
        await settle(pilot)
        form.query_one("#list", Select).expanded = True
        await pilot.pause()
        assert_safe(app, "[/]broken (1)", "[@click=app.quit]x[/] (2)")
        form.query_one("#list", Select).expanded = False
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert_safe(app, "FAIL API key  \\x1b]52;c;REFUQQ==\\x1b\\Ann [/]broken")
        form.query_one("#list", Select).value = "list-9"
        await pilot.press("ctrl+s")
        await settle(pilot)
        # the name was shown escaped and left alone: it is saved as stored
        assert hostile.saved_forms[-1].name == CLIPBOARD


async def test_palette_entries_are_never_markup(make_app) -> None:
    app = hostile_app(make_app, destination=None)
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p", *"use dest")
        await settle(pilot)  # the palette searches in a worker
        assert_safe(
            app, "Use destination Customers [DE]", "list [/]broken", "list [@click=app.quit]x[/]"
        )
        await pilot.press(*["backspace"] * 8, *"customers")
        await settle(pilot)
        assert_safe(app, "Use destination Customers [DE]")
        await pilot.press("enter")
        await settle(pilot)
        assert app.destination is not None and app.destination.name == LITERAL


async def test_segment_names_predicates_descriptions_and_errors(make_app) -> None:
    app = hostile_app(make_app)
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        assert_safe(
            app,
            "[/]broken",
            "country = '\\x1b]0;owned\\x07Bob'",
            "\\x1b]8;;file:///etc/passwd",
            "Binder Error: \\x1b[2K\\x1b[1Aok [/]",
        )
        await pilot.press("space", "down")
        assert_safe(app, "Customers [DE]", CLICK, "email = 'invoice\\u202efdp.exe'")


async def test_mapping_sample_values_columns_and_custom_fields(make_app) -> None:
    app = hostile_app(make_app)
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        assert_safe(
            app,
            "\\x1b]52;c;REFUQQ==\\x1b\\Ann",
            "\\x1b]0;owned\\x07Bob",
            "[@click=app.quit]x[/] (custom)",
        )
        await pilot.press("space")
        assert isinstance(app.screen, ColumnPicker)
        assert_safe(app, "[/]broken  VARCHAR", "\\x1b]8;;file:///etc/passwd")


async def test_preview_samples_rejected_rows_body_and_warnings(make_app) -> None:
    app = hostile_app(make_app)
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2", "space", "4")
        await settle(pilot)
        assert_safe(app, "\\x1b]52;c;REFUQQ==", "careful: \\x1b]0;owned\\x07Bob [/]broken")
        await pilot.press("v")
        assert_safe(app, "\\x1b]0;owned\\x07Bob", "\\x1b[2K\\x1b[1Aok [/]broken")
        await pilot.press("v")
        assert_safe(app, '"first_name":"\\x1b]52;c;REFUQQ==', "invoice\\u202efdp.exe")


async def test_export_log_batches_and_summary_quote_sendgrid_safely(make_app) -> None:
    app = hostile_app(make_app)
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2", "space", "4")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)  # the plan is read for the apply question
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ExportScreen)
        assert_safe(
            app,
            "job-[/]broken",
            "Retry 1 in 0.5 s: 503 \\x1b]52;c;REFUQQ==",
            "SendGrid: \\x1b]52;c;REFUQQ==\\x1b\\Ann [/]broken",
        )


async def test_history_and_run_detail(make_app) -> None:
    app = hostile_app(make_app)
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        assert_safe(
            app,
            "[/]broken, \\x1b]8;;file:///etc/passwd",
            "\\x1b]52;c;REFUQQ==\\x1b\\Ann",
            "SendGrid said \\x1b[2K\\x1b[1Aok",
        )
        destinations = app.screen.query_one("#filter-destination", Select)
        destinations.expanded = True  # its options are destination names
        await pilot.pause()
        assert_safe(app, "\\x1b]52;c;REFUQQ==\\x1b\\Ann")
        destinations.value = CLIPBOARD
        destinations.expanded = False
        await settle(pilot)
        assert_safe(app, "Destination \\x1b]52;c;REFUQQ==")
        app.screen.query_one("#runs").focus()
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen)
        assert_safe(app, "\\x1b]0;owned\\x07Bob@invoice\\u202efdp.exe")
        await pilot.press("v", "v")
        assert_safe(app, "SendGrid: \\x1b[2K\\x1b[1Aok [/]broken")


async def test_backend_failures_are_notified_visibly(make_app, backend: FakeBackend) -> None:
    def broken() -> list:
        raise BackendError(f"disk says {CLIPBOARD} {BROKEN} {TITLE}")

    backend.runs = broken  # type: ignore[method-assign]
    app = make_app()
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        assert_safe(app, "disk says \\x1b]52;c;REFUQQ==\\x1b\\Ann [/]broken")
