"""`segsync forget` end to end: a real export to the emulator over loopback, then
erasure, checked from the outside (the emulator's list, every file of the
state folder searched independently, counts read back from history)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.emulator import Emulator
from store.history import History
from store.paths import history_path
from store.people import people_file, read_people
from tests.engine.conftest import expected_emails, run_cli
from tests.people.traces import all_files, holders
from tui.cli import main

pytestmark = pytest.mark.slow  # end to end against the emulator

SEGMENT = "big_spenders"


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict | list]:
    capsys.readouterr()
    code = run_cli(main, *argv, "--json")
    out = capsys.readouterr().out
    return code, orjson.loads(out) if out.strip() else {}


def single_row_person(rows: list[dict], among: list[str] | None = None) -> str:
    """Someone sent by an export of SEGMENT whose address is on one profile row
    only (the first of ``among`` that is, when given)."""
    sent = expected_emails(rows, [SEGMENT])
    per_email: dict[str, int] = {}
    for row in rows:
        if row["email"]:
            key = row["email"].strip().lower()
            per_email[key] = per_email.get(key, 0) + 1
    return next(e for e in (among or sorted(sent)) if e in sent and per_email[e] == 1)


def batch_edges(state: Path, run_id: int) -> list[str]:
    """The first and last addresses of each batch, as history records them."""
    with History(history_path(state)) as history:
        return [e for b in history.get_run(run_id).batches for e in (b.first_email, b.last_email)]


def backup_history(state: Path) -> Path:
    """A copy like the one an upgrade takes (`history.db.v*.bak`), which must be
    redacted too."""
    target = state / "history.db.v3-20260101T000000.bak"
    source = sqlite3.connect(history_path(state))
    dest = sqlite3.connect(target)
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()
    target.chmod(0o600)
    return target


def ledger_rows(state: Path) -> dict[Path, int]:
    return {p: pq.read_metadata(p).num_rows for p in (state / "ledgers").glob("*.parquet")}


def test_forget_takes_them_off_the_list_and_leaves_no_plain_copy(export_env, capsys):
    state, emulator = export_env.state_dir, export_env.emulator
    code, run = cli_json(capsys, "export", "news", "--segment", SEGMENT, "--batch-size", "100")
    assert code == 0, run
    # Someone history names too: the first address of a batch.
    email = single_row_person(export_env.rows, batch_edges(state, run["run"]))
    assert email in emulator.state.list_members(export_env.list_id)
    code, plan = cli_json(capsys, "plan", "news", "--segment", SEGMENT)  # reviewed, not applied
    assert code == 0 and plan["status"] == "ready"
    backup = backup_history(state)
    with History(history_path(state)) as history:
        run_before = history.get_run(run["run"])
        plan_counts_before = history.get_plan(plan["plan"]).counts
    people_before = list(read_people(people_file(state, run["run"])))
    ledgers_before = ledger_rows(state)
    held = holders(state, email)
    # The test can fail: before forget the address is in the history, its
    # backup, the ledger, both plans and the people record.
    assert history_path(state) in held and backup in held
    assert {p.parent.name for p in held} >= {"ledgers", "plans", "people"}

    code, report = cli_json(capsys, "forget", email, "--yes")

    assert code == 0, report
    assert report["complete"] and report["copies_left"] == []
    assert [(o["destination"], o["result"]) for o in report["lists"]] == [("news", "removed")]
    # Off the list, but the contact is still in the account (never deleted).
    assert email not in emulator.state.list_members(export_env.list_id)
    assert emulator.state.contact(email)["email"] == email
    assert not any(
        x.method == "DELETE" and x.path.endswith("/v3/marketing/contacts")
        for x in emulator.exchanges
    )
    # No file anywhere in the state folder names them, in any case or encoding.
    assert holders(state, email) == {}
    wal = history_path(state).with_name("history.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    for path in all_files(state):
        assert path.stat().st_mode & 0o077 == 0, path  # rewritten files stay owner-only
    # Counts still add up: the run, the plan, the people record keep every row.
    token = report["token"]
    with History(history_path(state)) as history:
        run_after = history.get_run(run["run"])
        assert run_after.counts == run_before.counts
        assert [b.contacts for b in run_after.batches] == [b.contacts for b in run_before.batches]
        assert history.get_plan(plan["plan"]).counts == plan_counts_before
        assert history.get_plan(plan["plan"]).status == "superseded"
        assert report["plans_superseded"] == [plan["plan"]]
    people_after = list(read_people(people_file(state, run["run"])))
    assert len(people_after) == len(people_before)
    assert sorted(op for _e, _k, op, _r in people_after) == sorted(
        op for _e, _k, op, _r in people_before
    )
    mine = [row for row in people_after if row[0] == token]
    assert len(mine) == 1 and mine[0][1] is None and mine[0][2] == "added"  # key gone too
    # The ledger lost exactly their row.
    assert sum(ledger_rows(state).values()) == sum(ledgers_before.values()) - 1
    # The superseded plan cannot be applied any more.
    assert run_cli(main, "apply", str(plan["plan"]), "--yes") == 2

    # A later export leaves them out while the profile source still has them.
    code, again = cli_json(capsys, "export", "news", "--segment", SEGMENT)
    assert code == 0, again
    assert again["counts"]["forgotten"] == 1
    assert email not in emulator.state.list_members(export_env.list_id)
    assert holders(state, email) == {}

    # Once the source no longer has them, the digest goes: someone who signs
    # up again later is new, sent like anyone with consent.
    rows = [r for r in export_env.rows if (r["email"] or "").strip().lower() != email]
    pq.write_table(pa.Table.from_pylist(rows), export_env.workspace / "profiles.parquet")
    code, without = cli_json(capsys, "export", "news", "--segment", SEGMENT)
    assert code == 0 and without["counts"].get("forgotten", 0) == 0
    pq.write_table(pa.Table.from_pylist(export_env.rows), export_env.workspace / "profiles.parquet")
    code, back = cli_json(capsys, "export", "news", "--segment", SEGMENT)
    assert code == 0 and back["counts"].get("forgotten", 0) == 0
    assert email in emulator.state.list_members(export_env.list_id)


def test_a_workspace_without_them_does_not_release_them_for_another(
    export_env, capsys, monkeypatch, tmp_path
):
    # One state folder, two workspaces: the one that never held the person must
    # not make the one that still does send them again.
    email = single_row_person(export_env.rows)
    assert run_cli(main, "export", "news", "--segment", SEGMENT) == 0
    assert run_cli(main, "forget", email, "--yes") == 0
    other = tmp_path / "other-ws"
    other.mkdir()
    rows = [r for r in export_env.rows if (r["email"] or "").strip().lower() != email]
    pq.write_table(pa.Table.from_pylist(rows), other / "profiles.parquet")
    (other / "segments.toml").write_text((export_env.workspace / "segments.toml").read_text())

    monkeypatch.setenv("SEGSYNC_WORKSPACE", str(other))
    code, there = cli_json(capsys, "export", "news", "--segment", SEGMENT)
    assert code == 0 and there["counts"].get("forgotten", 0) == 0

    monkeypatch.setenv("SEGSYNC_WORKSPACE", str(export_env.workspace))
    code, here = cli_json(capsys, "export", "news", "--segment", SEGMENT)
    assert code == 0, here
    assert here["counts"]["forgotten"] == 1
    assert email not in export_env.emulator.state.list_members(export_env.list_id)


def test_an_unreachable_destination_is_reported_and_local_records_are_still_erased(
    export_env, capsys, monkeypatch
):
    """Person 70 also has a duplicate profile row spelled `  PERSON70@Example.com `,
    which history keeps as a rejected row: erasure finds it in any case."""
    monkeypatch.setattr(
        "connector.forget.CLIENT_OPTIONS", {"max_attempts": 2, "max_total_wait": 2.0}
    )
    state, emulator = export_env.state_dir, export_env.emulator
    email = "person70@example.com"
    assert email in expected_emails(export_env.rows, [SEGMENT])
    assert run_cli(main, "export", "news", "--segment", SEGMENT) == 0
    with Emulator() as other:
        other_list = other.state.create_list("elsewhere")["id"]
        monkeypatch.setenv("OTHER_KEY", other.api_key)
        add = ["destinations", "add", "other", "--list-id", other_list, "--api-key-env"]
        assert run_cli(main, *add, "OTHER_KEY", "--base-url", other.url, "--agree") == 0
        assert run_cli(main, "map", "other", "email=email", "--consent-column", "email_opt_in") == 0
        assert run_cli(main, "export", "other", "--segment", SEGMENT) == 0
        assert email in other.state.list_members(other_list)
    assert len(ledger_rows(state)) == 2
    held = holders(state, email)
    assert history_path(state) in held

    code, report = cli_json(capsys, "forget", email, "--yes")

    assert code == 1  # not everything was done: the exit code says so
    results = {o["destination"]: (o["result"], o["done"]) for o in report["lists"]}
    assert results == {"news": ("removed", True), "other": ("unreachable", False)}
    assert email not in emulator.state.list_members(export_env.list_id)
    assert holders(state, email) == {}  # both ledgers, history, people: all erased
    assert report["files"]["ledger"] == {"files": 2, "rows": 2, "mentions": 0}
    code, again = cli_json(capsys, "export", "news", "--segment", SEGMENT)
    assert code == 0 and again["counts"]["forgotten"] == 2  # both of their profile rows


def test_forget_asks_first_and_refuses_without_a_terminal(export_env, capsys, monkeypatch):
    state = export_env.state_dir
    email = single_row_person(export_env.rows)
    assert run_cli(main, "export", "news", "--segment", SEGMENT) == 0
    monkeypatch.setattr("sys.stdin", _Input("", tty=False))
    assert run_cli(main, "forget", email) == 2
    assert "--yes" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", _Input("n\n", tty=True))
    assert run_cli(main, "forget", email) == 2
    assert email in export_env.emulator.state.list_members(export_env.list_id)
    assert not (state / "forgotten.parquet").exists()
    assert holders(state, email)  # nothing was touched
    monkeypatch.setattr("sys.stdin", _Input("y\n", tty=True))
    capsys.readouterr()
    assert run_cli(main, "forget", email) == 0
    out = capsys.readouterr().out
    assert "news" in out and "removed from the list" in out and "ledgers" in out
    assert email not in out  # the report may be logged: it names the token only
    code, again = cli_json(capsys, "forget", email, "--yes")  # again: nothing left to do
    assert code == 0 and again["lists"][0]["result"] == "not_on_list"
    assert again["files"] == {} and all(not db["values"] for db in again["history"])
    assert email not in export_env.emulator.state.list_members(export_env.list_id)
    assert holders(state, email) == {}
    assert run_cli(main, "forget", "not an address", "--yes") == 2


class _Input:
    def __init__(self, text: str, tty: bool) -> None:
        self._lines = text.splitlines(keepends=True)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""
