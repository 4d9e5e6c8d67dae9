"""The app over the real backend (DuckDB workspace, SQLite history, key file)
against the in-process SendGrid emulator: add a destination, pick, map,
preview, export, and read the run back from history."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from connector.consent import CONSENT_STATEMENT
from store.paths import history_path
from store.records import FieldMapping
from tests.tui.conftest import SIZE, TickingClock, settle, wait_until
from tui.app import SegsyncApp
from tui.local_backend import LocalBackend
from tui.screens.apply_plan import ApplyPlanScreen
from tui.screens.consent import ConsentScreen
from tui.screens.destination_form import DestinationFormScreen
from tui.screens.export import ExportScreen
from tui.screens.run_detail import RunDetailScreen

pytestmark = pytest.mark.slow  # the app over the real backend and the emulator

SEGMENTS = """
[profiles]
path = "profiles.csv"
key = "customer_id"

[segments.germany]
description = "Customers in Germany"
where = "country = 'DE'"

[segments.typo]
where = "contry = 'DE'"
"""


def write_workspace(folder: Path) -> set[str]:
    """40 profiles, half in Germany; returns the emails that must reach the list."""
    lines = ["customer_id,email,first_name,country,email_opt_in"]
    expected = set()
    for i in range(40):
        country = "DE" if i % 2 == 0 else "FR"
        email = f"Person{i}@Example.com" if i % 10 != 4 else "not-an-email"
        opt_in = "false" if i % 8 == 6 else "true"
        lines.append(f"{i},{email},First{i},{country},{opt_in}")
        if country == "DE" and "@" in email and opt_in == "true":
            expected.add(email.lower())
    folder.mkdir()
    (folder / "profiles.csv").write_text("\n".join(lines) + "\n")
    (folder / "segments.toml").write_text(SEGMENTS)
    return expected


async def test_whole_flow_against_the_emulator(tmp_path: Path, emulator, monkeypatch) -> None:
    monkeypatch.setenv("SEGSYNC_NO_KEYRING", "1")
    expected = write_workspace(tmp_path / "ws")
    list_id = emulator.state.create_list("newsletter")["id"]
    backend = LocalBackend(workspace=tmp_path / "ws", state_dir=tmp_path / "state")
    app = SegsyncApp(backend, clock=TickingClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, DestinationFormScreen)
        form.query_one("#name", Input).value = "news"
        form.query_one("#api_key", Input).value = emulator.api_key
        form.query_one("#base_url", Input).value = emulator.url
        await pilot.press("ctrl+l")
        await settle(pilot)
        form.query_one("#list").value = list_id  # offered from the account's lists
        await pilot.press("ctrl+t")
        await settle(pilot)
        checks = str(form.query_one("#checks", Static).render())
        assert checks.count("PASS") == 3, checks
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConsentScreen)
        await pilot.press("a")
        await settle(pilot)
        assert app.destination is not None and app.destination.consented
        history = history_path(tmp_path / "state")
        assert history.is_file()  # the database the app wrote, searched for the key
        for path in (history, history.with_name(f"{history.name}-wal")):
            assert not path.exists() or emulator.api_key.encode() not in path.read_bytes()

        await pilot.press("2")
        await settle(pilot)
        segments = app.screen.query_one(DataTable)
        assert [str(segments.get_row_at(r)[2]) for r in range(2)] == ["20", "error"]
        await pilot.press("space")
        await settle(pilot)
        assert "union 17 distinct emails" in str(app.screen.query_one("#union", Static).render())

        await pilot.press("3")
        await settle(pilot)
        mapping = app.screen.query_one(DataTable)
        assert str(mapping.get_row_at(0)[1]) == "email"
        await pilot.press("s")  # the suggestion is used only once saved
        await settle(pilot)
        assert backend._hist().get_mapping(app.destination.id) is not None

        await pilot.press("4")
        await settle(pilot)
        counts = app.screen.query_one("#preview-counts", DataTable)
        rows = {
            str(counts.get_row_at(r)[0]): str(counts.get_row_at(r)[1])
            for r in range(counts.row_count)
        }
        assert rows["To send"] == f"{len(expected):,}"
        assert emulator.state.list_members(list_id) == set()  # a dry-run sends nothing

        await pilot.press("x")
        await settle(pilot)  # the stored plan is read for the question
        question = app.screen
        assert isinstance(question, ApplyPlanScreen)
        assert question.review.plan.counts["to_add"] == len(expected)  # the plan on screen
        await pilot.press("y")
        export = app.screen
        assert isinstance(export, ExportScreen)
        for _ in range(100):
            await settle(pilot)
            if export.finished is not None:
                break
        assert export.finished is not None and export.finished.status == "succeeded"
        assert emulator.state.list_members(list_id) == expected

        await pilot.press("h")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        rejected = detail.query_one("#run-rejected", DataTable)
        reasons = {str(rejected.get_row_at(r)[2]).split(":")[0] for r in range(rejected.row_count)}
        assert reasons == {"invalid_email"}  # data problems; opt-outs are only counted


async def wait_finished(pilot, export: ExportScreen) -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):
        await settle(pilot)
        if export.finished is not None and not export.running:
            return
    raise AssertionError("the export did not finish")


async def test_cancel_midway_then_resume_from_history(
    tmp_path: Path, emulator, monkeypatch
) -> None:
    from connector.engine import EngineSettings
    from tui.backend import DestinationForm

    monkeypatch.setenv("SEGSYNC_NO_KEYRING", "1")
    expected = write_workspace(tmp_path / "ws")
    list_id = emulator.state.create_list("newsletter")["id"]
    backend = LocalBackend(
        workspace=tmp_path / "ws",
        state_dir=tmp_path / "state",
        engine_settings=EngineSettings(concurrency=1, max_contacts=1, poll_interval=0.05),
    )
    # the backend blocks (it runs in the app's worker threads), so set up off the loop
    form = DestinationForm("news", emulator.url, emulator.api_key, list_id, None, 1000)
    dest = (await asyncio.to_thread(backend.save_destination, form)).destination
    await asyncio.to_thread(backend.record_consent, dest.id, CONSENT_STATEMENT)
    mapping = FieldMapping(email="email", consent_column="email_opt_in")
    await asyncio.to_thread(backend.save_mapping, dest.id, mapping)
    emulator.set_faults(latency=0.2)  # one contact per request: slow enough to cancel
    app = SegsyncApp(backend, clock=TickingClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2", "space", "4")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)  # the plan is read for the apply question
        await pilot.press("y")
        export = app.screen
        assert isinstance(export, ExportScreen)
        await wait_until(pilot, lambda: export.query_one("#batches", DataTable).row_count >= 1)
        await pilot.press("c", "y")
        await wait_finished(pilot, export)
        assert export.finished is not None and export.finished.status == "cancelled"
        first = emulator.state.list_members(list_id)
        assert first < expected  # stopped part way: some sent, not all

        emulator.set_faults(latency=0.0)
        await pilot.press("h")
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen)
        await pilot.press("u", "y")
        await settle(pilot)
        resumed = app.screen
        assert isinstance(resumed, ExportScreen)
        await wait_finished(pilot, resumed)
        assert resumed.finished is not None and resumed.finished.status == "succeeded"
        assert emulator.state.list_members(list_id) == expected


def test_a_mapping_screen_load_asks_sendgrid_for_fields_once(tmp_path: Path, monkeypatch) -> None:
    # The screen fetches the account's custom fields itself; loading an unsaved
    # mapping must reuse them, not fetch again (offline, each fetch waits out
    # its retries).
    write_workspace(tmp_path / "ws")
    backend = LocalBackend(workspace=tmp_path / "ws", state_dir=tmp_path / "state")

    def no_fetch(destination_id: int) -> list[str]:
        raise AssertionError("custom fields fetched again")

    monkeypatch.setattr(backend, "custom_fields", no_fetch)
    draft = backend.mapping(1, ["first_name_custom"])
    assert draft.email == "email"
    assert draft.reserved["first_name"] == "first_name"


def test_a_mapping_edited_in_the_app_keeps_the_choice_to_send_without_consent(
    tmp_path: Path, emulator
) -> None:
    """The Mapping screen loads the saved mapping, changes one field and saves it
    (`replace`, as its picker does): `--no-consent-filter`, chosen on the command
    line, survives."""
    from dataclasses import replace

    from store.history import History
    from tui.backend import DestinationForm

    write_workspace(tmp_path / "ws")
    list_id = emulator.state.create_list("newsletter")["id"]
    backend = LocalBackend(workspace=tmp_path / "ws", state_dir=tmp_path / "state")
    form = DestinationForm("news", emulator.url, emulator.api_key, list_id, None, 1000)
    dest = backend.save_destination(form).destination
    backend.save_mapping(dest.id, FieldMapping(email="email", no_consent_filter=True))
    loaded = backend.mapping(dest.id)
    backend.save_mapping(dest.id, replace(loaded, reserved={"first_name": "first_name"}))
    with History(history_path(tmp_path / "state")) as history:
        saved = history.get_mapping(dest.id)
    assert saved == FieldMapping(
        email="email", reserved={"first_name": "first_name"}, no_consent_filter=True
    )
