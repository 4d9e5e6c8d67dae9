"""Changesets end to end: plan, review, apply; a ledger that tells the truth;
guardrails; removals held to the upload's standard; the record of every person.

Each defect a new user hit is reproduced here first (see the issue), against
the emulator over loopback, and checked against answers computed in the test.
"""

from __future__ import annotations

import asyncio

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector import events as ev
from connector.engine import ExportRequest
from store.changeset import Changeset, changeset_file
from store.history import History
from store.paths import history_path
from store.people import people_file, read_people
from tests.engine.conftest import expected_emails, run_cli
from tests.engine.test_engine_events import collect, engine_for
from tui.cli import main

pytestmark = pytest.mark.slow  # end to end against the emulator


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict | list]:
    capsys.readouterr()
    code = run_cli(main, *argv, "--json")
    out = capsys.readouterr().out
    return code, orjson.loads(out) if out.strip() else {}


def history(export_env) -> History:
    return History(history_path(export_env.state_dir))


def empty_list(emulator, list_id: str) -> None:
    """Take everyone off the list inside 'SendGrid', behind segsync's back."""
    state = emulator.state
    ids = [state.contact(e)["id"] for e in state.list_members(list_id)]
    state.submit_removal(list_id, ids)
    state.drain()
    assert state.list_members(list_id) == set()


def leave_germany(export_env, how_many: int, to: str = "FR") -> tuple[set[str], set[str]]:
    """Move profiles out of `germany`; returns (members before, members after)."""
    before = expected_emails(export_env.rows, ["germany"])
    rows = [dict(r) for r in export_env.rows]
    moved = 0
    for row in rows:
        if moved < how_many and row["country"] == "DE":
            row["country"] = to
            moved += 1
    pq.write_table(pa.Table.from_pylist(rows), export_env.workspace / "profiles.parquet")
    export_env.rows[:] = rows
    return before, expected_emails(rows, ["germany"])


# -- the ledger tells the truth -------------------------------------------------


def test_a_destination_pointed_at_another_list_sends_everyone_there(export_env, capsys):
    """Reproduction: ledgers were keyed by destination id, so after the edit an
    incremental export said `unchanged 3036, to_send 0` and the new list stayed empty."""
    code, _ = cli_json(capsys, "export", "news", "--segment", "germany", "--incremental")
    assert code == 0
    other = export_env.emulator.state.create_list("other")["id"]
    h = history(export_env)
    h.update_destination(h.get_destination("news").id, list_id=other)

    code, summary = cli_json(capsys, "export", "news", "--segment", "germany", "--incremental")
    assert code == 0, summary
    expected = expected_emails(export_env.rows, ["germany"])
    assert summary["counts"]["unchanged"] == 0
    assert summary["counts"]["sent"] == len(expected)
    assert export_env.emulator.state.list_members(other) == expected


def test_a_new_history_reusing_destination_id_one_does_not_inherit_a_ledger(export_env, capsys):
    code, _ = cli_json(capsys, "export", "news", "--segment", "germany", "--incremental")
    assert code == 0
    for path in export_env.state_dir.glob("history.db*"):
        path.unlink()  # the user empties the history; ledgers stay in the folder
    fresh = export_env.emulator.state.create_list("fresh")["id"]
    assert run_cli(main, "destinations", "add", "again", "--list-id", fresh,
                   "--api-key-env", "DEST_KEY", "--base-url", export_env.emulator.url,
                   "--agree") == 0  # fmt: skip
    assert history(export_env).get_destination("again").id == 1
    mapping = ["email=email", "first_name=first_name", "last_name=last_name",
               "country=country", "city=city", "--consent-column", "email_opt_in"]  # fmt: skip
    assert run_cli(main, "map", "again", *mapping) == 0
    code, summary = cli_json(capsys, "export", "again", "--segment", "germany", "--incremental")
    assert code == 0, summary
    assert export_env.emulator.state.list_members(fresh) == expected_emails(
        export_env.rows, ["germany"]
    )


