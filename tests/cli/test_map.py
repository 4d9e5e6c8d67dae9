"""`segsync map`: merge, --replace, --unset, show; custom fields checked at
map time; one suggestion for the CLI and the TUI; the consent-filter choice."""

from __future__ import annotations

import pytest

from store.history import History
from store.paths import history_path
from tests.cli.conftest import cli, cli_json

pytestmark = pytest.mark.slow  # mappings saved against the emulator


def _mapping(env):
    history = History(history_path(env.state_dir))
    return history.get_mapping(history.get_destination("news").id)


def test_a_pair_is_merged_into_the_saved_mapping(export_env, capsys) -> None:
    """It used to replace the whole mapping, dropping first_name and consent."""
    code, out, err = cli(capsys, "map", "news", "postal_code=customer_id")
    assert code == 0, err
    mapping = _mapping(export_env)
    assert mapping.reserved["first_name"] == "first_name"
    assert mapping.reserved["postal_code"] == "customer_id"
    assert mapping.consent_column == "email_opt_in"
    assert "first_name" in out and "postal_code" in out


def test_replace_starts_over_and_unset_drops_one_field(export_env, capsys) -> None:
    assert cli(capsys, "map", "news", "--unset", "city")[0] == 0
    mapping = _mapping(export_env)
    assert "city" not in mapping.reserved and "first_name" in mapping.reserved
    code, _out, err = cli(capsys, "map", "news", "--unset", "tier")
    assert code == 2 and "not mapped" in err
    code, _out, err = cli(
        capsys, "map", "news", "--replace", "email=email", "--consent-column", "email_opt_in"
    )
    assert code == 0, err
    mapping = _mapping(export_env)
    assert mapping.reserved == {} and mapping.custom == {}
    assert mapping.consent_column == "email_opt_in"


def test_map_without_pairs_shows_the_mapping_and_changes_nothing(export_env, capsys) -> None:
    before = _mapping(export_env)
    code, out, _err = cli(capsys, "map", "news")
    assert code == 0
    assert "first_name" in out and "consent column: email_opt_in" in out
    assert _mapping(export_env) == before
    code, data, _err = cli_json(capsys, "map", "news")
    assert data["reserved"]["city"] == "city" and data["no_consent_filter"] is False


def test_a_missing_custom_field_is_refused_at_map_time(export_env, capsys) -> None:
    """It passed map and the dry run and failed only at export."""
    code, _out, err = cli(capsys, "map", "news", "tier=loyalty_tier")
    assert code == 2
    assert "tier" in err and "--create-fields" in err
    assert "tier" not in _mapping(export_env).custom  # nothing saved
    code, _out, err = cli(capsys, "map", "news", "tier=loyalty_tier", "--create-fields")
    assert code == 0, err
    assert "created custom field 'tier'" in err
    assert any(f["name"] == "tier" for f in export_env.emulator.state.fields)
    assert _mapping(export_env).custom == {"tier": "loyalty_tier"}


def test_a_dry_run_warns_of_a_missing_custom_field(export_env, capsys) -> None:
    from store.records import FieldMapping

    history = History(history_path(export_env.state_dir))
    dest = history.get_destination("news")
    history.set_mapping(  # a mapping saved before the check existed
        dest.id,
        FieldMapping(email="email", custom={"tier": "loyalty_tier"}, consent_column="email_opt_in"),
    )
    code, data, err = cli_json(capsys, "export", "news", "--segment", "germany", "--dry-run")
    assert code == 0, err
    assert any("tier" in w and "--create-fields" in w for w in data["warnings"])
    assert data["ready"] is False  # an export would be refused
    assert "would refuse:" in err


def test_suggest_is_the_same_suggestion_as_the_app(export_env, capsys) -> None:
    """The CLI's --suggest mapped no custom fields where the TUI's `u` did."""
    from tui.local_backend import LocalBackend

    export_env.emulator.state.create_field("loyalty_tier", "Text")
    code, _out, err = cli(capsys, "map", "news", "--replace", "--suggest")
    assert code == 0, err
    saved = _mapping(export_env)
    assert saved.custom == {"loyalty_tier": "loyalty_tier"}
    backend = LocalBackend(workspace=export_env.workspace, state_dir=export_env.state_dir)
    draft = backend.suggested_mapping(History(history_path(export_env.state_dir))
                                      .get_destination("news").id)  # fmt: skip
    assert draft.email == saved.email
    assert draft.reserved == saved.reserved and draft.custom == saved.custom
    assert draft.consent_column == saved.consent_column == "email_opt_in"


def test_no_consent_column_refuses_an_export_until_the_choice_is_recorded(
    export_env, capsys
) -> None:
    """Unmapping the consent column used to send everyone selected, silently."""
    assert cli(capsys, "map", "news", "--unset", "consent")[0] == 0
    code, _out, err = cli(capsys, "export", "news", "--segment", "germany")
    assert code == 2
    assert "no consent column" in err and "--no-consent-filter" in err
    assert export_env.emulator.state.list_members(export_env.list_id) == set()
    code, data, err = cli_json(capsys, "export", "news", "--segment", "germany", "--dry-run")
    assert code == 0 and any("--no-consent-filter" in w for w in data["warnings"])

    code, out, err = cli(capsys, "map", "news", "--no-consent-filter")
    assert code == 0, err
    assert "none, by choice" in out
    assert _mapping(export_env).no_consent_filter is True
    code, data, err = cli_json(capsys, "export", "news", "--segment", "germany")
    assert code == 0, err
    assert data["counts"]["no_consent"] == 0  # everyone selected was sent, as chosen
    # naming a consent column again ends the choice
    assert cli(capsys, "map", "news", "--consent-column", "email_opt_in")[0] == 0
    assert _mapping(export_env).no_consent_filter is False


def test_the_app_is_refused_by_the_same_rule(export_env, capsys) -> None:
    import asyncio

    import pytest

    from tui.backend import BackendError, ExportSettings
    from tui.local_backend import LocalBackend

    assert cli(capsys, "map", "news", "--unset", "consent")[0] == 0
    backend = LocalBackend(workspace=export_env.workspace, state_dir=export_env.state_dir)
    dest = History(history_path(export_env.state_dir)).get_destination("news")

    async def export() -> None:
        settings = ExportSettings(destination_id=dest.id, segments=("germany",))
        async for _event in backend.export(settings, asyncio.Event()):
            pass

    with pytest.raises(BackendError, match="no-consent-filter"):
        asyncio.run(export())
