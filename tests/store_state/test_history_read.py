"""The run list read with sqlite3 (`store.history_read`) is the run list History reads.

`segsync runs` lists runs through `RunReader` so it need not import SQLAlchemy;
the tables stay defined once, by the SQLModel classes. These tests fail when
the two drift apart: a column renamed or added on one side, a type read
differently, a filter that selects other rows.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.history import History, NotFound
from store.history_migrations import MIGRATIONS
from store.history_models import DestinationTable, RunTable, SchemaMetaTable, table_of
from store.history_read import (
    DESTINATION_COLUMNS,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    RunReader,
    open_run_reader,
    run_json,
)
from store.records import FieldMapping


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    with History(tmp_path / "state" / "history.db") as h:
        yield h


def columns(model: type) -> set[str]:
    return {c.name for c in table_of(model).columns}


def test_the_columns_read_are_the_sqlmodel_columns() -> None:
    assert set(RUN_COLUMNS) == columns(RunTable)  # a Run is exactly a row of `run`
    assert {"id", "name", "removed_at"} <= columns(DestinationTable)
    assert {"id", "version"} == columns(SchemaMetaTable)
    assert MIGRATIONS[-1].version == SCHEMA_VERSION


def fill(history: History) -> dict[str, int]:
    """Runs of every shape the listing shows: kinds, statuses, a rename, a removal."""
    a = history.add_destination("a", base_url="https://api.sendgrid.com", list_id="1")
    b = history.add_destination("b", base_url="https://api.sendgrid.com", list_id="2")
    ids = {}
    ids["ok"] = history.start_run(a.id, ["s", "t"], config={"batch": 3})
    history.finish_run(ids["ok"], "succeeded", counts={"sent": 5, "to_send": 5}, message="ok")
    ids["dry"] = history.start_run(a.id, ["s"], dry_run=True, incremental=True)
    history.finish_run(ids["dry"], "dry_run")
    ids["mirror"] = history.start_run(a.id, ["s"], mode="mirror", resumed_from=ids["ok"])
    history.finish_run(ids["mirror"], "partial", counts={"to_remove": 2, "removed": 1})
    ids["undo"] = history.start_run(a.id, ["s"], kind="undo", undo_of=ids["mirror"])
    history.finish_run(ids["undo"], "failed", message="bad key\nsecond line")
    history.update_destination(a.id, name="renamed")
    ids["renamed"] = history.start_run(a.id, ["s"])  # still running: this process
    ids["b"] = history.start_run(b.id, ["u"])
    history.finish_run(ids["b"], "cancelled")
    history.remove_destination("b")
    return ids


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"limit": 2},
        {"limit": None},
        {"status": "failed"},
        {"status": "running"},
        {"destination": "a"},  # its former name
        {"destination": "renamed"},  # its current name: every run of it
        {"destination": "b"},  # removed
        {"destination": "renamed", "status": "partial", "limit": 1},
        {"destination": "nobody"},
    ],
)
def test_runs_read_with_sqlite3_equal_runs_read_by_history(
    history: History, query: dict[str, object]
) -> None:
    fill(history)
    with RunReader(history.path) as reader:
        assert reader.list_runs(**query) == history.list_runs(**query)  # type: ignore[arg-type]


def test_destinations_are_found_as_history_finds_them(history: History) -> None:
    fill(history)
    with RunReader(history.path) as reader:
        assert reader.destination_exists("renamed")
        assert not reader.destination_exists("a")  # a former name is not a destination
        assert not reader.destination_exists("b")  # removed
        assert reader.destination_exists("2")  # by id, removed too, as get_destination does
        assert not reader.destination_exists("99")


def test_run_json_of_a_read_run(history: History) -> None:
    ids = fill(history)
    with RunReader(history.path) as reader:
        run = next(r for r in reader.list_runs() if r.id == ids["dry"])
    data = run_json(run)
    assert data["kind"] == "dry-run" and data["segments"] == ["s"]
    assert data["started_at"].endswith("+00:00") and data["ended_at"] is not None


def test_the_reader_cannot_write(history: History) -> None:
    fill(history)
    with RunReader(history.path) as reader, pytest.raises(sqlite3.OperationalError, match="read"):
        reader._conn.execute("DELETE FROM run")


def test_history_opens_first_when_it_has_something_to_do(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    assert open_run_reader(db) is None  # no file yet: History creates it
    with History(db) as history:
        dest = history.add_destination("a", base_url="https://api.sendgrid.com", list_id="1")
        history.start_run(dest.id, ["s"])
    reader = open_run_reader(db)
    assert reader is not None  # this process's run is alive: nothing to mark
    reader.close()

    with sqlite3.connect(db) as conn:  # a run of a process long gone
        conn.execute("UPDATE run SET started_at = '2000-01-01 00:00:00.000000'")
    assert open_run_reader(db) is None
    History(db).close()  # marks it interrupted
    with RunReader(db) as after:
        assert [r.status for r in after.list_runs()] == ["interrupted"]
    reader = open_run_reader(db)
    assert reader is not None
    reader.close()

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_meta SET version = ?", (SCHEMA_VERSION - 1,))
    assert open_run_reader(db) is None  # an upgrade is due
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_meta SET version = ?", (SCHEMA_VERSION,))
    os.chmod(db, 0o644)
    assert open_run_reader(db) is None  # History tightens the file first


def test_a_damaged_file_is_left_to_history_to_report(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    db.write_bytes(b"not a database, not at all" * 100)
    os.chmod(db, 0o600)
    assert open_run_reader(db) is None


def test_a_destination_its_mapping_and_segments_read_as_history_reads_them(
    history: History,
) -> None:
    ids = fill(history)
    a = history.get_destination("renamed")
    history.record_consent(a.id, "ops@example.com", "We may send these people email.")
    history.update_destination(a.id, max_removals=5, max_removal_share=0.25, cap=7)
    history.set_mapping(
        a.id,
        FieldMapping(
            email="mail",
            reserved={"first_name": "given"},
            custom={"tier": "loyalty"},
            consent_column=None,
            no_consent_filter=True,
        ),
    )
    history.set_segments(a.id, ["vip", "de"])
    with RunReader(history.path) as reader:
        for ref in ("renamed", str(a.id), a.id, "2", 2):  # by name, by id, removed by id
            assert reader.destination(ref) == history.get_destination(ref)
        for missing in ("a", "b", "99"):  # former name, removed by name, no such id
            assert reader.destination(missing) is None
            with pytest.raises(NotFound):
                history.get_destination(missing)
        for dest_id in (a.id, 2):  # with and without a mapping and segments
            assert reader.mapping(dest_id) == history.get_mapping(dest_id)
            assert reader.segments(dest_id) == history.get_segments(dest_id)
    assert ids  # the runs are there too: the reader is not confused by them


def test_the_columns_of_a_destination_are_the_sqlmodel_columns() -> None:
    assert set(DESTINATION_COLUMNS) == columns(DestinationTable)
