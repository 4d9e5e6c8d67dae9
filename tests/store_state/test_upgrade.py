"""An older history file opens with a newer segsync and keeps its runs."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection

from store import history_migrations
from store.history import SCHEMA_VERSION, History, SchemaError
from store.history_migrations import Migration

V1_SQL = Path(__file__).parent / "fixtures" / "history_v1.sql"


def build_v1(path: Path) -> Path:
    """Write the database schema version 1 of segsync would have left behind."""
    conn = sqlite3.connect(path)
    conn.executescript(V1_SQL.read_text(encoding="utf-8"))
    conn.close()
    os.chmod(path, 0o600)
    return path


def schema_of(path: Path) -> dict[str, tuple]:
    """Columns, indexes and foreign keys of every table, as SQLite reports them."""
    conn = sqlite3.connect(path)
    try:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            table: (
                conn.execute(f"PRAGMA table_info({table})").fetchall(),
                # without the positional ids, which depend on creation order
                sorted(r[1:] for r in conn.execute(f"PRAGMA index_list({table})")),
                sorted(r[2:] for r in conn.execute(f"PRAGMA foreign_key_list({table})")),
            )
            for table in tables
        }
    finally:
        conn.close()


def test_v1_file_keeps_its_runs_and_gains_the_new_columns(tmp_path: Path) -> None:
    db = build_v1(tmp_path / "history.db")
    with History(db) as history:
        runs = history.list_runs()
        assert [r.id for r in runs] == [3, 2, 1]  # newest first
        mirror = history.get_run(2)
        assert mirror.status == "succeeded"
        assert mirror.mode == "mirror"
        assert mirror.segments == ("high_value", "newsletter_fr")
        assert mirror.counts["sent"] == 1180
        assert mirror.operator == "ana (ssh from 10.0.0.7)"
        assert mirror.started_at == datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
        assert mirror.resumed_from is None
        assert [(b.seq, b.job_id, b.status) for b in mirror.batches] == [
            (0, "job-a", "completed"),
            (1, "job-b", "errored"),
        ]
        assert history.get_run(3).message == "SendGrid said: authorization required"
        # Rejected rows written by v1 were all plan exclusions.
        assert [(r.key, r.reason, r.source) for r in history.rejected_rows(1)] == [
            ("c-17", "invalid_email", "plan"),
            ("c-18", "no_email", "plan"),
        ]
        # Destinations, the removed one included, their mapping and segments.
        assert [d.name for d in history.list_destinations()] == ["newsletter"]
        old = history.get_destination(2)
        assert old.removed_at is not None
        assert history.list_runs(destination="old-list")[0].status == "dry_run"
        mapping = history.get_mapping(1)
        assert mapping is not None
        assert mapping.custom == {"tier": "loyalty_tier"}
        assert mapping.consent_column == "email_opt_in"
        assert history.get_segments(1) == ("high_value", "newsletter_fr")
        assert history.get_destination("newsletter").consent_by == "ana"
        # Version 5 keeps every approval; the one on record became the first.
        approvals = history.consent_approvals(1)
        assert [(a.approved_by, a.wording) for a in approvals] == [
            ("ana", history.get_destination(1).consent_text)
        ]
        assert approvals[0].approved_at == history.get_destination(1).consent_at

        # The columns version 2 added work on the upgraded file.
        resumed = history.start_run(1, ["high_value"], resumed_from=3)
        history.add_rejected(resumed, [(0, None, "bounce@example.com", "invalid", "sendgrid")])
        assert history.get_run(resumed).resumed_from == 3
        assert [r.source for r in history.rejected_rows(resumed)] == ["sendgrid"]
        assert history.last_successful_run(1).id == 2
        assert history.integrity_check() == "ok"

    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version FROM schema_meta").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_upgrade_backs_up_the_old_file_first(tmp_path: Path) -> None:
    db = build_v1(tmp_path / "history.db")
    with History(db) as history:
        backup = history.upgrade_backup
    assert backup is not None
    assert backup.name.startswith("history.db.v1-")
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    conn = sqlite3.connect(backup)
    assert conn.execute("SELECT version FROM schema_meta").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM run").fetchone() == (3,)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(run)")]
    conn.close()
    assert "resumed_from" not in columns

    with History(db) as again:  # already current: no second upgrade, no new backup
        assert again.upgrade_backup is None
    assert len(list(tmp_path.glob("history.db.v*.bak"))) == 1


def test_upgraded_schema_is_the_fresh_schema(tmp_path: Path) -> None:
    """A migration that forgets a column, index or key shows up here."""
    upgraded = build_v1(tmp_path / "old.db")
    History(upgraded).close()
    fresh = tmp_path / "fresh.db"
    History(fresh).close()
    assert schema_of(upgraded) == schema_of(fresh)


def test_a_failing_upgrade_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = build_v1(tmp_path / "history.db")

    def half_done(conn: Connection) -> None:
        conn.exec_driver_sql("ALTER TABLE run ADD COLUMN resumed_from INTEGER")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(history_migrations, "MIGRATIONS", (Migration(2, "broken", half_done),))
    with pytest.raises(RuntimeError, match="disk on fire"):
        History(db)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version FROM schema_meta").fetchone() == (1,)
    assert "resumed_from" not in [row[1] for row in conn.execute("PRAGMA table_info(run)")]
    assert conn.execute("SELECT count(*) FROM run").fetchone() == (3,)
    conn.close()


def test_a_file_from_a_newer_segsync_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    History(db).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_meta SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="newer segsync"):
        History(db)


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    with pytest.raises(SchemaError, match="not a segsync history database"):
        History(db)
