"""The engine's event stream: what the TUI and the command line both render."""

from __future__ import annotations

import orjson
import pytest

from connector import events as ev
from connector.engine import DATA_PROBLEMS, EngineSettings, ExportEngine, ExportRequest
from store.history import History
from store.ledger import ledger_file, read_info
from store.paths import history_path
from store.people import people_file, read_people
from store.secrets import KeyStore
from store.workspace import Workspace
from tests.engine.conftest import expected_emails

pytestmark = pytest.mark.slow  # end to end against the emulator


def engine_for(export_env, **settings) -> ExportEngine:
    return ExportEngine(
        workspace=Workspace.open(export_env.workspace),
        history=History(history_path(export_env.state_dir)),
        keys=KeyStore(export_env.state_dir),
        state_dir=export_env.state_dir,
        settings=EngineSettings(poll_interval=0.05, **settings),
    )


async def collect(engine: ExportEngine, request: ExportRequest) -> list[ev.Event]:
    return [event async for event in engine.run(request)]


async def test_rate_limits_and_server_errors_slow_a_run_but_do_not_fail_it(export_env):
    export_env.emulator.set_faults(script=["ok", "ok", "429", "500", "drop", "503"])
    engine = engine_for(export_env, max_contacts=200, concurrency=2)
    events = await collect(engine, ExportRequest("news", ("germany",)))

    waits = [e for e in events if isinstance(e, ev.RateLimitWait)]
    retries = [e for e in events if isinstance(e, ev.RetryScheduled)]
    assert waits and waits[0].seconds >= 0
    assert len(retries) >= 3
    finished = events[-1]
    assert isinstance(finished, ev.RunFinished) and finished.status == "succeeded"
    members = export_env.emulator.state.list_members(export_env.list_id)
    assert members == expected_emails(export_env.rows, ["germany"])


async def test_event_order_and_batches(export_env):
    engine = engine_for(export_env, max_contacts=250)
    events = await collect(engine, ExportRequest("news", ("france",)))
    kinds = [type(e).__name__ for e in events]
    # Planning comes first and belongs to no run yet (a plan that a guardrail
    # refuses never becomes a sending run); every event after it is the run's.
    started = kinds.index("RunStarted")
    assert set(kinds[:started]) <= {"PhaseStarted", "PlanReady"}
    assert all(e.run_id == 0 for e in events[:started])
    assert all(e.run_id == events[started].run_id for e in events[started:])
    assert kinds.index("PlanReady") < kinds.index("BatchSent") < kinds.index("JobFinished")
    assert kinds[-1] == "RunFinished"
    plan = next(e for e in events if isinstance(e, ev.PlanReady))
    sent = [e for e in events if isinstance(e, ev.BatchSent)]
    # The batch sizes follow from the rows written in the test, not from the
    # engine's own arithmetic: 732 contacts in bodies of at most 250 are
    # 250 + 250 + 232, and the emulator received exactly those bodies.
    want = expected_emails(export_env.rows, ["france"])
    assert plan.counts["to_send"] == len(want) == 732
    assert len(sent) == plan.batches == 3
    assert sorted(e.contacts for e in sent) == [232, 250, 250]
    bodies = [
        x.request_json["contacts"]
        for x in export_env.emulator.exchanges
        if x.method == "PUT" and x.status == 202
    ]
    assert sorted(len(b) for b in bodies) == [232, 250, 250]
    assert {c["email"] for b in bodies for c in b} == want
    assert sent[-1].sent_total == plan.counts["to_send"]
    finished = [e for e in events if isinstance(e, ev.JobFinished)]
    assert {e.status for e in finished} == {"completed"}


async def test_rows_sendgrid_rejects_are_recorded_with_reasons(export_env):
    expected = sorted(expected_emails(export_env.rows, ["germany"]))
    refused = set(expected[:5])
    export_env.emulator.set_faults(error_emails=refused)
    engine = engine_for(export_env, max_contacts=400)
    events = await collect(engine, ExportRequest("news", ("germany",)))
    finished = events[-1]
    assert isinstance(finished, ev.RunFinished) and finished.status == "partial"
    assert finished.counts["errored"] == 5
    history = History(history_path(export_env.state_dir))
    rows = [r for r in history.rejected_rows(finished.run_id) if r.source == "sendgrid"]
    assert {r.email for r in rows} == refused
    assert all(r.reason for r in rows)
    assert export_env.emulator.state.list_members(export_env.list_id) == set(expected) - refused