def test_a_list_emptied_in_sendgrid_is_not_trusted_and_is_refilled(export_env, capsys):
    code, _ = cli_json(capsys, "export", "news", "--segment", "germany", "--incremental")
    assert code == 0
    empty_list(export_env.emulator, export_env.list_id)

    capsys.readouterr()
    code = run_cli(main, "export", "news", "--segment", "germany", "--incremental")
    err = capsys.readouterr().err
    assert code == 0, err
    assert "not trusted" in err and "the list is empty" in err
    expected = expected_emails(export_env.rows, ["germany"])
    assert export_env.emulator.state.list_members(export_env.list_id) == expected


# -- plan, review, apply --------------------------------------------------------


def test_applied_plan_equals_its_changeset_person_for_person(export_env, capsys):
    code, plan = cli_json(capsys, "plan", "news", "--segment", "germany", "--segment", "france")
    assert code == 0
    assert export_env.emulator.state.list_members(export_env.list_id) == set()  # plan sends nothing
    with Changeset(changeset_file(export_env.state_dir, plan["plan"])) as changes:
        planned = {row[0] for row in changes.people(["add", "update"])}
    assert planned == expected_emails(export_env.rows, ["germany", "france"])

    code, summary = cli_json(capsys, "apply", str(plan["plan"]), "--yes")
    assert code == 0, summary
    assert summary["plan"] == plan["plan"]
    assert export_env.emulator.state.list_members(export_env.list_id) == planned
    code, _ = cli_json(capsys, "apply", str(plan["plan"]), "--yes")
    assert code == 2  # a plan is applied once


def test_apply_refuses_a_plan_whose_profiles_changed_and_replans_on_request(export_env, capsys):
    code, plan = cli_json(capsys, "plan", "news", "--segment", "germany")
    assert code == 0
    _before, after = leave_germany(export_env, 20)

    capsys.readouterr()
    code = run_cli(main, "apply", str(plan["plan"]), "--yes")
    err = capsys.readouterr().err
    assert code == 2
    assert "out of date" in err and "profile source" in err
    assert export_env.emulator.state.list_members(export_env.list_id) == set()

    code, summary = cli_json(capsys, "apply", str(plan["plan"]), "--yes", "--replan")
    assert code == 0, summary
    assert export_env.emulator.state.list_members(export_env.list_id) == after


def rename_in_germany(export_env, how_many: int) -> set[str]:
    """Give some consenting German profiles another first name, in place;
    returns their (normalised) emails."""
    rows = [dict(r) for r in export_env.rows]
    changed: set[str] = set()
    for row in rows:
        email = (row["email"] or "").strip().lower()
        if len(changed) < how_many and email in expected_emails(export_env.rows, ["germany"]):
            row["first_name"] = "Renamed" + row["first_name"][:10]
            changed.add(email)
    pq.write_table(pa.Table.from_pylist(rows), export_env.workspace / "profiles.parquet")
    export_env.rows[:] = rows
    return changed


def test_a_plan_keeps_digests_and_apply_sends_the_profiles_values(export_env, capsys):
    code, plan = cli_json(capsys, "plan", "news", "--segment", "germany")
    assert code == 0
    rows = pq.read_table(changeset_file(export_env.state_dir, plan["plan"])).to_pylist()
    to_send = [r for r in rows if r["op"] in ("add", "update")]
    assert len(to_send) == plan["counts"]["to_send"] > 0
    assert all(r["contact"] is None and r["digest"] is not None for r in to_send)

    code, summary = cli_json(capsys, "apply", str(plan["plan"]), "--yes")
    assert code == 0, summary
    state = export_env.emulator.state
    for row in export_env.rows:
        email = (row["email"] or "").strip().lower()
        if email in {r["email"] for r in to_send} and row["email"] == email:
            assert state.contact(email)["first_name"] == row["first_name"]


