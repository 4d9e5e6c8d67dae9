"""Help, quitting and the palette (issue 15): every screen explains itself on
`?`/F1, `q` quits but asks while an export runs, ctrl+q is in the footer,
the palette's Keys panel closes with Escape, every action is in the palette."""

from __future__ import annotations

import threading

import pytest
from textual.message import Message
from textual.widgets import HelpPanel

from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeBackend
from tests.tui.rendered import screen_text
from tui.messages import ExportEnded
from tui.screens.confirm import ConfirmScreen
from tui.screens.destination_form import DestinationFormScreen
from tui.screens.destinations import DestinationsScreen
from tui.screens.export import ExportScreen
from tui.screens.help import HelpScreen
from tui.screens.history import HistoryScreen
from tui.screens.run_detail import RunDetailScreen

pytestmark = pytest.mark.slow  # Pilot flows, 1-10 s each


@pytest.mark.parametrize(
    ("key", "title", "expected"),
    [
        ("1", "Destinations", ("consent is recorded", "del", "Remove", "c", "Consent")),
        ("2", "Segments", ("segments.toml", "^a", "All/none")),
        ("3", "Mapping", ("too long for SendGrid", "space", "Pick column")),
        ("4", "Preview", ("dry run", "o", "Mode", "i", "Incremental")),
        ("5", "Export", ("each batch", "c", "Cancel export")),
        ("6", "History", ("newest first", "o", "Open run", "s", "Status")),
        ("7", "Syncs", ("run-due", "p", "Pause/resume", "r", "Run now")),
    ],
)
async def test_question_mark_explains_each_screen(make_app, key, title, expected) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot)
        screen = app.screen
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.help_text)
        assert text.startswith(title)
        for part in expected:
            assert part in text
        assert "ctrl+p" in text and "1-7" in text  # the keys every screen shares
        await pilot.press("escape")
        assert app.screen is screen
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert app.screen is screen


async def test_help_on_dialogs_and_pushed_screens(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        assert isinstance(app.screen, DestinationFormScreen)
        await pilot.press("f1")  # ? would be typed into the focused field
        assert isinstance(app.screen, HelpScreen)
        assert "ctrl+l" in str(app.screen.help_text)
        await pilot.press("escape", "escape")
        await pilot.press("6")
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen)
        await pilot.press("question_mark")
        text = str(app.screen.help_text)
        assert text.startswith("Run detail")
        assert "Rejected→CSV" in text and "Re-run" in text


async def test_q_quits_at_once_when_nothing_runs(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "^q Quit" in screen_text(app).splitlines()[-1]  # the footer shows how
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0
        assert not app.is_running


async def test_q_in_a_dialog_does_not_quit(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "d")  # remove? asks
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, ConfirmScreen)


async def test_q_during_an_export_asks_then_cancels_and_quits(
    make_app, backend: FakeBackend
) -> None:
    backend.gate = threading.Event()  # the export waits before its first batch
    ended: list[ExportEnded] = []

    def record(message: Message) -> None:
        if isinstance(message, ExportEnded):
            ended.append(message)

    app = make_app()
    async with app.run_test(size=SIZE, message_hook=record) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2", "space", "4")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)  # the plan is read for the apply question
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, ExportScreen) and app.screen.running
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        assert "export is running" in app.screen.question
        await pilot.press("n")  # keep going
        assert app.is_running and isinstance(app.screen, ExportScreen)
        await pilot.press("q", "y")
        await app.workers.wait_for_complete()
        for _ in range(10):
            if not app.is_running:
                break
            await pilot.pause()
        assert not app.is_running
    assert [m.cancelled for m in ended if m.cancelled] == [True]  # cancelled, not cut off
    assert not backend.exports[-1].dry_run


async def test_palette_keys_panel_closes_with_escape(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p", *"keys")
        await settle(pilot)  # the palette searches in a worker
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DestinationsScreen)
        assert app.screen.query(HelpPanel)
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.query(HelpPanel)
        await pilot.press("6")
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen)
        await pilot.press("escape")  # no panel: Escape reaches the screen (back)
        assert isinstance(app.screen, HistoryScreen)


@pytest.mark.parametrize(
    ("screen_keys", "query", "command"),
    [
        ((), "remove", "Remove"),
        (("6",), "help", "Help for this screen"),
        (("6", "o"), "csv", "Rejected→CSV"),
        (("6", "o"), "re-run", "Re-run"),
    ],
)
async def test_palette_has_the_screens_actions(make_app, screen_keys, query, command) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key in screen_keys:
            await pilot.press(key)
            await settle(pilot)
        await pilot.press("ctrl+p", *query)
        await settle(pilot)  # the palette searches in a worker
        assert command in screen_text(app)


async def test_palette_help_opens_the_screens_help(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p", *"help for")
        await settle(pilot)  # the palette searches in a worker
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert str(app.screen.help_text).startswith("Destinations")


async def test_the_quit_question_goes_when_the_export_ends(make_app, backend: FakeBackend) -> None:
    backend.gate = threading.Event()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2", "space", "4")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)  # the plan is read for the apply question
        await pilot.press("y")
        await pilot.pause()
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        backend.gate.set()  # the export goes on to its end while the question is open
        await settle(pilot)
        assert app.is_running
        assert isinstance(app.screen, ExportScreen) and not app.screen.running
        await pilot.press("q")  # nothing runs: no question
        await pilot.pause()
        assert not app.is_running
