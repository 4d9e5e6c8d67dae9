"""End-to-end exports against the emulator over loopback, checked against an
independently computed answer (tests/engine/conftest.py)."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store.plan import EXCLUSIONS
from tests.engine.conftest import expected_emails, run_cli
from tui.cli import main

pytestmark = pytest.mark.slow  # end to end against the emulator


def export_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = run_cli(main, "export", *argv, "--json")
    out = capsys.readouterr().out
    return code, orjson.loads(out) if out.strip() else {}


def assert_counts_add_up(counts: dict[str, int]) -> None:
    excluded = sum(counts[c] for c in EXCLUSIONS)
    assert counts["selected"] == (
        counts["to_send"] + counts["unchanged"] + counts["skipped"] + excluded
    )
    assert counts["sent"] == counts["created"] + counts["updated"] + counts["errored"]


def test_upsert_puts_exactly_the_expected_contacts_on_the_list(export_env, capsys):
    segments = ["germany", "big_spenders"]
    code, summary = export_json(
        capsys, "news", "--segment", "germany", "--segment", "big_spenders", "--batch-size", "300"
    )
    expected = expected_emails(export_env.rows, segments)
    assert code == 0, summary
    assert summary["status"] == "succeeded"
    assert export_env.emulator.state.list_members(export_env.list_id) == expected
    counts = summary["counts"]
    assert counts["to_send"] == counts["sent"] == len(expected)
    assert counts["created"] == len(expected)
    assert counts["invalid_email"] > 0 and counts["duplicate"] > 0 and counts["no_consent"] > 0
    assert counts["too_long"] > 0 and counts["no_email"] > 0
    assert_counts_add_up(counts)


def test_dry_run_sends_nothing_and_is_recorded_as_a_plan_not_a_run(export_env, capsys):
    code, summary = export_json(capsys, "news", "--segment", "germany", "--dry-run")
    assert code == 0
    assert summary["status"] == "dry_run"
    assert summary["counts"]["to_send"] == len(expected_emails(export_env.rows, ["germany"]))
    assert export_env.emulator.state.list_members(export_env.list_id) == set()
    assert export_env.emulator.state.stats()["contacts_received"] == 0
    capsys.readouterr()
    run_cli(main, "runs", "--json")
    assert orjson.loads(capsys.readouterr().out) == []  # previews do not crowd out runs
    run_cli(main, "plans", "--json")
    plans = orjson.loads(capsys.readouterr().out)
    assert [p["plan"] for p in plans] == [summary["plan"]]
    assert plans[0]["status"] == "ready" and plans[0]["mode"] == "upsert"


def test_mirror_removes_who_left_the_segment_but_never_deletes(export_env, capsys):
    code, _ = export_json(capsys, "news", "--segment", "germany", "--mode", "mirror")
    assert code == 0
    before = expected_emails(export_env.rows, ["germany"])
    assert export_env.emulator.state.list_members(export_env.list_id) == before

    rows = [dict(r) for r in export_env.rows]
    for row in rows[:300]:
        if row["country"] == "DE":
            row["country"] = "FR"  # they leave the `germany` segment
    pq.write_table(pa.Table.from_pylist(rows), export_env.workspace / "profiles.parquet")
    after = expected_emails(rows, ["germany"])
    left = before - after
    assert left

    # More than 10 % of the list would go: the guardrail refuses before any request.
    requests_before = len(export_env.emulator.exchanges)
    code, summary = export_json(capsys, "news", "--segment", "germany", "--mode", "mirror")
    assert code == 2, summary
    assert summary["status"] == "refused"
    assert summary["counts"]["to_remove"] == len(left) and summary["counts"]["removed"] == 0
    assert export_env.emulator.state.list_members(export_env.list_id) == before
    writes = [x for x in export_env.emulator.exchanges[requests_before:] if x.method != "GET"]
    assert writes == []  # nothing was sent, nobody removed

    code, summary = export_json(
        capsys, "news", "--segment", "germany", "--mode", "mirror",
        "--allow-removals", str(len(left)),
    )  # fmt: skip
    assert code == 0, summary
    assert export_env.emulator.state.list_members(export_env.list_id) == after
    assert summary["counts"]["removed"] == len(left)
    for email in left:  # removed from the list, still a contact of the account
        assert export_env.emulator.state.contact(email)["email"] == email


def test_incremental_sends_only_changed_contacts(export_env, capsys):
    code, _ = export_json(capsys, "news", "--segment", "germany")
    assert code == 0
    received_before = export_env.emulator.state.stats()["contacts_received"]

    rows = [dict(r) for r in export_env.rows]
    changed = set()
    for row in rows:
        if len(changed) < 7 and row["country"] == "DE" and row["email_opt_in"]:
            email = (row["email"] or "").strip().lower()
            if email in expected_emails(rows, ["germany"]):
                row["city"] = "Hamburg"
                changed.add(email)
    pq.write_table(pa.Table.from_pylist(rows), export_env.workspace / "profiles.parquet")

    code, summary = export_json(capsys, "news", "--segment", "germany", "--incremental")
    assert code == 0, summary
    assert summary["counts"]["to_send"] == len(changed)
    assert summary["counts"]["updated"] == len(changed)
    received = export_env.emulator.state.stats()["contacts_received"] - received_before
    assert received == len(changed)
    for email in changed:
        assert export_env.emulator.state.contact(email)["city"] == "Hamburg"

    code, summary = export_json(capsys, "news", "--segment", "germany", "--incremental")
    assert code == 0
    assert summary["counts"]["to_send"] == 0
    assert export_env.emulator.state.stats()["contacts_received"] - received_before == len(changed)
