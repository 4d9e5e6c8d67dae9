"""What `store.history_read` reads with sqlite3 is what History reads.

The review commands (`runs`, `runs show`, `plans`, `destinations`, ...) read
through `RunReader` so they need not import SQLAlchemy; the tables stay
defined once, by the SQLModel classes. These tests fail when
the two drift apart: a column renamed or added on one side, a type read
differently, a filter that selects other rows.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.history import History, NotFound, PlanNotFound
from store.history_migrations import MIGRATIONS
from store.history_models import (
    DestinationTable,
    PlanTable,
    RunBatchTable,
    RunTable,
    SchemaMetaTable,
    table_of,
)
from store.history_read import (
    BATCH_COLUMNS,
    DESTINATION_COLUMNS,
    PLAN_COLUMNS,
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
    assert set(BATCH_COLUMNS) == columns(RunBatchTable) - {"id"}
    assert set(PLAN_COLUMNS) == columns(PlanTable)
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
        {"destination": 1},  # by id: every run of it, whatever its name was
        {"destination": 2, "limit": 1},
        {"destination": 99},
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
    history.record_consent(a.id, "lead@example.com", "Second wording.")
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
        for dest_id in (a.id, 2):  # with and without a mapping, segments, approvals
            assert reader.get_mapping(dest_id) == history.get_mapping(dest_id)
            assert reader.get_segments(dest_id) == history.get_segments(dest_id)
            assert reader.consent_approvals(dest_id) == history.consent_approvals(dest_id)
        assert [c.wording for c in reader.consent_approvals(a.id)] == [
            "We may send these people email.",
            "Second wording.",
        ]
    assert ids  # the runs are there too: the reader is not confused by them


def test_the_columns_of_a_destination_are_the_sqlmodel_columns() -> None:
    assert set(DESTINATION_COLUMNS) == columns(DestinationTable)


def test_a_run_its_batches_and_rejected_rows_read_as_history_reads_them(
    history: History,
) -> None:
    ids = fill(history)
    run = ids["ok"]
    history.add_batch(run, 0, 3, 900, "a@example.com", "c@example.com")
    history.mark_batch_sent(run, 0, "job-0")
    history.mark_batch_finished(run, 0, "errored", 1, 1, 1)
    history.add_batch(run, 1, 2, 600, "d@example.com", "e@example.com")  # never sent
    history.add_rejected(
        run,
        [(None, "k1", "Bad@Example", "invalid_email: not a valid email address", "plan"),
         (0, None, "c@example.com", "invalid mailbox", "sendgrid")],
    )  # fmt: skip
    with RunReader(history.path) as reader:
        for run_id in ids.values():  # finished, running, with and without batches
            assert reader.get_run(run_id) == history.get_run(run_id)
        detail = reader.get_run(run)
        assert [b.status for b in detail.batches] == ["errored", "prepared"]
        assert detail.batches[0].sent_at is not None and detail.batches[0].sent_at.tzinfo
        assert detail.rejected == 2
        assert list(reader.rejected_rows(run)) == list(history.rejected_rows(run))
        assert list(reader.rejected_rows(ids["dry"])) == []
        for source in ("plan", "sendgrid"):
            rows = list(reader.rejected_rows(run, source=source))
            assert rows == list(history.rejected_rows(run, source=source))
            assert [r.source for r in rows] == [source]
        with pytest.raises(NotFound, match="no run 99"):
            reader.get_run(99)


def test_plans_read_as_history_reads_them(history: History) -> None:
    from datetime import UTC, datetime

    fill(history)
    a = history.get_destination("renamed")
    made = [
        history.add_plan(
            destination_id=dest_id, destination_name=name, segments=["s", "t"], mode=mode,
            incremental=mode == "upsert", counts={"to_add": n},
            basis={"mapping": {"x": n}, "custom_field_ids": {"tier": f"e{n}_T"}},
            created_at=datetime(2026, 11, 1 + n, tzinfo=UTC),
        )
        for n, (dest_id, name, mode) in enumerate(
            [(a.id, "renamed", "upsert"), (2, "b", "mirror"), (a.id, "renamed", "mirror")]
        )
    ]  # fmt: skip
    history.mark_plan(made[0], "applied", run_id=1)
    with RunReader(history.path) as reader:
        for plan_id in made:
            assert reader.get_plan(plan_id) == history.get_plan(plan_id)
        for dest_id in (None, a.id, 2, 99):
            for limit in (50, 1):
                assert reader.list_plans(dest_id, limit) == history.list_plans(dest_id, limit)
        for dest_id in (a.id, 2, 99):  # the newest plan's ids, or none
            ids = reader.latest_custom_field_ids(dest_id)
            assert ids == history.latest_custom_field_ids(dest_id)
        assert reader.latest_custom_field_ids(a.id) == {"tier": "e2_T"}
        with pytest.raises(PlanNotFound) as missing:
            reader.get_plan(99)
    with pytest.raises(PlanNotFound) as history_missing:
        history.get_plan(99)
    assert str(missing.value) == str(history_missing.value)


def test_destinations_listed_and_missing_as_history_says(history: History) -> None:
    fill(history)
    history.add_destination("0-first", base_url="https://api.sendgrid.com", list_id="3")
    with RunReader(history.path) as reader:
        for removed in (False, True):
            listed = reader.list_destinations(include_removed=removed)
            assert listed == history.list_destinations(include_removed=removed)
        assert [d.name for d in reader.list_destinations()] == ["0-first", "renamed"]
        for missing in ("a", "b", "99", 99):
            with pytest.raises(NotFound) as ours:
                reader.get_destination(missing)
            with pytest.raises(NotFound) as theirs:
                history.get_destination(missing)
            assert str(ours.value) == str(theirs.value)
        assert reader.get_destination("renamed") == history.get_destination("renamed")


def test_syncs_and_their_alerts_read_as_history_reads_them(history: History) -> None:
    from datetime import UTC, datetime, timedelta

    from store.history_errors import SyncNotFound

    fill(history)
    t = datetime(2026, 11, 1, 8, tzinfo=UTC)
    a = history.get_destination("renamed")
    config = {"destination_id": a.id, "workspace": "/w", "segments": ["vip", "de"],
              "mode": "upsert", "incremental": True}  # fmt: skip
    daily = history.add_sync(created_at=t, name="daily", trigger="every", every_seconds=86400,
                             next_due_at=t + timedelta(days=1), **config)  # fmt: skip
    fresh = history.add_sync(created_at=t, name="fresh", trigger="refresh", paused=True,
                             **{**config, "mode": "mirror", "incremental": False})  # fmt: skip
    gone = history.add_sync(created_at=t, name="gone", trigger="cron", cron="0 6 * * *",
                            timezone="Europe/Paris", **config)  # fmt: skip
    history.set_sync_state(daily.id, last_attempt_at=t, last_result="failed", last_run_id=3,
                           last_message="boom", running_pid=42, running_since=t,
                           success_fingerprint={"path": "/w/p.parquet", "size": 9})  # fmt: skip
    history.add_sync_event(daily.id, "run", "failed", t, run_id=3, message="boom", alert=True)
    history.add_sync_event(daily.id, "skip", "busy", t + timedelta(minutes=1))
    history.add_sync_event(fresh.id, "hook", "failed", t, message="exit 1", alert=True)
    history.add_sync_event(gone.id, "run", "failed", t, alert=True)
    history.remove_sync(gone.id, t)
    history.acknowledge_sync_alerts(t, [fresh.id])
    history.add_sync_event(fresh.id, "run", "failed", t + timedelta(hours=1), alert=True)
    with RunReader(history.path) as reader:
        for removed in (False, True):
            assert reader.list_syncs(removed) == history.list_syncs(removed)
        assert reader.sync_alerts() == history.sync_alerts()
        for ref in ("daily", "fresh", daily.id, gone.id):  # by name, by id (removed too)
            assert reader.get_sync(ref) == history.get_sync(ref)
        for missing in ("gone", "nobody", 99):
            with pytest.raises(SyncNotFound) as ours:
                reader.get_sync(missing)
            with pytest.raises(SyncNotFound) as theirs:
                history.get_sync(missing)
            assert str(ours.value) == str(theirs.value)
        for sync_id, limit in ((daily.id, 20), (fresh.id, 1), (99, 20)):
            assert reader.sync_events(sync_id, limit) == history.sync_events(sync_id, limit)
        assert reader.sync_events(daily.id)[0].count == 1
        assert [s.name for s in reader.list_syncs()] == ["daily", "fresh"]
        assert [(x.sync_name, x.event.result) for x in reader.sync_alerts()] == [
            ("fresh", "failed"),
            ("daily", "failed"),
        ]


def test_the_columns_of_syncs_and_events_are_the_sqlmodel_columns() -> None:
    from store.history_models import SyncEventTable, SyncTable
    from store.history_read import EVENT_COLUMNS, SYNC_COLUMNS

    assert set(SYNC_COLUMNS) == columns(SyncTable)
    assert set(EVENT_COLUMNS) == columns(SyncEventTable)


def test_a_run_is_read_at_one_moment_while_an_export_writes(history: History) -> None:
    """The run, its batches and its rejected count come from one snapshot: a
    commit between the reads (an export finishing) does not show half of it."""
    run = fill(history)["renamed"]  # still running
    db = history.path

    def export_commits() -> None:
        with sqlite3.connect(db) as writer:  # another process's connection
            writer.execute(
                "INSERT INTO rejected_row (run_id, reason, source) VALUES (?, 'x', 'plan')", (run,)
            )
            writer.execute("UPDATE run SET status = 'succeeded' WHERE id = ?", (run,))

    class Fetched(list):  # type: ignore[type-arg]
        """The rows the first read got, before the commit."""

    class Interleaved:
        """The reader's connection, with the export committing after its first read."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn, self.first = conn, True

        def execute(self, sql: str, *args: object) -> object:
            cursor = self.conn.execute(sql, *args)
            if self.first and sql.startswith("SELECT"):
                self.first = False
                rows = cursor.fetchall()  # the run's row is read ...
                export_commits()  # ... then the export commits
                return Fetched(rows)
            return cursor

        def rollback(self) -> None:
            self.conn.rollback()

    plain = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
    reader = RunReader(db)
    reader._conn.close()
    reader._conn = Interleaved(plain)  # type: ignore[assignment]
    detail = reader.get_run(run)
    plain.close()
    assert (detail.status, detail.rejected) == ("running", 0)  # both from before the commit
    with RunReader(db) as after:
        assert (after.get_run(run).status, after.get_run(run).rejected) == ("succeeded", 1)
