"""Queries a predicate can make endless, and predicates that only fail late.

A segment predicate is user SQL: ``WITH RECURSIVE`` or a huge ``range()`` in it
runs forever, and DuckDB does not look at Python's signals while such a step
runs. These tests hold the workspace to its promises: every query can be
interrupted from another thread, counts have a time limit that names the slow
segment while the others count, and predicates that are empty in disguise or
that fail on the data are reported by segment name without internal SQL.
Time bounds are generous on purpose (a shared 2-core machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store.workspace import (
    PredicateError,
    QueryInterrupted,
    QueryTimeout,
    Workspace,
    WorkspaceError,
    cursor,
    interrupt_all,
    is_interrupt,
    run_query,
)

from .conftest import SEGMENTS

pytestmark = pytest.mark.slow  # endless queries stopped by limits and interrupts

ENDLESS = {
    "recursive": "(WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) "
    "SELECT count(*) FROM t) > 0",
    "huge_range": "(SELECT count(*) FROM range(1000000000000)) > 0",
    "huge_range_per_row": "(SELECT count(*) FROM range(customer_id * 1000000000000)) > 0",
}


def _with_segments(extra: dict[str, str]) -> str:
    return SEGMENTS + "".join(f"\n[segments.{n}]\nwhere = '''{w}'''\n" for n, w in extra.items())


def _interrupt_soon(call: Callable[[], int], delay: float = 0.5) -> threading.Timer:
    timer = threading.Timer(delay, call)
    timer.daemon = True
    timer.start()
    return timer


@pytest.mark.parametrize("case", list(ENDLESS))
def test_endless_predicate_is_named_by_the_time_limit_and_others_still_count(
    make_workspace: Callable[..., Path], case: str
) -> None:
    ws = Workspace.open(make_workspace("parquet", _with_segments({"slow": ENDLESS[case]})))
    started = time.monotonic()
    results = {c.segment: c for c in ws.count_segments(timeout=1.0)}
    took = time.monotonic() - started
    assert results["slow"].count is None
    assert "longer than 1 s" in results["slow"].error
    assert "--query-timeout" in results["slow"].error
    assert results["everyone"].count == 21 and results["us"].count == 7
    assert took < 30, took  # one scan, then one per segment: a few limits, not forever


@pytest.mark.parametrize("case", list(ENDLESS))
def test_interrupt_stops_a_running_count_from_another_thread(
    make_workspace: Callable[..., Path], case: str
) -> None:
    ws = Workspace.open(make_workspace("csv", _with_segments({"slow": ENDLESS[case]})))
    _interrupt_soon(ws.interrupt)
    started = time.monotonic()
    with pytest.raises(QueryInterrupted):
        ws.count_segments(timeout=None)
    assert time.monotonic() - started < 20


def test_interrupt_all_reaches_every_workspace(make_workspace: Callable[..., Path]) -> None:
    """What the command line's signal watcher calls: it does not know the workspace."""
    ws = Workspace.open(make_workspace("parquet", _with_segments({"slow": ENDLESS["recursive"]})))
    _interrupt_soon(interrupt_all)
    with pytest.raises(QueryInterrupted):
        ws.count_segments(timeout=None)


def test_interrupt_reaches_plan_style_queries_and_later_checks_refuse(
    make_workspace: Callable[..., Path],
) -> None:
    """The export engine plans on a connection from ``connect()`` (and its cursors):
    after ``interrupt()`` the running query stops and the workspace's helpers on
    that connection refuse to start more SQL."""
    ws = Workspace.open(make_workspace("parquet", _with_segments({"slow": ENDLESS["recursive"]})))
    con = ws.connect()
    cur = ws.track(con.cursor())
    _interrupt_soon(ws.interrupt)
    with pytest.raises(duckdb.InterruptException) as caught:
        cur.execute(f"SELECT count(*) FROM profiles WHERE ({ENDLESS['recursive']})").fetchall()
    assert is_interrupt(caught.value)
    with pytest.raises(QueryInterrupted):
        ws.failing_segment(con, ["us"])
    assert isinstance(ws.runtime_error(con, ["us"], caught.value), QueryInterrupted)
    con.close()
    # A fresh connection of the same workspace is not affected. (The endless
    # segment is counted too: a short limit ends it, instead of the 60 s default.)
    assert {c.segment: c.count for c in ws.count_segments(timeout=1.0)}["us"] == 7


