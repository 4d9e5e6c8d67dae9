"""run-due against the emulator, with a clock the test moves: a sync runs when
it is due, once, catches up once after downtime, fires once per refresh, skips
a busy destination (and says so), and resumes a run that was stopped."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.syncs import next_due, sync_lock
from store.locks import export_lock
from tests.engine.conftest import expected_emails
from tests.syncs.conftest import add_sync, history_of, make_runner

pytestmark = pytest.mark.slow  # scheduled exports end to end


def runs_of(env) -> list:
    return [r for r in history_of(env).list_runs() if not r.dry_run]


def test_a_nightly_sync_runs_at_its_time_once_and_is_timed_for_the_next_night(export_env, clock):
    sync = add_sync(export_env, clock, cron="0 2 * * *")
    assert sync.next_due_at == datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
    runner = make_runner(export_env, clock)

    assert runner.run_due() == []  # 12:00: not yet
    clock.set(datetime(2026, 11, 3, 1, 59, tzinfo=UTC))
    assert runner.run_due() == []
    clock.set(datetime(2026, 11, 3, 2, 0, 30, tzinfo=UTC))
    [attempt] = runner.run_due()

    assert attempt.result == "succeeded", attempt.message
    assert not attempt.failed
    members = export_env.emulator.state.list_members(export_env.list_id)
    assert members == expected_emails(export_env.rows, ["germany"])
    assert runner.run_due() == []  # the same minute again: already done
    clock.advance(minutes=1)
    assert runner.run_due() == []

    sync = history_of(export_env).get_sync("nightly")
    assert sync.last_result == "succeeded"
    assert sync.last_run_id == attempt.run_id == runs_of(export_env)[0].id
    assert sync.last_success_at == datetime(2026, 11, 3, 2, 0, 30, tzinfo=UTC)
    assert sync.next_due_at == datetime(2026, 11, 4, 2, 0, tzinfo=UTC)
    assert sync.running_pid is None
    assert [e.kind for e in history_of(export_env).sync_events(sync.id)] == ["run"]
    assert len(runs_of(export_env)) == 1


def test_after_ten_days_off_a_sync_catches_up_once_not_240_times(export_env, clock):
    add_sync(export_env, clock, name="hourly", every="1h", cron=None, incremental=True)
    runner = make_runner(export_env, clock)
    clock.advance(days=10, minutes=17)

    attempts = runner.run_due()
    assert [a.result for a in attempts] == ["succeeded"]
    assert runner.run_due() == []
    assert len(runs_of(export_env)) == 1
    sync = history_of(export_env).get_sync("hourly")
    # The next slot keeps the sync's phase (12:00 + k hours) and lies ahead.
    assert sync.next_due_at == datetime(2026, 11, 12, 13, 0, tzinfo=UTC)

    clock.set(sync.next_due_at)
    assert [a.result for a in runner.run_due()] == ["succeeded"]
    assert len(runs_of(export_env)) == 2


def test_every_keeps_its_phase_when_run_due_notices_a_little_late(export_env, clock):
    sync = add_sync(export_env, clock, name="six", every="6h", cron=None)
    assert sync.next_due_at == datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
    assert next_due(sync, datetime(2026, 11, 2, 18, 0, 40, tzinfo=UTC)) == datetime(
        2026, 11, 3, 0, 0, tzinfo=UTC
    )


def rewrite_profiles(env, change) -> None:
    rows = [dict(r) for r in env.rows]
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows), env.workspace / "profiles.parquet")
    env.rows[:] = rows


def test_on_refresh_runs_once_per_change_of_the_profile_source(export_env, clock):
    add_sync(export_env, clock, name="fresh", on_refresh=True, cron=None)
    runner = make_runner(export_env, clock)

    assert [a.result for a in runner.run_due()] == ["succeeded"]  # never ran: runs
    for _ in range(3):
        clock.advance(minutes=1)
        assert runner.run_due() == []  # nothing changed

    def move_to_germany(rows):
        for row in rows[:30]:
            row["country"] = "DE"

    rewrite_profiles(export_env, move_to_germany)
    clock.advance(minutes=1)
    assert [a.result for a in runner.run_due()] == ["succeeded"]
    clock.advance(minutes=1)
    assert runner.run_due() == []
    assert len(runs_of(export_env)) == 2
    members = export_env.emulator.state.list_members(export_env.list_id)
    assert members == expected_emails(export_env.rows, ["germany"])


def test_on_refresh_waits_for_a_parquet_file_that_is_still_being_written(export_env, clock):
    add_sync(export_env, clock, name="fresh", on_refresh=True, cron=None)
    runner = make_runner(export_env, clock)
    assert [a.result for a in runner.run_due()] == ["succeeded"]

    source = export_env.workspace / "profiles.parquet"
    whole = source.read_bytes()
    source.write_bytes(whole[: len(whole) // 2])  # a refresh half way through its write
    clock.advance(minutes=1)
    assert runner.run_due() == []
    source.write_bytes(whole[:-1] + b"!")  # still no footer magic at the end
    assert runner.run_due() == []
    assert len(runs_of(export_env)) == 1


def test_a_busy_destination_is_skipped_recorded_and_run_when_free(export_env, clock):
    add_sync(export_env, clock, name="hourly", every="1h", cron=None)
    runner = make_runner(export_env, clock)
    clock.advance(hours=1)
    destination = history_of(export_env).get_destination("news")

    with export_lock(export_env.state_dir, destination.id, "news"):  # a manual export
        first = runner.run_due()
        clock.advance(minutes=1)
        second = runner.run_due()
    assert [a.result for a in first + second] == ["skipped", "skipped"]
    assert "already running" in first[0].message and "news" in first[0].message
    assert runs_of(export_env) == []
    history = history_of(export_env)
    sync = history.get_sync("hourly")
    assert sync.next_due_at == datetime(2026, 11, 2, 13, 0, tzinfo=UTC)  # still due
    assert sync.last_attempt_at is None and sync.running_pid is None
    [skip] = history.sync_events(sync.id)  # two skips in a row are one line
    assert (skip.kind, skip.result, skip.count) == ("skip", "busy", 2)

    clock.advance(minutes=1)
    assert [a.result for a in runner.run_due()] == ["succeeded"]
    assert history.get_sync("hourly").next_due_at == datetime(2026, 11, 2, 14, 0, tzinfo=UTC)


def test_syncs_of_one_destination_run_one_after_the_other_in_one_call(export_env, clock):
    add_sync(export_env, clock, name="a-germany", every="1h", cron=None)
    add_sync(export_env, clock, name="b-france", every="1h", cron=None, segments=["france"])
    runner = make_runner(export_env, clock)
    clock.advance(hours=1)
    attempts = runner.run_due()
    assert [(a.sync, a.result) for a in attempts] == [
        ("a-germany", "succeeded"),
        ("b-france", "succeeded"),
    ]
    runs = sorted(runs_of(export_env), key=lambda r: r.id)
    assert runs[0].ended_at <= runs[1].started_at  # never two at once on one list


def test_a_stopped_run_is_resumed_by_the_next_run_due(export_env, clock):
    """run-due killed mid-run leaves its claim and an interrupted run: the next
    run-due (which gets the lock, so the claimant is gone) resumes that run."""
    sync = add_sync(export_env, clock, name="hourly", every="1h", cron=None)
    history = history_of(export_env)
    destination = history.get_destination("news")
    run_id = history.start_run(destination.id, ["germany"])
    history.finish_run(run_id, "interrupted", {}, "process gone")
    history.set_sync_state(
        sync.id, running_pid=999_999, running_since=clock(), last_run_id=run_id,
        last_result="running",
    )  # fmt: skip

    attempts = make_runner(export_env, clock).run_due()
    assert [a.result for a in attempts] == ["succeeded"]
    # No plan to resume from (the run was made by hand), so the engine plans
    # again within the same run: the sync took the stopped run up, not a new one.
    assert attempts[0].run_id == run_id
    assert history.get_run(run_id).status == "succeeded"
    assert history.get_sync(sync.id).running_pid is None


def test_a_paused_sync_does_not_run_and_resuming_does_not_fire_it(export_env, clock):
    from connector.syncs import edit_sync

    sync = add_sync(export_env, clock, name="hourly", every="1h", cron=None)
    history = history_of(export_env)
    history.update_sync(sync.id, updated_at=clock(), paused=True)
    clock.advance(days=2)
    runner = make_runner(export_env, clock)
    assert runner.run_due() == []
    sync = edit_sync(history, history.get_sync(sync.id), clock(), paused=False)
    assert runner.run_due() == []
    assert sync.next_due_at == datetime(2026, 11, 4, 13, 0, tzinfo=UTC)


def test_a_sync_due_while_another_run_due_holds_its_destination_is_skipped_and_said_so(
    export_env, clock
):
    """The other run-due claimed what it runs; a sync that became due after that
    claim is skipped here (recorded with the holder), and runs once it is free."""
    add_sync(export_env, clock, name="hourly", every="1h", cron=None)
    runner = make_runner(export_env, clock)
    clock.advance(hours=1)
    destination = history_of(export_env).get_destination("news")
    with sync_lock(export_env.state_dir, destination.id, "news"):
        [skipped] = runner.run_due()
    assert skipped.result == "skipped" and not skipped.failed
    assert f"process {os.getpid()} is running its syncs" in skipped.message
    history = history_of(export_env)
    [event] = history.sync_events(history.get_sync("hourly").id)
    assert (event.kind, event.result, event.alert) == ("skip", "busy", False)
    assert [a.result for a in runner.run_due()] == ["succeeded"]
