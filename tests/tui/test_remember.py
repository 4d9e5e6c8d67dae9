"""Remembered between launches, per state folder: the destination used last,
the segments picked for it in each workspace; and switching workspace."""

from __future__ import annotations

from textual.widgets import Input, OptionList

from tests.tui.conftest import SIZE, settle
from tests.tui.rendered import screen_text
from tui.screens.preview import PreviewScreen
from tui.screens.segments import SegmentsScreen
from tui.screens.workspace_picker import WorkspacePicker


async def test_the_destination_used_last_is_the_one_at_launch(make_app, backend) -> None:
    backend.remembered_id = 2  # two destinations: without it none would be picked
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.destination is not None and app.destination.id == 2
        assert "Demo" in app.sub_title


async def test_the_command_line_destination_wins(make_app, backend) -> None:
    backend.remembered_id = 2
    app = make_app(destination="Newsletter")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.destination is not None and app.destination.id == 1


async def test_picked_segments_come_back_at_the_next_launch(make_app, backend) -> None:
    first = make_app()
    async with first.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2", "space")
        await settle(pilot)
        assert backend.remembered[-1] == (1, ("high_value",))
    assert backend.remembered_id == 1
    again = make_app()
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert again.destination is not None and again.destination.id == 1
        assert again.selection == ("high_value",)  # without visiting Segments
        await pilot.press("4")
        await settle(pilot)
        assert isinstance(again.screen, PreviewScreen)
        assert backend.exports[-1].segments == ("high_value",)


async def test_nothing_remembered_is_overwritten_before_it_is_read(make_app, backend) -> None:
    backend.remembered_id = 2
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert all(dest == 2 for dest, _segments in backend.remembered)


async def test_w_switches_to_a_known_workspace_and_restores_its_picks(make_app, backend) -> None:
    backend.remembered_selections[("/data/crm", 1)] = ("newsletter_de",)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2", "space")
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, WorkspacePicker)
        options = picker.query_one(OptionList)
        assert [options.get_option_at_index(i).id for i in range(options.option_count)] == [
            "sample_data",
            "/data/crm",
        ]
        await pilot.press("down", "enter")
        await settle(pilot)
        assert backend.switched == ["/data/crm"]
        assert isinstance(app.screen, SegmentsScreen)
        assert "/data/crm" in app.sub_title
        assert app.selection == ("newsletter_de",)
        assert app.mapping is None
        assert "[x]" in screen_text(app)


async def test_a_typed_folder_that_is_not_a_workspace_changes_nothing(make_app, backend) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        app.screen.query_one(Input).value = "relative/nowhere"
        app.screen.query_one(Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert backend.switched == ["relative/nowhere"]
        assert backend.workspace_label == "sample_data"
        assert "sample_data" in app.sub_title and not isinstance(app.screen, WorkspacePicker)


async def test_the_palette_offers_switch_workspace(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p", *"workspace")
        for _ in range(100):  # the palette searches in a worker: wait for the hit
            await pilot.pause()
            if "Switch workspace" in screen_text(app):
                break
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, WorkspacePicker)


# -- the real backend: one owner-only file in the state folder -------------------


def _workspace(folder, segment: str):  # type: ignore[no-untyped-def]
    folder.mkdir()
    (folder / "profiles.csv").write_text("customer_id,email,country\n1,a@example.com,DE\n")
    (folder / "segments.toml").write_text(
        f'[profiles]\npath = "profiles.csv"\nkey = "customer_id"\n\n'
        f"[segments.{segment}]\nwhere = \"country = 'DE'\"\n"
    )
    return folder


def test_the_local_backend_remembers_per_state_folder(tmp_path, monkeypatch) -> None:
    import os
    import stat

    import pytest

    from store.remembered import remembered_file
    from tui.backend import BackendError
    from tui.local_backend import LocalBackend

    first = _workspace(tmp_path / "first", "germany")
    second = _workspace(tmp_path / "second", "de")
    state = tmp_path / "state"
    backend = LocalBackend(workspace=first, state_dir=state)
    dest = backend._hist().add_destination("news", base_url="http://127.0.0.1:9", list_id="l")
    backend.remember(dest.id, ("germany",))
    assert stat.S_IMODE(os.stat(remembered_file(state)).st_mode) == 0o600
    with pytest.raises(BackendError, match="segments"):
        backend.switch_workspace(str(tmp_path))  # not a workspace: nothing changes
    assert backend.workspace_label == "first"
    assert backend.switch_workspace(str(second)) == "second"
    assert [s.name for s in backend.segments()] == ["de"]
    assert backend.saved_selection(dest.id) == ()  # nothing picked here yet

    monkeypatch.chdir(tmp_path)  # not a workspace: the one used last is opened
    again = LocalBackend(workspace=None, state_dir=state)
    assert again.workspace_label == "second"
    assert again.remembered_destination() == dest.id
    assert [w.path for w in again.workspaces()] == [str(second), str(first)]
    assert again.switch_workspace(str(first)) == "first"
    assert again.saved_selection(dest.id) == ("germany",)
    monkeypatch.chdir(second)  # a workspace: it wins over the one used last
    assert LocalBackend(workspace=None, state_dir=state).workspace_label == "second"


def test_a_folder_that_is_not_a_workspace_is_not_listed_among_the_recent(tmp_path) -> None:
    from store.remembered import load
    from tui.local_backend import LocalBackend

    good = _workspace(tmp_path / "good", "germany")
    state = tmp_path / "state"
    backend = LocalBackend(workspace=good, state_dir=state)
    dest = backend._hist().add_destination("news", base_url="http://127.0.0.1:9", list_id="l")
    backend.remember(dest.id, ("germany",))
    broken = tmp_path / "broken"  # no segments.toml: the app says so and goes on
    broken.mkdir()
    other = LocalBackend(workspace=broken, state_dir=state)
    other.remember(dest.id, ())
    memory = load(state)
    assert memory.workspaces == (str(good),)  # it used to come first
    assert memory.destination_id == dest.id
    assert memory.selection(str(good), dest.id) == ("germany",)