def test_a_cursor_made_through_the_workspace_stops_with_it(
    make_workspace: Callable[..., Path],
) -> None:
    """DuckDB's own ``con.cursor()`` is deaf to its parent's interrupt; the plan
    streams contacts on cursors, so ``cursor(con)`` registers them."""
    ws = Workspace.open(make_workspace("parquet"))
    with ws.connect() as con:
        cur = cursor(con)
        _interrupt_soon(ws.interrupt)
        started = time.monotonic()
        with pytest.raises(duckdb.InterruptException):
            cur.execute(f"SELECT count(*) FROM profiles WHERE ({ENDLESS['recursive']})").fetchall()
        assert time.monotonic() - started < 20
        cur.close()


def test_run_query_time_limit_and_interrupt_are_told_apart(
    make_workspace: Callable[..., Path],
) -> None:
    """One mechanism for every bounded query: the limit gives QueryTimeout (a
    problem of the predicate), a signal or interrupt() gives QueryInterrupted."""
    ws = Workspace.open(make_workspace("parquet"))
    endless = f"SELECT count(*) FROM profiles WHERE ({ENDLESS['recursive']})"
    with ws.connect() as con:
        started = time.monotonic()
        with pytest.raises(QueryTimeout, match=r"longer than 0\.5 s") as caught:
            run_query(con, endless, timeout=0.5)
        assert caught.value.seconds == 0.5
        assert time.monotonic() - started < 20
        assert run_query(con, "SELECT 42", timeout=0.5) == [(42,)]  # the connection still works
        _interrupt_soon(ws.interrupt)
        with pytest.raises(QueryInterrupted):
            run_query(con, endless, timeout=60)


@pytest.mark.parametrize("where", ["-- nothing", "/* nothing */", "  -- a\n  -- b  "])
def test_comment_only_predicate_is_refused_as_empty(
    make_workspace: Callable[..., Path], where: str
) -> None:
    ws = Workspace.open(make_workspace("csv", _with_segments({"hollow": where})))
    results = {c.segment: c for c in ws.count_segments()}
    assert results["hollow"].count is None
    assert "empty" in results["hollow"].error
    with ws.connect() as con, pytest.raises(PredicateError, match=r"segment .hollow.*empty"):
        ws.check_segment(con, "hollow")


def test_runtime_failure_names_the_segment_without_internal_sql(
    make_workspace: Callable[..., Path],
) -> None:
    ws = Workspace.open(
        make_workspace("parquet", _with_segments({"bad_cast": "CAST(email AS INT) > 0"}))
    )
    with ws.connect() as con:
        try:
            con.execute(
                "SELECT count(*) FROM profiles WHERE (CAST(email AS INT) > 0) OR (country = 'US')"
            ).fetchall()
        except duckdb.Error as err:
            problem = ws.runtime_error(con, ["us", "bad_cast"], err)
        assert isinstance(problem, PredicateError)
        text = str(problem)
        assert "segment 'bad_cast'" in text
        assert "SELECT" not in text and "LINE 1" not in text and "profiles WHERE" not in text
    counts = {c.segment: c for c in ws.count_segments()}
    assert counts["bad_cast"].count is None
    assert "SELECT" not in counts["bad_cast"].error


