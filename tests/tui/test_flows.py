"""Pilot tests: each flow driven by keys at 80x24 against a fake backend."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from connector.consent import CONSENT_STATEMENT
from tests.tui.conftest import SIZE, settle, wait_until
from tests.tui.fakes import PLAN_ID, ROWS, FakeBackend
from tests.tui.rendered import screen_text
from tui.screens.apply_plan import ApplyPlanScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.consent import ConsentScreen
from tui.screens.destination_form import DestinationFormScreen
from tui.screens.destinations import DestinationsScreen
from tui.screens.export import ExportScreen
from tui.screens.history import HistoryScreen
from tui.screens.mapping import MappingScreen
from tui.screens.pickers import ColumnPicker, PathPrompt
from tui.screens.preview import PreviewScreen
from tui.screens.run_detail import RunDetailScreen
from tui.screens.segments import SegmentsScreen
from tui.widgets.event_log import EventLog

pytestmark = pytest.mark.slow  # Pilot flows, 1-10 s each


def text_of(widget: Static) -> str:
    return str(widget.render())


def cells(table: DataTable, row: int) -> list[str]:
    return [str(c) for c in table.get_row_at(row)]


async def test_number_keys_switch_screens_and_dialogs_block_them(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        expected = {
            "1": DestinationsScreen,
            "2": SegmentsScreen,
            "3": MappingScreen,
            "4": PreviewScreen,
            "5": ExportScreen,
            "6": HistoryScreen,
        }
        for key, screen_type in expected.items():
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, screen_type)
        await pilot.press("1", "a")
        assert isinstance(app.screen, DestinationFormScreen)
        await pilot.press("escape", "2")  # the dialog closes first, then keys work again
        assert isinstance(app.screen, SegmentsScreen)


async def test_command_palette_lists_screens_and_actions(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"history")
        await settle(pilot)  # the palette searches in a worker
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)


async def test_destinations_show_counts_and_errors_without_blocking(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        assert cells(table, 0)[:3] == ["  Newsletter", "Newsletter DE", "4,210"]
        assert cells(table, 1)[2] == "error"
        await pilot.press("down")
        detail = text_of(app.screen.query_one("#destination-detail", Static))
        # SendGrid's text shown verbatim: brackets are not eaten as markup
        assert "[access forbidden]" in detail
        assert "No consent yet" in detail


async def test_add_destination_test_connection_and_consent(make_app, backend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, DestinationFormScreen)
        form.query_one("#name", Input).value = "Shop"
        form.query_one("#api_key", Input).value = "SG.bad"
        await pilot.press("ctrl+l")
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)
        checks = text_of(form.query_one("#checks", Static))
        assert "FAIL API key" in checks
        assert "invalid, expired, or revoked" in checks
        form.query_one("#api_key", Input).value = "SG.good"
        form.query_one("#list").value = "list-9"
        await pilot.press("ctrl+t")
        await settle(pilot)
        checks = text_of(form.query_one("#checks", Static))
        assert checks.count("PASS") == 3
        assert form.query_one("#api_key", Input).password  # typed key stays masked
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConsentScreen)  # new destination: consent asked
        await pilot.press("a")
        await settle(pilot)
        assert backend.saved_forms[-1].list_id == "list-9"
        assert backend.consents[-1][0] == 3
        assert "SG.good" not in repr(backend.saved_forms[-1])
        table = app.screen.query_one(DataTable)
        names = [cells(table, r)[0].strip() for r in range(table.row_count)]
        assert "▶ Shop" in names  # the first destination saved becomes the current one
        assert app.destination is not None and app.destination.name == "Shop"


async def test_form_refuses_to_save_without_a_list(make_app, backend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        form = app.screen
        form.query_one("#name", Input).value = "Shop"
        form.query_one("#api_key", Input).value = "SG.good"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, DestinationFormScreen)
        assert "Pick a list" in text_of(form.query_one("#form-error", Static))
        assert backend.saved_forms == []


async def test_remove_asks_first_and_keeps_history(make_app, backend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert backend.removed == []
        await pilot.press("d", "y")
        await settle(pilot)
        assert backend.removed == [2]
        assert app.screen.query_one(DataTable).row_count == 1
        assert len(backend.runs_data) == 3


async def test_segments_count_pick_union_and_preview_in_one_key(make_app, backend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2")  # use Newsletter, open segments
        await settle(pilot)
        screen = app.screen
        table = screen.query_one(DataTable)
        assert [cells(table, r)[2] for r in range(3)] == ["1,240", "388", "error"]
        await pilot.press("space")
        await settle(pilot)
        assert app.selection == ("high_value",)
        assert "union 1,240 distinct emails" in text_of(screen.query_one("#union", Static))
        await pilot.press("down", "space")
        await settle(pilot)
        assert "1,500 distinct emails" in text_of(screen.query_one("#union", Static))
        await pilot.press("down")
        detail = text_of(screen.query_one("#segment-detail", Static))
        assert 'Referenced column "lifetime_valu" not found' in detail
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PreviewScreen)
        assert backend.exports[-1].dry_run
        assert backend.exports[-1].segments == ("high_value", "newsletter_de")


async def test_mapping_flags_a_value_one_over_sendgrids_limit_not_one_at_it(
    make_app, backend: FakeBackend
) -> None:
    """The plan rejects a first name of 51 characters as too_long and keeps one
    of 50: the mapping screen marks exactly the first."""
    rows = [dict(ROWS[0], first_name="A" * 50), dict(ROWS[1], first_name="B" * 51)]

    def sample_rows(columns: tuple[str, ...], limit: int) -> list[dict[str, object]]:
        return [{c: row.get(c) for c in columns} for row in rows[:limit]]

    backend.sample_rows = sample_rows  # type: ignore[method-assign]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "3")
        await settle(pilot)
        first_name = cells(app.screen.query_one(DataTable), 1)
        assert first_name[1] == "first_name"
        assert first_name[2].startswith("AAAA") and ">" not in first_name[2]
        assert first_name[3].startswith("51>50 BBBB")


async def test_mapping_highlights_long_values_and_saves_a_pick(make_app, backend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "3")
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        last_name = cells(table, 2)
        assert last_name[1] == "last_name"
        assert last_name[3].startswith("62>50 ")  # over SendGrid's 50 characters
        await pilot.press("down", "down", "down", "down", "down")  # city
        await pilot.press("space")
        picker = app.screen
        assert isinstance(picker, ColumnPicker)
        await pilot.press("down", "down", "down", "down", "down", "enter")  # country
        await settle(pilot)
        assert backend.mappings[1].reserved["city"] == "country"
        assert app.mapping is not None and app.mapping.reserved["city"] == "country"


async def test_preview_then_export_with_confirmation(make_app, backend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2", "space", "4")
        await settle(pilot)
        counts = app.screen.query_one("#preview-counts", DataTable)
        rows = {cells(counts, r)[0]: cells(counts, r)[1] for r in range(counts.row_count)}
        assert rows["To send"] == "1,340"
        assert rows["No consent"] == "120"
        rejected = app.screen.query_one("#rejected-table", DataTable)
        assert cells(rejected, 0)[1] == "invalid_email"
        assert "anna@example.com" in text_of(app.screen.query_one("#first-body", Static))
        await pilot.press("x")
        await settle(pilot)  # the plan on screen is read for the question
        question = app.screen
        assert isinstance(question, ApplyPlanScreen)
        plan = question.review.plan
        assert plan.counts["to_add"] + plan.counts["to_update"] == 1340
        assert backend.plans_read == [PLAN_ID]
        await pilot.press("y")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ExportScreen)
        assert not backend.exports[-1].dry_run
        assert backend.exports[-1].plan_id == PLAN_ID  # x applies the plan it showed
        batches = screen.query_one("#batches", DataTable)
        assert [cells(batches, r)[3] for r in range(2)] == ["completed", "errored"]
        log = screen.query_one(EventLog).plain
        assert "Waiting 12 s for SendGrid's rate limit" in log
        assert "invalid [email] value" in log
        summary = text_of(screen.query_one("#summary", Static))
        assert summary.startswith("PARTIAL")
        assert "h opens the run" in summary
        await pilot.press("h")
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen)


async def test_export_needs_consent_first(make_app, backend) -> None:
    backend.mappings[2] = backend.mappings[1]  # mapped: only the acknowledgment is missing
    app = make_app(destination="Demo")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2", "space", "4")
        await settle(pilot)
        await pilot.press("x")
        assert isinstance(app.screen, ConsentScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert all(s.dry_run for s in backend.exports)  # nothing sent without consent
        await pilot.press("x", "a")
        await settle(pilot)
        assert backend.consents == [(2, CONSENT_STATEMENT)]  # what `segsync` records too
        assert isinstance(app.screen, ApplyPlanScreen)  # consent given: still asked to send
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ExportScreen)
        assert not backend.exports[-1].dry_run


async def test_cancel_export_midway(make_app, backend: FakeBackend) -> None:
    backend.gate = threading.Event()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2", "space", "4")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen) and app.screen.running)
        screen = app.screen
        assert isinstance(screen, ExportScreen) and screen.running
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # keep going
        assert screen.running
        await pilot.press("c", "y")
        await settle(pilot)
        assert not screen.running
        assert text_of(screen.query_one("#summary", Static)).startswith("CANCELLED")
        assert screen.query_one("#batches", DataTable).row_count == 0


async def test_history_filter_detail_csv_and_resume(make_app, backend, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        screen = app.screen
        table = screen.query_one("#runs", DataTable)
        assert [cells(table, r)[0] for r in range(table.row_count)] == ["7", "6", "5"]
        screen.query_one("#filter-status").value = "interrupted"
        await settle(pilot)
        assert [cells(table, r)[0] for r in range(table.row_count)] == ["6"]
        table.focus()
        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        assert "interrupted" in text_of(detail.query_one("#run-title", Static))
        rejected = detail.query_one("#run-rejected", DataTable)
        assert cells(rejected, 0)[2] == "invalid [email] value"
        await pilot.press("e")
        prompt = app.screen
        assert isinstance(prompt, PathPrompt)
        target = tmp_path / "rejected.csv"
        prompt.query_one(Input).value = str(target)
        await pilot.press("enter")
        await settle(pilot)
        assert target.read_text().splitlines()[1] == "17,x@example.com,invalid [email] value,2"
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ExportScreen)
        assert backend.exports[-1].resume_run == 6
        assert backend.exports[-1].segments == ("high_value", "newsletter_de")


async def test_rerun_uses_the_runs_settings(make_app, backend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        await pilot.press("down", "o")  # run 6: mirror of two segments
        await settle(pilot)
        await pilot.press("R", "y")
        await settle(pilot)
        assert isinstance(app.screen, ExportScreen)
        rerun = backend.exports[-1]
        assert (rerun.segments, rerun.mode, rerun.resume_run) == (
            ("high_value", "newsletter_de"),
            "mirror",
            None,
        )
        await pilot.press("6")
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)  # back from the export, list reloaded
        assert app.screen.query_one("#runs", DataTable).row_count == 3


async def test_backend_errors_are_shown_not_raised(make_app, backend) -> None:
    def broken() -> list:
        raise RuntimeError("database is locked [retry later]")

    backend.runs = broken  # type: ignore[method-assign]
    app = make_app()
    # wide enough that the toast holds the message on one line
    async with app.run_test(size=(160, 40), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        shown = screen_text(app)
        # once, as text: the brackets are not taken for markup
        assert shown.count("RuntimeError: database is locked [retry later]") == 1
        assert isinstance(app.screen, HistoryScreen)


async def test_a_failed_dry_run_says_so_in_the_preview(make_app, backend) -> None:
    from connector.events import RunFinished, RunStarted

    def failing(run_id, settings):
        return [
            RunStarted(run_id, "Newsletter", settings.segments, "upsert", dry_run=True),
            RunFinished(run_id, "failed", {}, "planning failed: bad cast", 0.1),
        ]

    backend.events_for = failing
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2", "space", "4")
        await settle(pilot)
        status = text_of(app.screen.query_one("#preview-status", Static))
        assert "the dry-run failed" in status
        assert "ready" not in status


async def test_looking_at_the_mapping_does_not_plan_the_preview_again(
    make_app, backend: FakeBackend
) -> None:
    """The first visit to Mapping read the saved mapping the plan was already
    made from, and coming back to Preview planned everything a second time."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2", "space", "4")
        await settle(pilot)
        assert [e.dry_run for e in backend.exports] == [True]
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        assert [e.dry_run for e in backend.exports] == [True]
        await pilot.press("i")  # a real change still plans again
        await settle(pilot)
        assert [e.dry_run for e in backend.exports] == [True, True]