def test_apply_refuses_when_values_changed_behind_an_unchanged_fingerprint(
    export_env, capsys, monkeypatch
):
    # A source rewritten in place with the same size and time passes the drift
    # check; the digests of what is sent must still match the plan.
    monkeypatch.setattr("connector.preflight.source_fingerprint", lambda _source: {"same": 1})
    code, plan = cli_json(capsys, "plan", "news", "--segment", "germany")
    assert code == 0
    changed = rename_in_germany(export_env, 3)

    mark = len(export_env.emulator.exchanges)
    capsys.readouterr()
    code = run_cli(main, "apply", str(plan["plan"]), "--yes")
    err = capsys.readouterr().err
    assert code == 2, err
    assert "3 of the" in err and "out of date" in err
    assert not [x for x in export_env.emulator.exchanges[mark:] if x.method != "GET"]
    assert history(export_env).get_plan(plan["plan"]).status == "ready"

    code, summary = cli_json(capsys, "apply", str(plan["plan"]), "--yes", "--replan")
    assert code == 0, summary
    state = export_env.emulator.state
    assert state.list_members(export_env.list_id) == expected_emails(export_env.rows, ["germany"])
    assert all(state.contact(email)["first_name"].startswith("Renamed") for email in changed)


def test_apply_refuses_people_who_joined_behind_an_unchanged_fingerprint(
    export_env, capsys, monkeypatch
):
    monkeypatch.setattr("connector.preflight.source_fingerprint", lambda _source: {"same": 1})
    code, plan = cli_json(capsys, "plan", "news", "--segment", "germany")
    assert code == 0
    rows = [dict(r) for r in export_env.rows]
    for row in rows[:30]:
        row["country"] = "DE"  # some of these join the segment: not in the plan
    pq.write_table(pa.Table.from_pylist(rows), export_env.workspace / "profiles.parquet")
    export_env.rows[:] = rows

    capsys.readouterr()
    code = run_cli(main, "apply", str(plan["plan"]), "--yes")
    err = capsys.readouterr().err
    assert code == 2, err
    assert "more would be sent now" in err
    assert export_env.emulator.state.list_members(export_env.list_id) == set()


def test_apply_asks_first_and_a_script_must_say_yes(export_env, capsys, monkeypatch):
    _, plan = cli_json(capsys, "plan", "news", "--segment", "germany")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    capsys.readouterr()
    assert run_cli(main, "apply", str(plan["plan"])) == 2
    assert "--yes" in capsys.readouterr().err
    assert export_env.emulator.state.list_members(export_env.list_id) == set()


# -- guardrails and removals ----------------------------------------------------


def test_guardrail_refusal_is_recorded_and_sends_nothing(export_env, capsys):
    code, _ = cli_json(capsys, "export", "news", "--segment", "germany", "--mode", "mirror")
    assert code == 0
    before, _after = leave_germany(export_env, 300)
    mark = len(export_env.emulator.exchanges)
    code, summary = cli_json(capsys, "export", "news", "--segment", "germany", "--mode", "mirror")
    assert code == 2 and summary["status"] == "refused"
    assert not [x for x in export_env.emulator.exchanges[mark:] if x.method != "GET"]
    assert export_env.emulator.state.list_members(export_env.list_id) == before
    run = history(export_env).get_run(summary["run"])
    assert run.status == "refused" and "would remove" in (run.message or "")
    assert run.counts["sent"] == 0 and run.counts["removed"] == 0


