"""`segsync runs evidence N`: consent evidence for a real run against the emulator,
checked against answers computed here from the profile rows written."""

from __future__ import annotations

import hashlib
import stat

import orjson
import pytest

from connector.consent import CONSENT_STATEMENT
from store.history import History
from store.operator import current_operator
from store.paths import history_path
from store.people import people_file
from store.safe_text import visible
from tests.engine.conftest import SEGMENT_RULES, expected_emails, run_cli
from tui.cli import main

pytestmark = pytest.mark.slow  # end to end against the emulator

SEGMENT = "big_spenders"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = run_cli(main, *argv)
    return code, capsys.readouterr().out


def digest(emails: set[str]) -> str:
    return hashlib.sha256("\n".join(sorted(emails)).encode()).hexdigest()


def test_evidence_names_the_approval_in_force_when_the_run_started(export_env, capsys):
    """A later approval (new wording) used to overwrite the one a run was made
    under: the run's evidence then showed words nobody had approved at the time."""
    code, out = cli(capsys, "export", "news", "--segment", SEGMENT, "--json")
    assert code == 0
    run_id = orjson.loads(out)["run"]
    with History(history_path(export_env.state_dir)) as history:
        dest = history.get_destination("news")
        history.record_consent(dest.id, "someone-else", "Newer words, approved later.")

    code, out = cli(capsys, "runs", "evidence", str(run_id), "--json")
    assert code == 0
    consent = orjson.loads(out)["consent"]
    assert consent["wording"] == CONSENT_STATEMENT
    assert consent["approved_by"] == current_operator()
    assert consent["approved_after_run_started"] is False
    assert consent["approvals_since"] == 1
    code, markdown = cli(capsys, "runs", "evidence", str(run_id))
    assert "approved again 1 time(s) after the run started" in markdown
    assert "Newer words" not in markdown


def test_evidence_names_consent_operator_rule_and_a_digest_an_auditor_can_recompute(
    export_env, capsys
):
    code, out = cli(capsys, "export", "news", "--segment", SEGMENT, "--json")
    assert code == 0
    run_id = orjson.loads(out)["run"]
    sent = expected_emails(export_env.rows, [SEGMENT])
    no_consent = sum(
        1 for r in export_env.rows if SEGMENT_RULES[SEGMENT](r) and not r["email_opt_in"]
    )
    assert no_consent > 0

    code, out = cli(capsys, "runs", "evidence", str(run_id), "--json")
    assert code == 0
    ev = orjson.loads(out)
    assert ev["run"] == run_id and ev["status"] == "succeeded"
    assert ev["destination"]["name"] == "news"
    assert ev["destination"]["list_id"] == export_env.list_id
    assert ev["consent"]["wording"] == CONSENT_STATEMENT
    assert ev["consent"]["approved_by"] == current_operator()
    assert ev["consent"]["approved_at"] and not ev["consent"]["approved_after_run_started"]
    assert ev["operator"] == current_operator() and ev["host"]
    assert ev["consent_column"] == "email_opt_in"
    assert ev["predicates"] == {SEGMENT: "lifetime_value >= 500"}
    assert ev["profile_source"]["path"] == str(export_env.workspace / "profiles.parquet")
    assert "true" in ev["consent_rule"] and "'yes'" in ev["consent_rule"]
    assert ev["excluded_no_consent"] == no_consent
    assert ev["people_sent"]["available"] is True
    assert ev["people_sent"]["count"] == len(sent)
    assert ev["people_sent"]["sha256"] == digest(sent)
    assert ev["people_sent"]["erased_since"] == 0

    code, markdown = cli(capsys, "runs", "evidence", str(run_id))
    assert code == 0
    assert markdown.startswith(f"# Consent evidence: run {run_id}")
    for needed in (
        digest(sent), f"{len(sent):,}", "`email_opt_in`", current_operator(),
        "`lifetime_value >= 500`", "profiles.parquet`",
    ):  # fmt: skip
        assert needed in markdown
    assert CONSENT_STATEMENT in markdown.replace("\n> ", " ")
    # No API key, and no address or profile value of anyone.
    everything = out + markdown
    assert export_env.emulator.api_key not in everything
    for row in export_env.rows:
        assert row["email"] is None or row["email"].strip().lower() not in everything.lower()
        assert row["last_name"] not in everything

    # --out writes the file owner-only; the digest still counts someone erased.
    target = export_env.state_dir.parent / "evidence.md"
    code, said = cli(capsys, "runs", "evidence", str(run_id), "--out", str(target))
    assert code == 0 and str(target) in said
    written = target.read_text()
    assert written.startswith("# Consent evidence") and written.count(digest(sent)) == 1
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    gone = sorted(sent)[0]
    code, out = cli(capsys, "forget", gone, "--yes", "--json")
    assert code == 0
    token = orjson.loads(out)["token"]
    code, out = cli(capsys, "runs", "evidence", str(run_id), "--json")
    after = orjson.loads(out)["people_sent"]
    # Totals still add up; the digest is over the record as it is now, token included.
    assert after["count"] == len(sent) and after["erased_since"] == 1
    assert after["sha256"] == digest(sent - {gone} | {token}) != digest(sent)
    code, markdown = cli(capsys, "runs", "evidence", str(run_id))
    assert "1 of them were erased since" in markdown and gone not in markdown


def test_hostile_names_stay_inert_and_a_run_without_people_record_says_so(export_env, capsys):
    code, out = cli(capsys, "export", "news", "--segment", SEGMENT, "--json")
    assert code == 0
    run_id = orjson.loads(out)["run"]
    hostile = "news\x1b]52;c;ZXZpbA==\x07\u202e [click](http://evil.example) **x**"
    with History(history_path(export_env.state_dir)) as history:
        history.update_destination(history.get_destination("news").id, name=hostile)
    people_file(export_env.state_dir, run_id).unlink()

    code, markdown = cli(capsys, "runs", "evidence", str(run_id))
    assert code == 0
    assert "\x1b" not in markdown and "\u202e" not in markdown and "\x07" not in markdown
    assert "\\x1b" in markdown and "\\u202e" in markdown
    # The name is a code span: shown literally, never a link or emphasis.
    assert f"`{visible(hostile)}`" in markdown
    assert "Digest unavailable" in markdown
    code, out = cli(capsys, "runs", "evidence", str(run_id), "--json")
    ev = orjson.loads(out)
    assert ev["destination"]["name"] == hostile  # --json stays exact
    assert ev["people_sent"] == {"available": False, "why": ev["people_sent"]["why"]}
    assert run_cli(main, "runs", "evidence", "999") == 2


def test_an_undo_run_says_it_selected_no_one_and_sent_no_one(export_env, capsys):
    code, out = cli(capsys, "export", "news", "--segment", "france", "--json")
    assert code == 0
    run = orjson.loads(out)
    added = run["counts"]["created"]
    code, out = cli(
        capsys, "undo", str(run["run"]), "--yes", "--allow-removals", str(added), "--json"
    )
    assert code == 0, out
    undo = orjson.loads(out)
    assert export_env.emulator.state.list_members(export_env.list_id) == set()

    code, out = cli(capsys, "runs", "evidence", str(undo["run"]), "--json")
    ev = orjson.loads(out)
    assert (ev["kind"], ev["undo_of"]) == ("undo", run["run"])
    assert "selects no one from the profiles" in ev["consent_rule"]
    assert ev["people_sent"]["count"] == 0
    assert ev["people_sent"]["sha256"] == hashlib.sha256(b"").hexdigest()
    code, markdown = cli(capsys, "runs", "evidence", str(undo["run"]))
    assert f"undoing run {run['run']}" in markdown
