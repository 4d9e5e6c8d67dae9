"""When a sync is due: cron in the sync's time zone (across a DST change),
every-N keeping its phase, on refresh retrying a failed run only after a while,
and a run now that leaves the schedule alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from connector.syncs import REFRESH_RETRY, due_reason, next_due, source_fingerprint_of
from tests.engine.conftest import run_cli
from tests.syncs.conftest import add_sync, history_of
from tui.cli import main


def test_cron_is_read_in_the_syncs_time_zone_across_a_dst_change(export_env, clock):
    clock.set(datetime(2026, 3, 27, 12, 0, tzinfo=UTC))
    sync = add_sync(export_env, clock, cron="0 6 * * *", timezone="Europe/Berlin")
    assert sync.next_due_at == datetime(2026, 3, 28, 5, 0, tzinfo=UTC)  # 06:00 CET
    # Berlin moves to summer time on 29 March: 06:00 CEST is 04:00 UTC.
    assert next_due(sync, sync.next_due_at) == datetime(2026, 3, 29, 4, 0, tzinfo=UTC)


def test_a_failed_refresh_is_retried_after_an_hour_a_refusal_waits_for_a_person(export_env, clock):
    sync = add_sync(export_env, clock, on_refresh=True, cron=None)
    now = clock()
    assert due_reason(sync, now, locked=False) == "no successful run yet"

    tried = replace(
        sync,
        attempt_fingerprint=source_fingerprint_of(sync.workspace),
        last_attempt_at=now,
        last_result="failed",
    )
    assert due_reason(tried, now + timedelta(minutes=59), locked=False) is None
    assert due_reason(tried, now + REFRESH_RETRY, locked=False) is not None
    refused = replace(tried, last_result="refused")
    assert due_reason(refused, now + timedelta(days=3), locked=False) is None


def test_run_now_runs_at_once_and_leaves_the_schedule(export_env, clock, capsys):
    sync = add_sync(export_env, clock, cron="0 2 * * *")
    assert run_cli(main, "syncs", "run", "nightly") == 0
    assert "sync nightly: run" in capsys.readouterr().err
    after = history_of(export_env).get_sync(sync.id)
    assert after.last_result == "succeeded" and after.last_run_id is not None
    assert after.next_due_at == sync.next_due_at
