"""The Preview shows everything an export checks before sending, "ready"
only when an export would start, and each problem with its fix in place."""

from __future__ import annotations

from dataclasses import replace

from textual.widgets import Input, Static

from connector.findings import Finding
from store.records import FieldMapping
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import PLAN_ID, FakeBackend
from tests.tui.rendered import screen_text
from tui.screens.apply_plan import ApplyPlanScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.mapping import MappingScreen
from tui.screens.pickers import PathPrompt
from tui.screens.preview import PreviewScreen

CAP = Finding(
    "cap",
    "would send 1,340 contacts, over the cap of 1,000",
    "this export would send 1,340 contacts, over the cap of 1,000",
    amount=1340,
)


def status(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one("#preview-status", Static).render())


def panel(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one("#preflight", Static).render())


async def open_preview(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("enter", "2", "space", "4")
    await settle(pilot)
    assert isinstance(pilot.app.screen, PreviewScreen)


def dry_runs(backend: FakeBackend) -> int:
    return sum(1 for s in backend.exports if s.dry_run)


async def test_ready_means_the_preflight_passed_for_the_plan_on_screen(make_app, backend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_preview(pilot)
        assert backend.preflights[-1].plan_id == PLAN_ID
        assert "ready" in status(app) and "not ready" not in status(app)
        assert panel(app) == ""


async def test_over_the_cap_is_shown_before_x_and_c_raises_it(make_app, backend) -> None:
    row = backend.destinations_data[0]
    backend.destinations_data[0] = replace(row, destination=replace(row.destination, cap=1000))
    backend.account_findings = [CAP]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_preview(pilot)
        assert "not ready" in status(app)
        assert "over the cap of 1,000" in panel(app) and "c raises the cap" in panel(app)
        assert "over the cap of 1,000" in screen_text(app)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, PreviewScreen)  # refused here, not by the engine
        assert all(s.dry_run for s in backend.exports)
        await pilot.press("c")
        prompt = app.screen
        assert isinstance(prompt, PathPrompt)
        assert prompt.query_one(Input).value == "1340"
        await pilot.press("enter")
        await settle(pilot)
        assert backend.caps == [(1, 1340)]
        assert app.destination is not None and app.destination.cap == 1340
        assert "ready" in status(app) and "not ready" not in status(app)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ApplyPlanScreen)


async def test_missing_custom_fields_f_creates_them_and_plans_again(make_app, backend) -> None:
    backend.account_findings = [
        Finding(
            "custom_fields", "custom field(s) missing on the account: tier", "", names=("tier",)
        )
    ]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_preview(pilot)
        assert "f creates them" in panel(app)
        before = dry_runs(backend)
        await pilot.press("f")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert backend.created_fields == [1]
        assert dry_runs(backend) == before + 1  # field ids go into the plan: planned again
        assert "not ready" not in status(app) and panel(app) == ""


async def test_removals_over_the_limit_a_offers_exactly_that_allowance(make_app, backend) -> None:
    backend.plan_removals = 420
    backend.account_findings = [
        Finding(
            "removals",
            "would remove 420, over the limit of 100 per run",
            "this run would remove 420 people, over the limit of 100 per run",
            amount=420,
        )
    ]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_preview(pilot)
        assert "would remove 420" in panel(app) and "a allows" in panel(app)
        await pilot.press("a")
        await settle(pilot)
        question = app.screen
        assert isinstance(question, ApplyPlanScreen) and question.guardrail
        await pilot.press("y")
        await settle(pilot)
        applied = backend.exports[-1]
        assert not applied.dry_run
        assert (applied.plan_id, applied.allow_removals) == (PLAN_ID, 420)


async def test_no_consent_choice_blocks_x_and_m_opens_mapping(make_app, backend) -> None:
    backend.mappings[1] = FieldMapping(email="email")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_preview(pilot)
        assert "not ready" in status(app)
        assert "no consent column" in panel(app) and "m: choose on the consent row" in panel(app)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, PreviewScreen)
        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, MappingScreen)
        detail = str(app.screen.query_one("#mapping-detail", Static).render())
        assert detail.startswith("No consent column")  # the cursor is on the row to fix


async def test_a_recorded_no_consent_filter_is_a_warning_and_still_ready(make_app, backend) -> None:
    backend.mappings[1] = FieldMapping(email="email", no_consent_filter=True)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_preview(pilot)
        assert "no consent filter" in panel(app)
        assert "ready" in status(app) and "not ready" not in status(app)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ApplyPlanScreen)


async def test_privacy_acknowledgment_is_shown_and_x_asks_for_it(make_app, backend) -> None:
    backend.mappings[2] = backend.mappings[1]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "enter", "2", "space", "4")
        await settle(pilot)
        assert "x asks for it" in panel(app)
        assert "not ready" not in status(app)
        await pilot.press("x")
        await settle(pilot)
        from tui.screens.consent import ConsentScreen

        assert isinstance(app.screen, ConsentScreen)


async def test_without_a_saved_mapping_the_preview_says_so(make_app, backend) -> None:
    backend.mappings.clear()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_preview(pilot)
        assert "no field mapping saved" in panel(app)
        assert "not ready" in status(app)


async def test_a_fix_made_elsewhere_is_seen_when_back_on_preview(make_app, backend) -> None:
    backend.account_findings = [
        Finding("destination", "the API key was refused by SendGrid", "key refused")
    ]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_preview(pilot)
        assert "key was refused" in panel(app) and "1, then e edits" in panel(app)
        backend.account_findings = []  # the key was replaced on Destinations
        await pilot.press("1")
        await settle(pilot)
        dry = dry_runs(backend)
        await pilot.press("4")
        await settle(pilot)
        assert panel(app) == "" and "ready" in status(app) and "not ready" not in status(app)
        assert dry_runs(backend) == dry  # the plan still stands: only checked again


async def test_m_opens_mapping_on_the_row_of_a_visited_screen_too(make_app, backend) -> None:
    backend.account_findings = [
        Finding("field_types", "lifetime_value is a Date field", "", False, ("lifetime_value",))
    ]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "3")  # Mapping already loaded, cursor on email
        await settle(pilot)
        await pilot.press("2", "space", "4")
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        detail = str(app.screen.query_one("#mapping-detail", Static).render())
        assert detail.startswith("lifetime_value (custom)")
