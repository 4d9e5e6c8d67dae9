"""Schema version 4 adds the sync tables to a version 3 file in place (backup
first), keeping what was there."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from store.history import SCHEMA_VERSION, History


def test_a_v3_history_gains_syncs_and_keeps_its_destinations(tmp_path):
    db = tmp_path / "history.db"
    with History(db) as history:
        history.add_destination("news", base_url="http://127.0.0.1:9", list_id="L")
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE consent_approval")  # version 5's
    conn.execute("DROP TABLE sync_event")
    conn.execute("DROP TABLE sync")
    conn.execute("UPDATE schema_meta SET version = 3")
    conn.commit()
    conn.close()

    with History(db) as history:
        assert history.upgrade_backup is not None and ".v3-" in history.upgrade_backup.name
        dest = history.get_destination("news")
        sync = history.add_sync(
            created_at=datetime(2026, 11, 2, tzinfo=UTC), name="nightly",
            destination_id=dest.id, workspace="/w", segments=["a"], mode="upsert",
            incremental=False, trigger="cron", cron="0 2 * * *",
        )  # fmt: skip
        assert history.get_sync("nightly") == sync
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version FROM schema_meta").fetchone() == (SCHEMA_VERSION,) == (5,)
    conn.close()
