"""Pilot tests of the changeset in the app: the plan on screen is what x applies,
the question names who would be removed, a guardrail refusal asks for an
explicit allowance, a run's people and its undo, and explaining a person."""

from __future__ import annotations

import pytest

from connector.events import RunFinished, RunStarted
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import PLAN_ID, FakeBackend, export_events, preview_events
from tests.tui.rendered import screen_text
from tui.backend import ExportSettings
from tui.screens.apply_plan import ApplyPlanScreen
from tui.screens.explain import ExplainScreen
from tui.screens.export import ExportScreen
from tui.screens.run_detail import RunDetailScreen

pytestmark = pytest.mark.slow  # Pilot flows, 1-10 s each

GUARDRAIL = (
    "refused before any request: this run would remove 25 people of 200 on the list, "
    "over the limit of 20 per run"
)


async def preview_then_x(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("enter", "2", "space", "4")
    await settle(pilot)
    await pilot.press("x")
    await settle(pilot)


async def test_the_question_names_who_the_plan_would_remove(make_app, backend: FakeBackend):
    backend.plan_removals = 25
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await preview_then_x(pilot)
        assert isinstance(app.screen, ApplyPlanScreen)
        text = screen_text(app)
        assert "remove" in text and "25" in text
        assert "gone0@example.com" in text and "gone9@example.com" in text
        assert "gone10@example.com" not in text and "and 15 more" in text
        await pilot.press("n")
        await settle(pilot)
        assert [s.dry_run for s in backend.exports] == [True]  # nothing applied on no


async def test_a_guardrail_refusal_asks_before_allowing_exactly_those_removals(
    make_app, backend: FakeBackend
):
    backend.plan_removals = 25

    def events(run_id: int, settings: ExportSettings):  # type: ignore[no-untyped-def]
        if settings.dry_run:
            return preview_events(run_id, settings)
        if settings.allow_removals is None:
            return [
                RunStarted(run_id, "Newsletter", settings.segments, "mirror", False),
                RunFinished(run_id, "refused", {"sent": 0, "to_remove": 25}, GUARDRAIL),
            ]
        return export_events(run_id, settings)

    backend.events_for = events
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await preview_then_x(pilot)
        await pilot.press("y")
        await settle(pilot)
        question = app.screen
        assert isinstance(question, ApplyPlanScreen) and question.guardrail == GUARDRAIL
        assert "Over the guardrail" in screen_text(app)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ExportScreen)
        applied = backend.exports[-1]
        assert (applied.plan_id, applied.allow_removals) == (PLAN_ID, 25)
        assert [s.allow_removals for s in backend.exports if not s.dry_run] == [None, 25]


async def test_run_detail_lists_the_people_and_undoes_the_run(make_app, backend: FakeBackend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        app.screen.query_one("#filter-status").value = "interrupted"  # run 6
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        people = detail.query_one("#run-people")
        rows = [[str(c) for c in people.get_row_at(r)] for r in range(people.row_count)]
        assert [r[:2] for r in rows] == [
            ["added", "anna@example.com"],
            ["removed", "old@example.com"],
            ["rejected", "bad@@example"],
        ]
        await pilot.press("z")
        await settle(pilot)
        question = app.screen
        assert isinstance(question, ApplyPlanScreen)
        assert question.review.plan.kind == "undo" and question.review.plan.undo_of == 6
        assert "Undo run 6 on" in screen_text(app)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ExportScreen)
        assert backend.exports[-1].plan_id == PLAN_ID + 1
        await settle(pilot)
        assert "undo of run 6" in screen_text(app)  # the run line said "upsert"


async def test_slash_in_history_explains_a_person(make_app, backend: FakeBackend):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter", "6")
        await settle(pilot)
        await pilot.press("slash")
        await settle(pilot)
        assert isinstance(app.screen, ExplainScreen)
        await pilot.press(*"anna@example.com", "enter")
        await settle(pilot)
        assert backend.explained == ["anna@example.com"]
        text = screen_text(app)
        assert "values changed, so it would be updated" in text
        assert "since run 3" in text
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, ExplainScreen)
