"""Scheduled syncs in the app (issue 13): the Syncs screen lists them, adds
one from the current choices, pauses, resumes and runs one now; a banner at
start names the syncs that failed until it is acknowledged."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from textual.message import Message
from textual.notifications import Notification, Notify
from textual.widgets import DataTable, Input, Select, Static

from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeBackend, sync_alert
from tests.tui.rendered import raw_controls, screen_text
from tui.screens.confirm import ConfirmScreen
from tui.screens.destinations import DestinationsScreen
from tui.screens.run_detail import RunDetailScreen
from tui.screens.sync_form import SyncFormScreen
from tui.screens.syncs import SyncsScreen
from tui.widgets.sync_banner import SyncBanner, describe_alerts

pytestmark = pytest.mark.slow  # Pilot flows, 1-10 s each


def cells(table: DataTable, row: int) -> list[str]:
    return [str(c) for c in table.get_row_at(row)]


def rows(table: DataTable) -> list[list[str]]:
    return [cells(table, r) for r in range(table.row_count)]


class Notes:
    """Records every notification the app shows (a message hook: the toasts
    themselves are drawn over the screen and wrap at 80 columns)."""

    def __init__(self) -> None:
        self.shown: list[Notification] = []

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.shown.append(message.notification)

    def text(self) -> str:
        return "\n".join(f"{n.title}: {n.message}" for n in self.shown)


ALERTS = [
    sync_alert(1, "nightly", "refused", datetime(2026, 11, 28, 2, 0), 12, "would remove 420"),
    sync_alert(1, "nightly", "failed", datetime(2026, 11, 27, 2, 0), 11, "timeout"),
    sync_alert(2, "hourly_de", "rejected", datetime(2026, 11, 28, 1, 0), 13, "9 % rejected"),
]


NEXT = ("11-29 02:00", "no")


async def test_syncs_screen_lists_last_and_next_runs(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        assert isinstance(app.screen, SyncsScreen)
        table = app.screen.query_one(DataTable)
        assert rows(table) == [
            ["nightly", "Newsletter", "cron 0 2 * * * (Europe/Berlin)", "refused", "7", *NEXT],
            ["hourly_de", "Demo", "every 1h", "succeeded", "5", "11-28 10:00", "no"],
            ["on_change", "Newsletter", "on refresh", "never", "-", "- (paused)", "paused"],
        ]
        assert table.get_row_at(0)[3].style == "red"  # run-status colours
        assert table.get_row_at(1)[3].style == "green"
        detail = str(app.screen.query_one("#sync-detail", Static).render())
        assert "refused at 2026-11-28 02:00 (run 7: Enter opens it)" in detail
        assert "at most 100 allowed" in detail and "1 failure not acknowledged" in detail
        await pilot.press("down", "down")
        detail = str(app.screen.query_one("#sync-detail", Static).render())
        assert "Not run yet." in detail
        assert "7 Syncs" in screen_text(app).splitlines()[1]  # its tab, at 80 columns


async def test_no_syncs_says_how_to_add_one(make_app, backend: FakeBackend) -> None:
    backend.syncs_data = []
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        text = screen_text(app)
        assert "No syncs yet. Press a to add one" in text
        assert "segsync syncs add NAME --destination DEST" in text


async def test_enter_opens_the_last_run_in_history(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen)
        assert app.screen.run_id == 7
        assert app.current_mode == "history"


async def test_add_a_sync_from_the_current_choices(make_app, backend: FakeBackend) -> None:
    notes = Notes()
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2", "space", "7")  # Newsletter, high_value
        await settle(pilot)
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, SyncFormScreen)
        what = str(form.query_one("#sync-what", Static).render())
        assert "Sends high_value to Newsletter (list Newsletter DE), upsert" in what
        await pilot.press(*"weekly")
        form.query_one("#sync-trigger", Select).value = "cron"
        await pilot.pause()
        form.query_one("#sync-when", Input).value = "0 6 * * 1"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, SyncsScreen)
        added = backend.added_syncs[-1]
        assert (added.name, added.destination_id, added.segments) == ("weekly", 1, ("high_value",))
        assert (added.cron, added.every, added.on_refresh, added.mode) == (
            "0 6 * * 1",
            None,
            False,
            "upsert",
        )
        names = [r[0] for r in rows(app.screen.query_one(DataTable))]
        assert names == ["nightly", "hourly_de", "on_change", "weekly"]
        assert "Added sync weekly: cron 0 6 * * 1" in notes.text()


async def test_on_refresh_needs_no_value(make_app, backend: FakeBackend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2", "space", "7")
        await settle(pilot)
        await pilot.press("a", *"changes")
        form = app.screen
        form.query_one("#sync-trigger", Select).value = "refresh"
        await pilot.pause()
        assert form.query_one("#sync-when", Input).disabled
        await pilot.press("enter")  # Enter in the name field saves
        await settle(pilot)
        assert backend.added_syncs[-1].on_refresh
        assert backend.added_syncs[-1].every is None and backend.added_syncs[-1].cron is None


async def test_add_refused_shows_why_in_the_form(make_app, backend: FakeBackend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2", "space", "7")
        await settle(pilot)
        await pilot.press("a")
        form = app.screen
        error = form.query_one("#sync-form-error", Static)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Give the sync a name" in str(error.render())
        await pilot.press(*"nightly")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Say how often" in str(error.render())
        assert backend.added_syncs == []  # nothing to ask the backend yet
        form.query_one("#sync-when", Input).value = "6h"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form  # still open, with the backend's reason
        assert "A sync named nightly exists" in str(error.render())
        form.query_one("#sync-name", Input).value = "six"
        form.query_one("#sync-when", Input).value = "6 hours"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        assert "not an interval like 30m, 6h or 1d" in str(error.render())
        assert len(backend.syncs_data) == 3
        await pilot.press("escape")
        assert isinstance(app.screen, SyncsScreen)


async def test_add_needs_a_destination_and_segments(make_app, backend: FakeBackend) -> None:
    notes = Notes()
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, SyncsScreen)  # no form: nothing to schedule yet
        assert "Pick a destination first" in notes.text()


async def test_pause_and_resume(make_app, backend: FakeBackend) -> None:
    notes = Notes()
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        await pilot.press("p")
        await settle(pilot)
        assert backend.syncs_data[0].paused
        assert cells(table, 0)[5:] == ["- (paused)", "paused"]
        assert "Paused nightly" in notes.text()
        await pilot.press("p")
        await settle(pilot)
        assert not backend.syncs_data[0].paused
        assert cells(table, 0)[5:] == ["11-29 02:00", "no"]
        assert "Resumed nightly" in notes.text()


async def test_run_now_shows_running_then_the_result(make_app, backend: FakeBackend) -> None:
    backend.sync_gate = threading.Event()
    notes = Notes()
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        await pilot.press("down", "r")
        await pilot.pause()
        assert cells(table, 1)[3] == "running…"
        await pilot.press("r")  # a second r while it runs does not start another
        await pilot.pause()
        assert "hourly_de is running already" in notes.text()
        backend.sync_gate.set()
        await settle(pilot)
        assert backend.syncs_run == [2]
        assert cells(table, 1)[3:5] == ["succeeded", "21"]
        assert "Sync hourly_de: hourly_de: succeeded (run 21)" in notes.text()
        assert notes.shown[-1].severity == "information"


async def test_q_while_a_sync_runs_asks_then_cancels_it_and_quits(
    make_app, backend: FakeBackend
) -> None:
    """Quitting during a run-now used to leave a blank terminal until the
    export inside it finished (its worker thread is joined at exit)."""
    backend.sync_gate = threading.Event()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("down", "r")
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "sync is running (hourly_de)" in app.screen.question
        await pilot.press("n")  # keep going
        assert app.is_running and backend.sync_cancels == 0
        await pilot.press("q", "y")
        await app.workers.wait_for_complete()
        for _ in range(20):
            if not app.is_running:
                break
            await pilot.pause()
        assert not app.is_running
    assert backend.sync_cancels == 1 and backend.syncs_run == [2]


async def test_a_failed_run_now_is_an_error(make_app, backend: FakeBackend) -> None:
    backend.sync_result = "rejected"
    notes = Notes()
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        assert cells(table, 0)[3:5] == ["rejected", "21"]
        assert notes.shown[-1].severity == "error"
        assert "rejected by SendGrid" in notes.shown[-1].message


async def test_banner_names_failed_syncs_until_acknowledged(make_app, backend: FakeBackend) -> None:
    backend.sync_alerts_data = list(ALERTS)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, DestinationsScreen)
        lines = screen_text(app).splitlines()
        assert lines[1].startswith("! Sync nightly refused on 11-28 02:00 (run 12); 1 more")
        assert lines[1].endswith("— 7 syncs, k dismiss")
        await pilot.press("7")
        await settle(pilot)
        assert app.screen.query_one(SyncBanner).display  # on every screen
        detail = app.screen.query_one("#sync-detail", Static)
        assert "1 failure not acknowledged" in str(detail.render())
        await pilot.press("k")
        await settle(pilot)
        assert backend.acknowledged == [(1, 2)]
        assert not app.screen.query_one(SyncBanner).display
        assert "not acknowledged" not in str(detail.render())  # read again once recorded
        await pilot.press("1")
        await settle(pilot)
        assert "Sync nightly" not in screen_text(app)
        await pilot.press("k")  # nothing left to acknowledge: k does nothing
        await settle(pilot)
        assert backend.acknowledged == [(1, 2)]


async def test_no_banner_without_failures(make_app, backend: FakeBackend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert not app.screen.query_one(SyncBanner).display
        assert "acknowledge" not in screen_text(app)
        await pilot.press("k")
        await settle(pilot)
        assert backend.acknowledged == []


def test_banner_text_gives_the_date_only_when_not_today() -> None:
    today = datetime(2026, 11, 28, 9, 30)
    assert describe_alerts(ALERTS, today).plain == "Sync nightly refused at 02:00 (run 12); 1 more"
    one = [ALERTS[1]]
    assert describe_alerts(one, today).plain == "Sync nightly failed on 11-27 02:00 (run 11)"


HOSTILE = "\x1b]52;c;REFUQQ==\x1b\\[@click=app.quit]x[/]\u202e"


async def test_names_and_messages_from_data_are_never_markup(make_app, backend) -> None:
    backend.syncs_data = [
        s.__class__(**{**s.__dict__, "name": HOSTILE, "last_message": HOSTILE})
        for s in backend.syncs_data[:1]
    ]
    backend.sync_alerts_data = [sync_alert(1, HOSTILE, "failed", datetime(2026, 1, 1), 3, "")]
    notes = Notes()
    app = make_app()
    async with app.run_test(size=(160, 40), message_hook=notes) as pilot:
        await settle(pilot)
        assert "[@click=app.quit]x[/]" in screen_text(app)  # the banner
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        text = screen_text(app)
        assert text.count("[@click=app.quit]x[/]") >= 3  # banner, table, detail
        assert "\\x1b]52" in text and "\\u202e" in text
        assert raw_controls(app) == []
        assert app.is_running
