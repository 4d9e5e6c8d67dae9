"""An export's history opens on a thread (`store.history_deferred`): what it
reads before ``History`` is open must be what ``History`` would have said, and
nothing may be read past the upkeep ``History`` does when it opens."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import DatabaseError

from store.history import History, NotFound
from store.history_deferred import DeferredHistory, open_deferred, start_opening
from store.history_read import SCHEMA_VERSION
from store.records import FieldMapping

MAPPING = FieldMapping(email="mail", reserved={"city": "town"}, custom={}, consent_column="ok")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "history.db"
    with History(path) as history:
        dest = history.add_destination("news", base_url="http://127.0.0.1:1", list_id="L1")
        history.set_mapping(dest.id, MAPPING)
        history.set_segments(dest.id, ["vip"])
    return path


def test_the_first_reads_come_from_the_file_and_the_rest_from_history(db: Path) -> None:
    deferred = DeferredHistory(db)
    try:
        dest = deferred.get_destination("news")
        assert dest.list_id == "L1"
        assert deferred.get_mapping(dest.id) == MAPPING
        assert deferred.get_segments(dest.id) == ("vip",)
        with pytest.raises(NotFound, match="no destination 'nobody'"):  # History's own
            deferred.get_destination("nobody")
        run = deferred.start_run(dest.id, ["vip"])  # anything else: the opened History
        deferred.finish_run(run, "succeeded")
        assert [r.status for r in deferred.list_runs()] == ["succeeded"]
        assert deferred.get_destination(dest.id) == dest  # after opening: from History
    finally:
        deferred.opened().close()


def test_a_run_left_by_a_dead_process_is_marked_before_anything_is_read(db: Path) -> None:
    with History(db) as history:
        run = history.start_run(history.get_destination("news").id, ["vip"])
    with sqlite3.connect(db) as conn:  # a run of a process long gone
        conn.execute("UPDATE run SET started_at = '2000-01-01 00:00:00.000000'")
    history = open_deferred(db)
    try:
        assert history.get_run(run).status == "interrupted"
    finally:
        history.close()


def test_an_upgrade_due_is_done_before_the_first_read(db: Path) -> None:
    with sqlite3.connect(db) as conn:  # as version 4 left it
        conn.execute("DROP TABLE consent_approval")
        conn.execute("UPDATE schema_meta SET version = 4")
    deferred = DeferredHistory(db)
    try:
        assert deferred.get_mapping(deferred.get_destination("news").id) == MAPPING
        with sqlite3.connect(db) as conn:  # read through History, which upgraded first
            (version,) = conn.execute("SELECT version FROM schema_meta").fetchone()
        assert version == SCHEMA_VERSION
    finally:
        deferred.opened().close()


def test_history_failing_to_open_is_said_where_it_is_first_needed(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    db.write_bytes(b"not a database, not at all" * 100)
    os.chmod(db, 0o600)
    history = open_deferred(db)  # no error yet: the command goes on starting
    with pytest.raises(DatabaseError, match="file is not a database"):  # as History says it
        history.get_destination("news")
    with sqlite3.connect(db) as conn, pytest.raises(sqlite3.DatabaseError):
        conn.execute("SELECT 1 FROM destination")  # left as it was


def test_the_engine_loads_without_the_history_layer() -> None:
    """The overlap only happens if importing the engine does not import
    SQLAlchemy itself (one module-level `from store.history import ...` would)."""
    probe = "import sys, connector.engine, cli.progress; print(sorted(" + (
        "m for m in ('sqlalchemy', 'sqlmodel', 'store.history') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_opening_starts_when_asked_and_only_once(db: Path) -> None:
    deferred = DeferredHistory(db)
    assert deferred.get_destination("news").name == "news"  # read without opening
    assert deferred._opened is None and deferred._thread.ident is None
    start_opening(deferred)
    start_opening(deferred)  # a second planning phase (apply): nothing more
    opened = deferred.opened()
    assert deferred.opened() is opened
    start_opening(opened)  # an open History: nothing to do
    opened.close()


def test_the_reader_is_closed_before_history_connects(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never a read-only sqlite3 connection and History's in one process at once:
    SQLite shares the file's wal-index among them, and with it opened by the
    reader History's writes were lost to other processes (an export that
    ended `succeeded` was found `interrupted`; under load, in
    tests/reliability/test_hostile.py and tests/engine/test_resume.py)."""
    deferred = DeferredHistory(db)
    readers_open: list[bool] = []
    opening = History.__init__

    def watched(self: History, db_path: Path) -> None:
        readers_open.append(deferred._reader is not None)
        opening(self, db_path)

    monkeypatch.setattr(History, "__init__", watched)
    assert deferred.get_destination("news").name == "news"  # the reader is open now
    start_opening(deferred)
    deferred.opened().close()
    assert readers_open == [False]