def test_predicates_cannot_read_the_current_folders_tmp(
    make_workspace: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB's default temp folder is ``<cwd>/.tmp`` and SQL may read it even with
    external access off; the workspace moves it to a private folder."""
    cwd = tmp_path / "cwd"
    (cwd / ".tmp").mkdir(parents=True)
    (cwd / ".tmp" / "leak.csv").write_text("secret\nhunter2\n")
    monkeypatch.chdir(cwd)
    where = "(SELECT count(*) FROM read_csv('.tmp/leak.csv')) > 0"
    ws = Workspace.open(make_workspace("parquet", _with_segments({"peek": where})))
    results = {c.segment: c for c in ws.count_segments()}
    assert results["peek"].count is None, results["peek"]
    with ws.connect() as con:
        temp = Path(con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
    assert temp.is_absolute() and not temp.is_relative_to(cwd)
    assert os.stat(temp).st_mode & 0o077 == 0  # private: spills hold profile data


def test_binary_file_as_csv_gets_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / "profiles.csv").write_bytes(bytes(range(256)) * 40)
    (folder / "segments.toml").write_text('[profiles]\npath = "profiles.csv"\n')
    with pytest.raises(WorkspaceError) as caught:
        Workspace.open(folder)
    text = str(caught.value)
    assert "\n" not in text, text
    assert "profiles.csv" in text and "not a readable CSV file" in text


@pytest.mark.parametrize("name", ["file_row_number", "FILE_ROW_NUMBER", "filename"])
def test_parquet_column_named_like_a_duckdb_option_reads(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "ws"
    folder.mkdir()
    table = pa.table({"customer_id": [1, 2, 3], name: [9, 8, 7], "email": ["a@x", "b@x", "c@x"]})
    pq.write_table(table, folder / "profiles.parquet")
    (folder / "segments.toml").write_text(
        '[profiles]\npath = "profiles.parquet"\nkey = "customer_id"\n'
        f"[segments.high]\nwhere = '\"{name}\" >= 8'\n"
    )
    ws = Workspace.open(folder)
    assert [c.name for c in ws.columns()] == ["customer_id", name, "email"]
    assert [c.count for c in ws.count_segments()] == [2]
    with ws.connect() as con:
        rows = con.execute("SELECT _segsync_row FROM _profiles_numbered ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == [0, 1, 2]


def test_spill_folders_of_killed_processes_are_removed_by_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGKILLed process cannot remove its spill folder (profile data): the
    next segsync process does, and leaves live processes' folders alone."""
    import store.workspace as workspace

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(workspace, "_temp_root", None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f"{workspace.TEMP_PREFIX}{dead.stdout.strip()}-abc123"
    stale.mkdir()
    (stale / "duckdb_temp_storage-0.tmp").write_bytes(b"spilled rows")
    live = tmp_path / f"{workspace.TEMP_PREFIX}{os.getppid()}-def456"
    live.mkdir()
    unrelated = tmp_path / "other-tool-123-x"
    unrelated.mkdir()

    mine = workspace.duckdb_temp_dir()

    assert not stale.exists()
    assert live.is_dir() and unrelated.is_dir()
    assert mine.is_dir() and mine.name.startswith(f"{workspace.TEMP_PREFIX}{os.getpid()}-")


def test_a_predicate_that_does_not_bind_is_named_as_checking_it_alone_names_it(
    make_workspace: Callable[..., Path],
) -> None:
    """All predicates are checked in one query; when that fails, each is checked
    alone, so the error and its wording are those of `check_segment`."""
    bad = {
        "typo": "countri = 'US'",
        "no_function": "no_such_function(country)",
        "window": "row_number() OVER () = 1",
    }
    ws = Workspace.open(make_workspace("parquet", _with_segments(bad)))
    results = {c.segment: c for c in ws.count_segments()}
    with ws.connect() as con:
        for name in bad:
            with pytest.raises(PredicateError) as alone:
                ws.check_segment(con, name)
            assert results[name].count is None
            assert results[name].error == str(alone.value).removeprefix(f"segment {name!r}: ")
    assert results["everyone"].count == 21 and results["us"].count == 7


def test_counting_right_after_opening_uses_the_connection_that_checked_the_source(
    make_workspace: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`segsync segments` starts one DuckDB database, not two; the counts are the same."""
    path = make_workspace("parquet")
    expected = Workspace.open(path).count_segments()
    ws = Workspace.open(path, count_next=True)
    opened: list[Workspace] = []
    connect = Workspace.connect

    def counted(self: Workspace, *args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        opened.append(self)
        return connect(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Workspace, "connect", counted)
    assert ws.count_segments() == expected and opened == []
    assert ws.count_segments() == expected and opened == [ws]  # kept once, used once
