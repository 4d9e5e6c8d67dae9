"""The account look-ups before a plan (key, list, custom fields) are asked at
once, not one after another: SendGrid is often a fifth of a second away, and a
preview or an export waited for each in turn. A failure still names the first
problem in the order an export checks them: key, then list, then fields."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from connector import events as ev
from connector.client import SendGridClient
from connector.engine import EngineSettings, ExportEngine, ExportRequest
from connector.preflight import ExportRefused, Preflight
from store.history import History
from store.paths import history_path
from store.secrets import KeyStore
from store.workspace import Workspace

pytestmark = pytest.mark.slow  # against the emulator

LOOK_UPS = ("validate_key", "get_list", "field_definitions")


def gated(parties: int, asked: list[str]) -> Any:
    """A client factory whose look-ups each wait until ``parties`` of them are
    in flight together: asked one after another, the first waits in vain."""
    barrier = asyncio.Barrier(parties)

    class Gated(SendGridClient):
        pass

    def gate(name: str) -> Any:
        async def call(self: SendGridClient, *args: Any, **kwargs: Any) -> Any:
            asked.append(name)
            try:
                await asyncio.wait_for(barrier.wait(), timeout=3)
            except TimeoutError:
                raise AssertionError(f"{name} was asked alone: {asked}") from None
            return await getattr(SendGridClient, name)(self, *args, **kwargs)

        return call

    for name in LOOK_UPS:
        setattr(Gated, name, gate(name))
    return Gated


def _with_custom_field(env: Any) -> History:
    env.emulator.state.create_field("loyalty_tier", "Text")
    history = History(history_path(env.state_dir))
    dest = history.get_destination("news")
    saved = history.get_mapping(dest.id)
    assert saved is not None
    history.set_mapping(dest.id, replace(saved, custom={"loyalty_tier": "loyalty_tier"}))
    return history


def _engine(env: Any, history: History, factory: Any) -> ExportEngine:
    engine = ExportEngine(
        workspace=Workspace.open(env.workspace),
        history=history,
        keys=KeyStore(env.state_dir),
        state_dir=env.state_dir,
        settings=EngineSettings(poll_interval=0.05),
    )
    engine.client_factory = factory
    return engine


@pytest.mark.parametrize("dry_run", [False, True])
async def test_an_export_asks_the_account_at_once(export_env, dry_run: bool) -> None:
    asked: list[str] = []
    history = _with_custom_field(export_env)
    # a preview asks about the key too (costing no wait): its findings read the answer
    engine = _engine(export_env, history, gated(3, asked))
    events = [e async for e in engine.run(ExportRequest("news", ("germany",), dry_run=dry_run))]
    finished = events[-1]
    assert isinstance(finished, ev.RunFinished), finished
    assert finished.status == ("dry_run" if dry_run else "succeeded")
    assert sorted(asked) == sorted(LOOK_UPS)


async def test_a_previews_findings_ask_the_account_at_once(export_env) -> None:
    asked: list[str] = []
    history = _with_custom_field(export_env)
    dest = history.get_destination("news")
    keys = KeyStore(export_env.state_dir)
    pre = Preflight(Workspace.open(export_env.workspace), history, keys, export_env.state_dir)
    request = ExportRequest("news", ("germany",))
    found = await pre.findings(dest, request, None, factory=gated(3, asked))
    assert found == []
    assert sorted(asked) == sorted(LOOK_UPS)


async def test_a_bad_key_is_named_first_though_every_look_up_fails(export_env, monkeypatch) -> None:
    # A key without Marketing access: SendGrid refuses the list and the
    # fields too, each in its own words; the key's problem is the one said.
    history = _with_custom_field(export_env)
    monkeypatch.setenv("DEST_KEY", export_env.emulator.state.add_key({"mail.send"}))
    engine = _engine(export_env, history, SendGridClient)
    with pytest.raises(ExportRefused, match=r"lacks the permission 'marketing\.read'"):
        _ = [e async for e in engine.run(ExportRequest("news", ("germany",)))]
    refused = {x.endpoint for x in export_env.emulator.exchanges if x.status == 403}
    assert "/v3/marketing/lists/{id}" in refused  # asked, and refused too
    assert not any(x.method == "PUT" for x in export_env.emulator.exchanges)


def test_a_dry_run_asks_the_account_once_for_the_plan_and_its_findings(export_env) -> None:
    # The preview's findings read the answers the plan was made with instead
    # of asking SendGrid the same three questions again after it.
    from tests.engine.conftest import run_cli
    from tui.cli import main

    _with_custom_field(export_env).close()
    export_env.emulator.exchanges.clear()
    assert run_cli(main, "export", "news", "--segment", "germany", "--dry-run") == 0
    asked = sorted(f"{x.method} {x.endpoint}" for x in export_env.emulator.exchanges)
    assert asked == [
        "GET /v3/marketing/field_definitions",
        "GET /v3/marketing/lists/{id}",
        "GET /v3/scopes",
    ]


def test_a_preview_still_finds_a_missing_field_and_a_bad_key(
    export_env, monkeypatch, capsys
) -> None:
    from tests.engine.conftest import run_cli
    from tui.cli import main

    history = _with_custom_field(export_env)
    dest = history.get_destination("news")
    saved = history.get_mapping(dest.id)
    assert saved is not None
    history.set_mapping(dest.id, replace(saved, custom={"no_such_field": "loyalty_tier"}))
    history.close()
    capsys.readouterr()
    assert run_cli(main, "export", "news", "--segment", "germany", "--dry-run") == 0
    said = capsys.readouterr().err
    assert "would refuse: Custom field(s) no_such_field do not exist" in said
    monkeypatch.setenv("DEST_KEY", export_env.emulator.state.add_key({"mail.send"}))
    assert run_cli(main, "export", "news", "--segment", "germany", "--dry-run") == 0
    said = capsys.readouterr().err
    assert "would refuse: The API key lacks the permission 'marketing.read'" in said
    assert "GET /v3/marketing" not in said  # the key comes first: not the list's 403
    assert "no_such_field" not in said


async def test_adding_and_testing_a_destination_ask_key_and_list_at_once(
    export_env, monkeypatch
) -> None:
    from connector import destinations

    asked: list[str] = []
    monkeypatch.setattr(destinations, "SendGridClient", gated(2, asked))
    emulator = export_env.emulator
    found = await destinations.verify_destination(
        emulator.api_key, emulator.url, list_id=export_env.list_id
    )
    assert found.id == export_env.list_id
    checks = await destinations.test_connection(emulator.api_key, emulator.url, export_env.list_id)
    assert [(c.name, c.ok) for c in checks] == [("API key", True), ("scopes", True), ("list", True)]
    assert sorted(asked) == ["get_list", "get_list", "validate_key", "validate_key"]


async def test_adding_or_testing_with_a_bad_key_names_the_key_not_the_list(export_env) -> None:
    from connector import destinations
    from connector.errors import MissingScope

    emulator = export_env.emulator
    key = emulator.state.add_key({"mail.send"})  # the list look-ups are refused too
    for target in ({"list_id": "no-such-list"}, {"create_list": "new"}):
        with pytest.raises(MissingScope, match=r"lacks the permission 'marketing\.read'"):
            await destinations.verify_destination(key, emulator.url, **target)
    assert all(lst["name"] != "new" for lst in emulator.state.lists.values())
    checks = await destinations.test_connection(key, emulator.url, "no-such-list")
    assert [(c.name, c.ok) for c in checks] == [("scopes", False)]
    assert "marketing.read" in checks[0].detail


async def test_ctrl_c_while_sendgrid_answers_plans_nothing(export_env) -> None:
    # The look-ups were on the wire when the user cancelled: nothing is
    # planned or recorded afterwards, as for a cancel during planning.
    from store.workspace import QueryInterrupted

    cancel = asyncio.Event()

    class CancelledMeanwhile(SendGridClient):
        async def validate_key(self, *args: Any, **kwargs: Any) -> Any:
            answer = await super().validate_key(*args, **kwargs)
            cancel.set()  # Ctrl+C arrives before this answer is read
            return answer

    history = _with_custom_field(export_env)
    engine = _engine(export_env, history, CancelledMeanwhile)
    with pytest.raises(QueryInterrupted):
        _ = [e async for e in engine.run(ExportRequest("news", ("germany",)), cancel)]
    assert history.list_plans() == []
    assert history.list_runs() == []
    assert not any(x.method == "PUT" for x in export_env.emulator.exchanges)


async def test_a_previews_findings_read_the_profile_columns_once(export_env, monkeypatch) -> None:
    # The checks of segments and mapped columns already read the columns'
    # types; the custom fields' type check uses them instead of connecting
    # again (for a PostgreSQL source, one more connection to the server).
    history = _with_custom_field(export_env)
    dest = history.get_destination("news")
    workspace = Workspace.open(export_env.workspace)
    connects: list[bool] = []
    connect = Workspace.connect

    def counted(self: Workspace, *args: Any, **kwargs: Any) -> Any:
        connects.append(True)
        return connect(self, *args, **kwargs)

    monkeypatch.setattr(Workspace, "connect", counted)
    keys = KeyStore(export_env.state_dir)
    pre = Preflight(workspace, history, keys, export_env.state_dir)
    found = await pre.findings(dest, ExportRequest("news", ("germany",)), None)
    assert found == []
    assert len(connects) == 1
