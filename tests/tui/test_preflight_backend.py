"""The preview's preflight over the real backend: the export's own checks,
against the emulator, before anything is sent; and its fixes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

import pytest

from connector.events import PreviewReady
from connector.preflight import guardrail_violation
from store.records import FieldMapping
from tests.engine.conftest import export_env  # noqa: F401 (fixture)
from tui.backend import ExportSettings
from tui.local_backend import LocalBackend

pytestmark = pytest.mark.slow  # against the emulator


def _backend(env) -> tuple[LocalBackend, int]:  # type: ignore[no-untyped-def]
    backend = LocalBackend(workspace=env.workspace, state_dir=env.state_dir)
    return backend, backend._hist().get_destination("news").id


def _plan(backend: LocalBackend, dest_id: int, **changes: object) -> ExportSettings:
    """A dry run, as the Preview makes it; the settings x would apply."""
    settings = ExportSettings(dest_id, ("germany",), dry_run=True, **changes)  # type: ignore[arg-type]

    async def run() -> int:
        plan_id = 0
        async for event in backend.export(settings, asyncio.Event()):
            if isinstance(event, PreviewReady):
                plan_id = event.plan_id
        return plan_id

    plan_id = asyncio.run(run())
    assert plan_id
    return ExportSettings(dest_id, ("germany",), plan_id=plan_id)


def kinds(findings) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.kind for f in findings]


def test_a_plan_an_export_would_start_has_no_findings(export_env) -> None:  # noqa: F811
    backend, dest_id = _backend(export_env)
    assert backend.preflight(_plan(backend, dest_id)) == []


def test_over_the_cap_is_found_before_x_and_set_cap_fixes_it(export_env) -> None:  # noqa: F811
    backend, dest_id = _backend(export_env)
    backend.set_cap(dest_id, 10)
    settings = _plan(backend, dest_id)
    [cap] = backend.preflight(settings)
    assert cap.kind == "cap" and cap.blocking and cap.amount and cap.amount > 10
    assert "over the cap of 10" in cap.title
    backend.set_cap(dest_id, cap.amount)
    assert backend.preflight(settings) == []


def test_missing_custom_fields_are_found_and_created(export_env) -> None:  # noqa: F811

    backend, dest_id = _backend(export_env)
    history = backend._hist()
    saved = history.get_mapping(dest_id)
    # mapped when it existed, since deleted on the account
    custom = {"tier": "loyalty_tier"}
    history.set_mapping(
        dest_id, FieldMapping(saved.email, saved.reserved, custom, saved.consent_column)
    )
    findings = backend.preflight(ExportSettings(dest_id, ("germany",)))
    assert kinds(findings) == ["custom_fields"] and findings[0].names == ("tier",)
    assert backend.create_custom_fields(dest_id) == ("tier",)
    assert backend.preflight(ExportSettings(dest_id, ("germany",))) == []


def test_a_field_type_that_rejects_the_column_is_a_warning(export_env) -> None:  # noqa: F811

    backend, dest_id = _backend(export_env)
    export_env.emulator.state.create_field("score", "Number")
    history = backend._hist()
    saved = history.get_mapping(dest_id)
    custom = {"score": "loyalty_tier"}
    history.set_mapping(
        dest_id, FieldMapping(saved.email, saved.reserved, custom, saved.consent_column)
    )
    [types] = backend.preflight(ExportSettings(dest_id, ("germany",)))
    assert types.kind == "field_types" and not types.blocking
    assert "Number" in types.title and "loyalty_tier" in types.title


def test_consent_choice_missing_or_recorded(export_env) -> None:  # noqa: F811
    backend, dest_id = _backend(export_env)
    backend.save_mapping(dest_id, FieldMapping(email="email"))
    found = backend.preflight(ExportSettings(dest_id, ("germany",)))
    assert kinds(found) == ["consent_choice"] and found[0].blocking
    backend.save_mapping(dest_id, FieldMapping(email="email", no_consent_filter=True))
    found = backend.preflight(ExportSettings(dest_id, ("germany",)))
    assert kinds(found) == ["no_consent_filter"] and not found[0].blocking


def test_no_mapping_no_segments_no_privacy_acknowledgment(export_env) -> None:  # noqa: F811
    backend, _dest_id = _backend(export_env)
    history = backend._hist()
    bare = history.add_destination(
        "bare", base_url=export_env.emulator.url, list_id=export_env.list_id,
        api_key_env="DEST_KEY", key_storage="env",
    )  # fmt: skip
    found = backend.preflight(ExportSettings(bare.id, ()))
    assert kinds(found) == ["mapping", "segments", "privacy"]
    backend.save_mapping(bare.id, FieldMapping(email="email", consent_column="email_opt_in"))
    assert kinds(backend.preflight(ExportSettings(bare.id, ()))) == ["segments", "privacy"]


def test_a_bad_key_is_a_destination_finding(export_env, monkeypatch) -> None:  # noqa: F811
    backend, dest_id = _backend(export_env)
    monkeypatch.setenv("DEST_KEY", "SG.wrong")
    assert kinds(backend.preflight(ExportSettings(dest_id, ("germany",)))) == ["destination"]


def test_guardrail_violation_names_removals_and_the_allowance_lifts_it() -> None:
    dest = SimpleNamespace(
        name="news", cap=100_000, max_removals=None, max_removal_share=None, max_adds=None
    )
    counts = {"to_send": 5, "to_add": 5, "to_remove": 400}
    found = guardrail_violation(counts, dest, 2_000, None)  # type: ignore[arg-type]
    assert found is not None and found.kind == "removals" and found.amount == 400
    assert "over the limit of 200" in found.title
    assert guardrail_violation(counts, dest, 2_000, 400) is None  # type: ignore[arg-type]


def test_a_plan_whose_basis_changed_is_out_of_date(export_env) -> None:  # noqa: F811
    backend, dest_id = _backend(export_env)
    settings = _plan(backend, dest_id)
    saved = backend.mapping(dest_id)
    backend.save_mapping(dest_id, replace(saved, reserved={**saved.reserved, "city": "country"}))
    [drift] = backend.preflight(settings)
    assert drift.kind == "drift" and drift.blocking
    assert "the field mapping changed since the plan" in drift.title


def test_the_first_check_of_a_preview_reads_what_its_plan_was_told(
    export_env,  # noqa: F811
) -> None:
    # The plan was made moments ago with SendGrid's answers about the key and
    # the list: its first check reads them; a later check (back on Preview
    # after a fix made elsewhere) asks SendGrid again.
    backend, dest_id = _backend(export_env)
    settings = _plan(backend, dest_id)
    emulator = export_env.emulator
    emulator.exchanges.clear()
    assert backend.preflight(settings) == []
    assert emulator.exchanges == []
    assert backend.preflight(settings) == []
    asked = sorted(f"{x.method} {x.endpoint}" for x in emulator.exchanges)
    assert asked == ["GET /v3/marketing/lists/{id}", "GET /v3/scopes"]


def test_a_change_made_while_a_preview_plans_is_checked_afresh(
    export_env,  # noqa: F811
) -> None:
    # The answers were asked as the plan started; a mapping saved (or a key,
    # a destination, fields) since may be what they were about.
    backend, dest_id = _backend(export_env)
    settings = _plan(backend, dest_id)
    saved = backend.saved_mapping(dest_id)
    assert saved is not None
    backend.save_mapping(dest_id, saved)
    emulator = export_env.emulator
    emulator.exchanges.clear()
    assert backend.preflight(settings) == []
    asked = sorted(f"{x.method} {x.endpoint}" for x in emulator.exchanges)
    assert asked == ["GET /v3/marketing/lists/{id}", "GET /v3/scopes"]
