"""`segsync explain`: every answer checked against one computed here from the rows."""

from __future__ import annotations

import orjson
import pytest

from tests.engine.conftest import SEGMENT_RULES, expected_emails, run_cli
from tests.engine.test_changesets import cli_json, leave_germany
from tui.cli import main

pytestmark = pytest.mark.slow  # end to end against the emulator


def explain_json(capsys, *argv: str) -> dict:
    code, answer = cli_json(capsys, "explain", *argv)
    assert code == 0
    return answer


def by_key(rows: list[dict], key: int) -> dict:
    return next(r for r in rows if r["customer_id"] == key)


def independent(row: dict, segments: list[str]) -> str:
    """The row's fate by the rules the fixture wrote down (not segsync's SQL)."""
    if not any(SEGMENT_RULES[s](row) for s in segments):
        return "not selected"
    if not row["email_opt_in"]:
        return "no_consent"
    if row["email"] is None:
        return "no_email"
    if "@" not in row["email"]:
        return "invalid_email"
    if len(row["first_name"]) > 50:
        return "too_long"
    return "to_send"


@pytest.mark.parametrize("key", [0, 3, 5, 7, 12, 30, 43, 75, 123, 130])
def test_each_answer_matches_the_rules_computed_independently(export_env, capsys, key):
    run_cli(main, "export", "news", "--segment", "germany", "--segment", "big_spenders")
    segments = ["germany", "big_spenders"]
    row = by_key(export_env.rows, key)
    answer = explain_json(capsys, "--key", str(key))
    if row["email"] is None:
        assert answer["rows"] == [] and answer["email"] is None
        return
    email = row["email"].strip().lower()
    assert answer["email"] == email
    mine = next(r for r in answer["rows"] if r["key"] == str(key))
    assert mine["segments"]["germany"] == SEGMENT_RULES["germany"](row)
    assert mine["segments"]["big_spenders"] == SEGMENT_RULES["big_spenders"](row)
    assert mine["segments"]["france"] == SEGMENT_RULES["france"](row)
    assert mine["consent_ok"] == row["email_opt_in"]
    assert mine["email_verdict"] == ("valid" if "@" in email else "invalid")
    fate = independent(row, segments)
    if fate == "not selected":
        assert mine["status"] is None
        assert answer["verdict"].startswith("not selected")
    else:
        assert mine["status"] == fate
    assert any(f["too_long"] for f in mine["fields"]) == (len(row["first_name"]) > 50)
    on_list = email in expected_emails(export_env.rows, segments)
    assert answer["on_list"] == on_list
    ops = {r["op"] for r in answer["runs"]}
    if on_list:
        assert "added" in ops and answer["since_run"] == 1
        # Anything else this run did to the address was to a duplicate row of it.
        others = [r for r in answer["runs"] if r["op"] != "added"]
        assert all(r["op"] == "rejected" and r["reason"].startswith("duplicate") for r in others)
        assert answer["payload"] == "unchanged"
    elif fate not in ("not selected", "to_send"):
        assert "rejected" in ops


def test_a_duplicate_names_the_row_that_won(export_env, capsys):
    run_cli(main, "export", "news", "--segment", "france")
    dup = next(r for r in export_env.rows if r["customer_id"] % 60 == 11
               and r["customer_id"] > 60 and r["email"] and r["country"] == "FR"
               and r["email_opt_in"]
               and by_key(export_env.rows, r["customer_id"] - 1)["email_opt_in"])  # fmt: skip
    answer = explain_json(capsys, dup["email"])
    statuses = {r["key"]: (r["status"], r["detail"]) for r in answer["rows"]}
    winner = str(dup["customer_id"] - 1)
    assert statuses[winner][0] == "to_send"
    assert statuses[str(dup["customer_id"])] == (
        "duplicate",
        f"same email as the row with key {winner}",
    )


def test_a_person_who_left_is_shown_removed_and_a_stranger_is_never_seen(export_env, capsys):
    run_cli(main, "export", "news", "--segment", "germany", "--mode", "mirror")
    before, after = leave_germany(export_env, 5, to="ES")
    run_cli(main, "export", "news", "--segment", "germany", "--mode", "mirror")
    gone = sorted(before - after)[0]
    answer = explain_json(capsys, gone)
    assert [r["op"] for r in answer["runs"]] == ["added", "removed"]
    assert answer["on_list"] is False
    assert answer["verdict"].startswith("not selected")

    capsys.readouterr()
    assert run_cli(main, "explain", "nobody@nowhere.example") == 0
    out = capsys.readouterr().out
    assert "is not in the profile source" in out and "no run touched this address" in out


def test_values_changed_since_the_last_run_say_update(export_env, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run_cli(main, "export", "news", "--segment", "germany")
    target = next(r for r in export_env.rows if r["country"] == "DE" and r["customer_id"] > 100
                  and (r["email"] or "").strip().lower() in expected_emails(
                      export_env.rows, ["germany"]))  # fmt: skip
    rows = [dict(r) for r in export_env.rows]
    by_key(rows, target["customer_id"])["city"] = "Hamburg"
    pq.write_table(pa.Table.from_pylist(rows), export_env.workspace / "profiles.parquet")
    answer = explain_json(capsys, target["email"])
    assert answer["payload"] == "changed"
    assert "would be updated" in answer["verdict"]
    capsys.readouterr()
    run_cli(main, "explain", target["email"])
    assert orjson.dumps(answer)  # the JSON and the text come from one answer


def test_custom_fields_do_not_make_everyone_look_changed(export_env, capsys):
    """Reproduction: explain planned with field names where the export sent
    SendGrid's field ids, so the digests differed and everyone read 'changed'."""
    assert run_cli(main, "map", "news", "loyalty_tier=loyalty_tier", "--create-fields") == 0
    assert run_cli(main, "export", "news", "--segment", "germany") == 0
    email = sorted(expected_emails(export_env.rows, ["germany"]))[0]
    answer = explain_json(capsys, email)
    assert answer["on_list"] is True
    assert answer["payload"] == "unchanged", answer["verdict"]


def test_explain_reads_the_record_without_sqlalchemy(export_env, capsys):
    """A fresh `segsync explain` reads the history with sqlite3 (store.history_read)."""
    from tests.cli.test_startup import ORM, imports, top

    run_cli(main, "export", "news", "--segment", "germany")
    row = next(r for r in export_env.rows if r["email"] and "@" in r["email"])
    code, modules, out = imports("explain", row["email"])
    assert code == 0 and row["email"].strip().lower() in out
    assert top(modules) & ORM == set()