async def test_the_previews_first_body_is_how_the_applied_plan_begins(export_env):
    # The preview builds only enough contacts for the characters it shows: what
    # it shows must still be the first characters of the first request sent.
    engine = engine_for(export_env, max_contacts=500, concurrency=1)
    events = await collect(engine, ExportRequest("news", ("germany", "france"), dry_run=True))
    preview = next(e for e in events if isinstance(e, ev.PreviewReady))
    assert preview.first_body.endswith(" …")
    shown = preview.first_body.removesuffix(" …")
    assert len(shown) == 4000

    await collect(engine, ExportRequest("news", plan_id=preview.plan_id))
    first = next(x for x in export_env.emulator.exchanges if x.method == "PUT")
    assert len(first.request_json["contacts"]) == 500
    sent = orjson.dumps(first.request_json).decode()
    assert sent.startswith(shown)


async def test_a_ledger_that_cannot_be_written_still_leaves_the_people_record(
    export_env, monkeypatch
):
    # The people record and the ledger are written side by side: a failing
    # ledger (a full disk) must not cost the record of who SendGrid confirmed;
    # the run is not finished (segsync marks it interrupted when it next opens
    # the history after this process).
    from connector import engine as engine_module
    from store.people import people_file, read_people

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(engine_module, "write_ledger", disk_full)
    engine = engine_for(export_env, max_contacts=400)
    with pytest.raises(OSError, match="No space left"):
        await collect(engine, ExportRequest("news", ("germany",)))
    history = History(history_path(export_env.state_dir))
    run = history.list_runs(limit=1)[0]
    assert run.status == "running"  # never recorded as finished, let alone succeeded
    people = {p.email for p in read_people(people_file(export_env.state_dir, run.id), ["added"])}
    assert people == expected_emails(export_env.rows, ["germany"])


async def test_the_plans_data_problems_are_recorded_in_history_as_the_plan_found_them(
    export_env,
):
    engine = engine_for(export_env, max_contacts=400)
    events = await collect(engine, ExportRequest("news", ("germany",)))
    finished = events[-1]
    assert isinstance(finished, ev.RunFinished) and finished.status == "succeeded"
    history = History(history_path(export_env.state_dir))
    recorded = sorted(
        (r.key, r.reason) for r in history.rejected_rows(finished.run_id) if r.source == "plan"
    )
    # The people record names every person the plan left out, with the same
    # "category: detail" reason; the history keeps those with a data problem.
    people = sorted(
        (p.key, p.reason)
        for p in read_people(people_file(export_env.state_dir, finished.run_id), ["rejected"])
        if not p.reason.startswith("no_consent")
    )
    assert recorded == people
    assert any(reason == "invalid_email: not a valid email address" for _, reason in recorded)
    assert sum(finished.counts[c] for c in DATA_PROBLEMS) == len(recorded)


async def test_an_unchanged_re_export_leaves_the_ledger_file_as_it_is(export_env):
    first = (await collect(engine_for(export_env), ExportRequest("news", ("germany",))))[-1]
    assert isinstance(first, ev.RunFinished) and first.status == "succeeded"
    destination = History(history_path(export_env.state_dir)).get_destination("news")
    path = ledger_file(export_env.state_dir, destination.base_url, destination.list_id or "")
    written, info = path.stat(), read_info(path)
    assert info is not None and info.rows == first.counts["to_send"]
    again = engine_for(export_env)
    second = (await collect(again, ExportRequest("news", ("germany",), incremental=True)))[-1]
    assert isinstance(second, ev.RunFinished) and second.status == "succeeded"
    assert second.counts["to_send"] == 0 and second.counts["unchanged"] == info.rows
    # Nothing was sent: the ledger is right as it is, and is not rewritten.
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert read_info(path) == info
