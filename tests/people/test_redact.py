"""store/redact.py on its own: whole-address matching (nobody else's record is
touched), every TEXT value of any SQLite schema, and plan rows an unfinished
run could resume."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from store.changeset import CHANGESET_SCHEMA
from store.redact import (
    Matcher,
    RedactionIncomplete,
    find_traces,
    redact_database,
    redact_file,
    redact_text_files,
    remove_stray_temp_files,
)

TOKEN = "forgotten:0123456789abcdef"


def test_the_address_is_matched_whole_in_any_case_and_json_escaped():
    m = Matcher("  A.B@Example.com ")
    assert m.email == "a.b@example.com"
    for text in (
        "a.b@example.com",
        "<A.B@EXAMPLE.COM>",
        "to: a.b@example.com.",
        '"a.b@example.com"',
    ):
        assert m.found_in(text), text
        assert "a.b@" not in m.replace(text, TOKEN).lower() and TOKEN in m.replace(text, TOKEN)
    for other in (
        "xa.b@example.com",
        "a.b@example.community",
        "a.b@example.com.au",
        "ya+a.b@example.com",
    ):
        assert not m.found_in(other), other
        assert m.replace(other, TOKEN) == other
    accented = Matcher("zoë@example.com")
    assert accented.found_in(json.dumps({"email": "zoë@example.com"}))  # \u00eb in JSON text
    assert accented.found_in(json.dumps({"email": "ZOË@example.com"}, ensure_ascii=False))


def test_every_text_value_of_any_schema_is_rewritten_and_nothing_else(tmp_path: Path):
    db = tmp_path / "history.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE rejected_row (id INTEGER PRIMARY KEY, key TEXT, email TEXT)")
    con.execute("CREATE TABLE later_table (note TEXT, blob_like BLOB, n INTEGER)")
    con.executemany(
        "INSERT INTO rejected_row (key, email) VALUES (?, ?)",
        [("7", "  A@B.com "), ("8", "aa@b.com"), ("9", "c@d.com")],
    )
    con.execute(
        "INSERT INTO later_table VALUES (?, ?, ?)",
        (json.dumps({"first": "a@b.com", "other": "aa@b.com"}), b"\x00", 3),
    )
    con.commit()
    con.close()

    report = redact_database(db, Matcher("a@b.com"), TOKEN)

    assert report.values == {"rejected_row.email": 1, "later_table.note": 1}
    con = sqlite3.connect(db)
    rows = con.execute("SELECT key, email FROM rejected_row ORDER BY id").fetchall()
    assert rows == [(None, f"  {TOKEN} "), ("8", "aa@b.com"), ("9", "c@d.com")]
    note = json.loads(con.execute("SELECT note FROM later_table").fetchone()[0])
    assert note == {"first": TOKEN, "other": "aa@b.com"}  # still valid JSON
    con.close()
    assert find_traces(tmp_path, "a@b.com") == []
    assert find_traces(tmp_path, "c@d.com") == [db]


def test_a_plan_an_unfinished_run_may_resume_rejects_the_person(tmp_path: Path):
    plans = tmp_path / "plans"
    plans.mkdir()
    rows = [
        ("a@b.com", "1", "add", None, None, "A@B.com", 11, '{"email":"a@b.com"}'),
        ("c@d.com", "2", "update", None, None, "c@d.com", 12, '{"email":"c@d.com","x":"a@b.com"}'),
        ("a@b.com", "3", "rejected", "duplicate", "same as a@b.com", " a@b.com", None, None),
    ]
    table = pa.Table.from_pylist(
        [dict(zip(CHANGESET_SCHEMA.names, r, strict=True)) for r in rows], schema=CHANGESET_SCHEMA
    )
    for name in ("plan-1.parquet", "plan-2.parquet"):
        pq.write_table(table, plans / name)
    m = Matcher("a@b.com")

    finished = redact_file(tmp_path, plans / "plan-1.parquet", m, TOKEN, set())
    resumable = redact_file(
        tmp_path, plans / "plan-2.parquet", m, TOKEN, {plans / "plan-2.parquet"}
    )

    assert (finished.kind, finished.rows, finished.mentions) == ("plan", 2, 2)
    done = pq.read_table(plans / "plan-1.parquet").to_pylist()
    assert [r["op"] for r in done] == ["add", "update", "rejected"]  # counts unchanged
    assert done[0] | {"op": None} == {
        "email": TOKEN, "key": None, "op": None, "reason": None, "detail": None,
        "source_email": TOKEN, "digest": None, "contact": None,
    }  # fmt: skip
    assert done[1]["contact"] == '{"email":"c@d.com","x":"' + TOKEN + '"}'
    assert done[2]["detail"] == f"same as {TOKEN}" and done[2]["reason"] == "duplicate"
    assert resumable.rows == 2
    again = pq.read_table(plans / "plan-2.parquet").to_pylist()
    assert [(r["op"], r["reason"]) for r in again] == [
        ("rejected", "forgotten"), ("update", None), ("rejected", "duplicate"),
    ]  # fmt: skip
    assert find_traces(tmp_path, "a@b.com") == []


def test_arrow_bytes_outside_the_values_and_dead_writers_temp_files_are_found(tmp_path: Path):
    runs = tmp_path / "runs" / "1"
    runs.mkdir(parents=True)
    everyone = pa.array(["x@y.com", "a@b.com"], pa.string())
    path = runs / "batch-0.arrow"
    with ipc.new_file(path, pa.schema([("email", pa.string())])) as writer:
        writer.write_table(pa.table({"email": everyone.slice(0, 1)}))  # a slice, as the engine
    assert b"a@b.com" in path.read_bytes()  # the shared buffer's tail came along
    stray = runs / ".batch-1.arrow.999999999.tmp"
    stray.write_bytes(b"half written a@b.com")
    m = Matcher("a@b.com")
    assert sorted(find_traces(tmp_path, "a@b.com")) == sorted([path, stray])

    assert redact_file(tmp_path, path, m, TOKEN, set()) is not None
    assert remove_stray_temp_files(tmp_path, m) == [stray]

    assert find_traces(tmp_path, "a@b.com") == []
    with ipc.open_file(path) as reader:
        assert reader.read_all().column("email").to_pylist() == ["x@y.com"]


def test_a_log_that_mentions_them_is_rewritten_and_binary_files_are_only_reported(tmp_path):
    log = tmp_path / "syncs.log"
    log.write_text("run 3: contact for 'A@b.com' too large; aa@b.com fine\n")
    binary = tmp_path / "odd.bin"
    binary.write_bytes(b"\xff\xfe a@b.com")
    m = Matcher("a@b.com")

    assert redact_text_files(tmp_path, m, TOKEN) == [log]

    assert log.read_text() == f"run 3: contact for '{TOKEN}' too large; aa@b.com fine\n"
    assert log.stat().st_mode & 0o077 == 0
    assert find_traces(tmp_path, "a@b.com") == [binary]


def test_a_reader_holding_the_history_open_fails_the_erasure_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr("store.redact.COMPACT_WAIT", 0.2)
    db = tmp_path / "history.db"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE t (email TEXT)")
    con.execute("INSERT INTO t VALUES ('a@b.com')")
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()  # an open snapshot, like a slow app
    try:
        with pytest.raises(RedactionIncomplete, match="run `segsync forget` again"):
            redact_database(db, Matcher("a@b.com"), TOKEN)
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert redact_database(db, Matcher("a@b.com"), TOKEN).values == {}  # done already
    con.close()
    assert find_traces(tmp_path, "a@b.com") == []
