"""Sending without a consent filter is an explicit, recorded choice on the
Mapping screen, never what unmapping the consent column does by itself; and
an export never saves a mapping the user did not save."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from store.records import FieldMapping
from tests.tui.conftest import SIZE, settle
from tui.backend import BackendError, ExportSettings
from tui.screens.confirm import ConfirmScreen
from tui.screens.mapping import MappingScreen
from tui.screens.pickers import ColumnPicker


def consent_cells(app) -> list[str]:  # type: ignore[no-untyped-def]
    table = app.screen.query_one(DataTable)
    return [str(c) for c in table.get_row_at(table.row_count - 1)]


async def open_consent_row(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("enter", "3")
    await settle(pilot)
    assert isinstance(pilot.app.screen, MappingScreen)
    await pilot.press("end")


async def test_unmapping_consent_asks_and_no_keeps_the_column(make_app, backend) -> None:
    backend.save_mapping(1, backend.suggested_mapping(1))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_consent_row(pilot)
        await pilot.press("space")
        assert isinstance(app.screen, ColumnPicker)
        await pilot.press("home", "enter")  # "(no consent filter)"
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        saved = backend.mappings[1]
        assert saved.consent_column == "email_opt_in" and not saved.no_consent_filter
        assert consent_cells(app)[1] == "email_opt_in"


async def test_unmapping_consent_with_yes_records_the_choice(make_app, backend) -> None:
    backend.save_mapping(1, backend.suggested_mapping(1))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_consent_row(pilot)
        await pilot.press("space", "home", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        saved = backend.mappings[1]
        assert saved.consent_column is None and saved.no_consent_filter
        assert "everyone" in consent_cells(app)[1]
        detail = str(app.screen.query_one("#mapping-detail", Static).render())
        assert "recorded" in detail


async def test_n_toggles_the_choice_and_off_asks_for_a_column(make_app, backend) -> None:
    backend.save_mapping(1, backend.suggested_mapping(1))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_consent_row(pilot)
        await pilot.press("n")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert backend.mappings[1].no_consent_filter
        await pilot.press("n")  # withdraw the choice: a consent column is needed again
        await settle(pilot)
        assert isinstance(app.screen, ColumnPicker)
        await pilot.press("escape")
        await settle(pilot)
        saved = backend.mappings[1]
        assert not saved.no_consent_filter and saved.consent_column is None
        assert "choose" in consent_cells(app)[1]


async def test_picking_a_consent_column_ends_the_recorded_choice(make_app, backend) -> None:
    backend.mappings[1] = FieldMapping(email="email", no_consent_filter=True)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_consent_row(pilot)
        await pilot.press("space")
        picker = app.screen
        assert isinstance(picker, ColumnPicker)
        picker.query_one("OptionList").highlighted = 6  # email_opt_in
        await pilot.press("enter")
        await settle(pilot)
        saved = backend.mappings[1]
        assert saved.consent_column == "email_opt_in" and not saved.no_consent_filter


async def test_an_unsaved_suggestion_says_so_and_s_saves_it(make_app, backend) -> None:
    backend.mappings.clear()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "3")
        await settle(pilot)
        status = str(app.screen.query_one("#mapping-status", Static).render())
        assert "not saved" in status
        assert 1 not in backend.mappings
        await pilot.press("s")
        await settle(pilot)
        assert backend.mappings[1].email == "email"
        status = str(app.screen.query_one("#mapping-status", Static).render())
        assert "not saved" not in status


# -- the real backend: an export never saves a mapping by itself ----------------

SEGMENTS = """
[profiles]
path = "profiles.csv"
key = "customer_id"

[segments.germany]
where = "country = 'DE'"
"""


@pytest.fixture
def local(tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SEGSYNC_NO_KEYRING", "1")
    from tui.local_backend import LocalBackend

    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / "profiles.csv").write_text(
        "customer_id,email,country,email_opt_in\n1,a@example.com,DE,true\n"
    )
    (folder / "segments.toml").write_text(SEGMENTS)
    backend = LocalBackend(workspace=folder, state_dir=tmp_path / "state")
    history = backend._hist()
    dest = history.add_destination(
        "news", base_url="http://127.0.0.1:9", list_id="l1", api_key_env="NO_SUCH_KEY_VAR"
    )
    return backend, history, dest


async def _drain(backend, settings: ExportSettings) -> list:  # type: ignore[no-untyped-def]
    return [event async for event in backend.export(settings, asyncio.Event())]


def test_export_without_a_saved_mapping_saves_none_and_says_so(local) -> None:
    backend, history, dest = local
    with pytest.raises(BackendError, match=r"no saved mapping.*Mapping \(3\)"):
        asyncio.run(_drain(backend, ExportSettings(dest.id, ("germany",), dry_run=True)))
    assert history.get_mapping(dest.id) is None


def test_local_backend_keeps_the_recorded_choice(local) -> None:
    backend, history, dest = local
    assert backend.saved_mapping(dest.id) is None
    backend.save_mapping(dest.id, FieldMapping(email="email", no_consent_filter=True))
    assert history.get_mapping(dest.id).no_consent_filter
    saved = backend.saved_mapping(dest.id)
    assert saved is not None and saved.no_consent_filter


async def test_u_fills_only_the_gaps_and_keeps_the_no_consent_choice(make_app, backend) -> None:
    """`u` suggests as `segsync map --suggest` does: a column the user chose and
    a recorded choice to send without a consent filter stay (it used to save a
    fresh suggestion over them, dropping both)."""
    backend.save_mapping(
        1,
        FieldMapping(
            email="email",
            reserved={"first_name": "last_name"},  # an odd choice, but the user's
            custom={},
            consent_column=None,
            no_consent_filter=True,
        ),
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_consent_row(pilot)
        await pilot.press("u")
        await settle(pilot)
        saved = backend.mappings[1]
        assert saved.reserved["first_name"] == "last_name"  # kept
        assert saved.reserved["country"] == "country"  # a gap, filled
        assert saved.consent_column is None and saved.no_consent_filter
        assert "everyone" in consent_cells(app)[1]
