"""Schema versions of the history database and the steps between them.

Why not Alembic: it is not a dependency, and segsync's needs are small: one
embedded SQLite file, upgraded in place when a newer segsync opens it. An
ordered tuple of plain functions, applied inside one transaction after a
backup copy of the file is taken, covers that with nothing to configure.
SQLite's DDL is transactional, so a step that fails leaves the file exactly
as it was.

Version history:

1. first layout: destinations, mappings, saved segments, runs, batches,
   rejected rows (pre-send exclusions only).
2. resume and SendGrid-side rejections: ``run.resumed_from`` and
   ``rejected_row.source`` (``'plan'`` or ``'sendgrid'``; older rows are
   ``'plan'``, the only kind version 1 recorded).
3. changesets: the ``plan`` table (frozen changesets, apart from runs),
   ``run.plan_id``/``kind``/``undo_of`` and the destination's guardrails.
4. scheduled syncs: the ``sync`` table (saved syncs and their last run) and
   ``sync_event`` (runs, skips and hooks of each sync).
5. consent approvals kept: ``consent_approval``, one row per acknowledgment
   (the destination's own columns held only the latest); filled from them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlmodel import SQLModel

from store import history_models  # registers the tables on SQLModel.metadata
from store.history_read import SCHEMA_VERSION  # defined there: `segsync runs` reads it


class SchemaError(RuntimeError):
    """The file is not a history database this segsync can read."""


@dataclass(frozen=True)
class Migration:
    """Brings the schema from ``version - 1`` to ``version``."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _v2_resume_and_sources(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE run ADD COLUMN resumed_from INTEGER REFERENCES run (id)")
    conn.exec_driver_sql(
        "ALTER TABLE rejected_row ADD COLUMN source VARCHAR DEFAULT 'plan' NOT NULL"
    )


def _v3_changesets(conn: Connection) -> None:
    history_models.table_of(history_models.PlanTable).create(conn)
    for column in ("max_removals INTEGER", "max_removal_share FLOAT", "max_adds INTEGER"):
        conn.exec_driver_sql(f"ALTER TABLE destination ADD COLUMN {column}")
    conn.exec_driver_sql("ALTER TABLE run ADD COLUMN plan_id INTEGER REFERENCES plan (id)")
    conn.exec_driver_sql("ALTER TABLE run ADD COLUMN kind VARCHAR DEFAULT 'export' NOT NULL")
    conn.exec_driver_sql("ALTER TABLE run ADD COLUMN undo_of INTEGER REFERENCES run (id)")


def _v4_syncs(conn: Connection) -> None:
    history_models.table_of(history_models.SyncTable).create(conn)
    history_models.table_of(history_models.SyncEventTable).create(conn)


def _v5_consent_approvals(conn: Connection) -> None:
    history_models.table_of(history_models.ConsentApprovalTable).create(conn)
    conn.exec_driver_sql(
        "INSERT INTO consent_approval (destination_id, approved_by, approved_at, wording) "
        "SELECT id, consent_by, consent_at, consent_text FROM destination "
        "WHERE consent_at IS NOT NULL AND consent_by IS NOT NULL AND consent_text IS NOT NULL"
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "resume and SendGrid-side rejections", _v2_resume_and_sources),
    Migration(3, "changesets, run kinds and guardrails", _v3_changesets),
    Migration(4, "scheduled syncs and their events", _v4_syncs),
    Migration(5, "consent approvals kept, not overwritten", _v5_consent_approvals),
)


def _table_names(conn: Connection) -> set[str]:
    rows = conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return {name for (name,) in rows}


def _backup(db_path: Path, version: int) -> Path:
    """Copy the database (consistently, WAL included) next to it, mode 0600."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = db_path.with_name(f"{db_path.name}.v{version}-{stamp}.bak")
    os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    source = sqlite3.connect(db_path)
    try:
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()
    return target


def prepare_schema(engine: Engine, db_path: Path) -> Path | None:
    """Create a fresh schema or upgrade an older one; returns the backup path if
    an upgrade happened.

    Runs in one IMMEDIATE transaction: two segsync processes opening an old
    file at once serialise here, and the second sees it already upgraded.
    """
    with engine.connect() as conn:
        conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            tables = _table_names(conn)
            if not tables:
                SQLModel.metadata.create_all(conn)
                conn.exec_driver_sql(
                    "INSERT INTO schema_meta (id, version) VALUES (1, ?)", (SCHEMA_VERSION,)
                )
                return None
            if "schema_meta" not in tables:
                raise SchemaError(f"{db_path} is not a segsync history database")
            version = conn.execute(text("SELECT version FROM schema_meta WHERE id = 1")).scalar()
            if version is None:
                raise SchemaError(f"{db_path} has no schema version")
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"{db_path} was written by a newer segsync (schema version {version}); "
                    f"this one reads up to version {SCHEMA_VERSION}: upgrade segsync"
                )
            if version == SCHEMA_VERSION:
                return None
            backup = _backup(db_path, version)
            for step in MIGRATIONS:
                if step.version > version:
                    step.apply(conn)
            conn.exec_driver_sql(
                "UPDATE schema_meta SET version = ? WHERE id = 1", (SCHEMA_VERSION,)
            )
            return backup
