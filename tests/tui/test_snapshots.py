"""SVG snapshots of each main screen at 80x24, and of the key ones at 120x40:
fixed data (FakeBackend), fixed clock (TickingClock), no clock in the header, cursor blink off, and
no toasts: what the screen shows, not the last thing it said (a toast would
cover the content and make the image depend on timing). Flow tests check
the notifications themselves.

Update after an intended change with `pytest tests/tui --snapshot-update`
and review the SVGs in __snapshots__/ before committing them."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tests.tui.conftest import SIZE, settle

pytestmark = pytest.mark.slow  # Pilot runs compared with SVG snapshots


def keys(*pressed: str):  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)
            # after each key: a screen under a dialog keeps the toasts it showed
            pilot.app.clear_notifications()
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        pilot.app.clear_notifications()
        await settle(pilot)

    return run_before


def test_destinations(snap_compare, make_app) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=keys())


def test_destination_form(snap_compare, make_app) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=keys("e"))


def test_segments(snap_compare, make_app) -> None:
    assert snap_compare(
        make_app(), terminal_size=SIZE, run_before=keys("enter", "2", "space", "down", "down")
    )


def test_mapping(snap_compare, make_app) -> None:
    assert snap_compare(
        make_app(), terminal_size=SIZE, run_before=keys("enter", "3", "down", "down")
    )


def test_preview(snap_compare, make_app) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=keys("enter", "2", "space", "4"))


def test_export_finished(snap_compare, make_app) -> None:
    assert snap_compare(
        make_app(), terminal_size=SIZE, run_before=keys("enter", "2", "space", "4", "x", "y")
    )


def test_history(snap_compare, make_app) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=keys("6"))


def test_syncs(snap_compare, make_app) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=keys("7"))


def test_run_detail(snap_compare, make_app) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=keys("6", "o", "v", "v"))


# -- 120x40: the same screens when the terminal has room ----------------------

WIDE = (120, 40)


def test_destinations_wide(snap_compare, make_app) -> None:
    assert snap_compare(make_app(), terminal_size=WIDE, run_before=keys())


def test_mapping_wide(snap_compare, make_app) -> None:
    assert snap_compare(
        make_app(), terminal_size=WIDE, run_before=keys("enter", "3", "down", "down")
    )


def test_preview_rejected_wide(snap_compare, make_app) -> None:
    assert snap_compare(
        make_app(), terminal_size=WIDE, run_before=keys("enter", "2", "space", "4", "v")
    )


def test_export_finished_wide(snap_compare, make_app) -> None:
    assert snap_compare(
        make_app(), terminal_size=WIDE, run_before=keys("enter", "2", "space", "4", "x", "y")
    )


def test_history_wide(snap_compare, make_app) -> None:
    assert snap_compare(make_app(), terminal_size=WIDE, run_before=keys("6"))


def test_help_wide(snap_compare, make_app) -> None:
    assert snap_compare(
        make_app(), terminal_size=WIDE, run_before=keys("enter", "2", "space", "4", "question_mark")
    )


def test_syncs_wide(snap_compare, make_app) -> None:
    assert snap_compare(make_app(), terminal_size=WIDE, run_before=keys("7"))


def test_preview_not_ready(snap_compare, make_app, backend) -> None:
    """Problems an export would meet, each with its fix key, above the plan."""
    from dataclasses import replace

    from connector.findings import Finding
    from store.records import FieldMapping

    row = backend.destinations_data[0]
    backend.destinations_data[0] = replace(row, destination=replace(row.destination, cap=1000))
    backend.mappings[1] = FieldMapping(email="email")
    backend.account_findings = [
        Finding("cap", "would send 1,340 contacts, over the cap of 1,000", "", amount=1340),
        Finding("field_types", "score is a Number field; column tier is VARCHAR", "", False),
    ]
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=keys("enter", "2", "space", "4"))


def test_mapping_sent_without_consent_filter(snap_compare, make_app, backend) -> None:
    """The consent row and its detail when sending without a filter was chosen."""
    from dataclasses import replace

    backend.mappings[1] = replace(backend.mappings[1], consent_column=None, no_consent_filter=True)
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=keys("enter", "3", "end"))