@pytest.mark.parametrize("outcome", ["failed", "pending", "ignored"])
async def test_removals_that_do_not_happen_stay_in_the_ledger_and_are_retried(export_env, outcome):
    """Reproduction: a failed or timed-out removal job was marked removed anyway,
    so the ledger forgot people who were still on the list."""
    mirror = ExportRequest("news", ("germany",), mode="mirror")
    first = (await collect(engine_for(export_env), mirror))[-1]
    assert first.status == "succeeded"
    before, after = leave_germany(export_env, 25)
    left = before - after
    export_env.emulator.set_faults(removal_job=outcome)
    h = history(export_env)
    h.update_destination(h.get_destination("news").id, max_removals=1000, max_removal_share=1.0)

    engine = engine_for(export_env, job_timeout=1.0, concurrency=2)
    finished = (await collect(engine, mirror))[-1]
    assert isinstance(finished, ev.RunFinished)
    assert finished.status == "partial", finished
    assert export_env.emulator.state.list_members(export_env.list_id) >= left  # still there
    assert finished.counts["removed"] == 0
    assert finished.counts["remove_failed"] == len(left)
    people = list(
        read_people(people_file(export_env.state_dir, finished.run_id), ["remove_failed"])
    )
    assert {email for email, _key, _op, _why in people} == left
    assert all(why for *_, why in people)

    export_env.emulator.set_faults(removal_job="ok")
    again = (await collect(engine_for(export_env), mirror))[-1]
    assert again.status == "succeeded", again
    assert again.counts["removed"] == len(left)  # tried again: nobody was dropped
    assert export_env.emulator.state.list_members(export_env.list_id) == after


async def test_cancel_during_removals_ends_cancelled_with_what_was_removed(export_env):
    """Reproduction: a mirror run cancelled while removing was recorded
    `succeeded` (removed 0 of 191, exit 0)."""
    mirror = ExportRequest("news", ("germany",), mode="mirror", allow_removals=1000)
    assert (await collect(engine_for(export_env), mirror))[-1].status == "succeeded"
    before, after = leave_germany(export_env, 250)
    export_env.emulator.set_faults(removal_job="pending")
    cancel = asyncio.Event()
    engine = engine_for(export_env, concurrency=1)
    events = []
    async for event in engine.run(mirror, cancel):
        events.append(event)
        if isinstance(event, ev.PhaseStarted) and event.phase == "removing":
            cancel.set()
    finished = events[-1]
    assert isinstance(finished, ev.RunFinished)
    assert finished.status == "cancelled"
    assert finished.counts["removed"] == len(
        (before - after) - export_env.emulator.state.list_members(export_env.list_id)
    )
    run = history(export_env).get_run(finished.run_id)
    assert run.status == "cancelled"


def test_people_record_names_everyone_the_run_touched(export_env, capsys):
    code, _ = cli_json(capsys, "export", "news", "--segment", "germany", "--mode", "mirror")
    assert code == 0
    before, after = leave_germany(export_env, 10)
    code, summary = cli_json(capsys, "export", "news", "--segment", "germany", "--mode", "mirror")
    assert code == 0, summary
    capsys.readouterr()
    run_cli(main, "runs", "show", str(summary["run"]), "--people", "--json")
    people = orjson.loads(capsys.readouterr().out)
    by_op: dict[str, set[str]] = {}
    for p in people:
        by_op.setdefault(p["op"], set()).add(p["email"])
    assert by_op["removed"] == before - after
    assert by_op["updated"] == after  # all already on the list
    assert "added" not in by_op
    rejected = [p for p in people if p["op"] == "rejected"]
    assert rejected and all(p["reason"] for p in rejected)
    assert any(p["reason"].startswith("no_consent") for p in rejected)  # kept per person
    assert sum(1 for p in people if p["op"] != "rejected") == len(before)


def test_people_records_go_only_by_an_explicit_prune(export_env, capsys):
    code, run = cli_json(capsys, "export", "news", "--segment", "germany")
    assert code == 0
    path = people_file(export_env.state_dir, run["run"])
    assert path.is_file()
    capsys.readouterr()
    assert run_cli(main, "runs", "prune", "--older-than", "1", "--yes") == 0
    assert path.is_file()  # the run is minutes old: kept
    assert run_cli(main, "runs", "prune", "--older-than", "0", "--yes") == 0
    assert not path.is_file()
    assert history(export_env).get_run(run["run"]).counts["sent"] == run["counts"]["sent"]
    capsys.readouterr()
    assert run_cli(main, "runs", "show", str(run["run"]), "--people") == 2
    assert "no record of the people" in capsys.readouterr().err
