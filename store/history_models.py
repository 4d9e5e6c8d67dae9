"""SQLModel tables of the history database (the current schema version).

These classes describe the schema; they never leave ``store.history``, which
turns rows into plain frozen dataclasses. Timestamps are stored as UTC and come
back timezone-aware, so a run started in one time zone reads right in another.
"""

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Column, CursorResult, DateTime, Index, Table, UniqueConstraint, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """DATETIME column holding UTC; refuses naive datetimes on the way in.

    SQLite has no time zone type: without this a naive local time could slip
    in and history would show runs hours off.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("history timestamps must be timezone-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy `Table` of a model, typed.

    SQLModel sets `__table__` on every table class but does not declare it, so
    a type checker cannot see it; the shared metadata holds the same object
    under the table's name.
    """
    name = model.__tablename__
    if not isinstance(name, str):  # every table here names itself with a string
        raise TypeError(f"{model.__name__} has no table name")
    return SQLModel.metadata.tables[name]


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the one row an INSERT just added.

    SQLAlchemy types it as optional (a bulk insert has none); every insert
    here adds one row to a table with an integer key, so none is a bug.
    """
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the INSERT reported no primary key")
    return int(key[0])


class SchemaMetaTable(SQLModel, table=True):
    """One row: the schema version the file was last upgraded to."""

    __tablename__: ClassVar[str] = "schema_meta"
    id: int = Field(default=1, primary_key=True)
    version: int


class DestinationTable(SQLModel, table=True):
    __tablename__: ClassVar[str] = "destination"
    # A name is unique among active destinations only: a removed one keeps its
    # row (its runs point at it) and its name can be given to a new one.
    __table_args__ = (
        Index(
            "ux_destination_active_name",
            "name",
            unique=True,
            sqlite_where=text("removed_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str
    list_id: str | None = None
    list_name: str | None = None
    base_url: str
    api_key_env: str | None = None  # the NAME of an environment variable, never a key
    key_storage: str | None = None  # keyring | file | env; NULL until a key is stored
    cap: int = 100_000
    consent_by: str | None = None
    consent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    consent_text: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # schema v3: guardrails (NULL: the default rule, see store.guardrails)
    max_removals: int | None = None
    max_removal_share: float | None = None
    max_adds: int | None = None


class DestinationMappingTable(SQLModel, table=True):
    __tablename__: ClassVar[str] = "destination_mapping"
    destination_id: int = Field(primary_key=True, foreign_key="destination.id")
    mapping: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_type=UTCDateTime)


class DestinationSegmentsTable(SQLModel, table=True):
    __tablename__: ClassVar[str] = "destination_segments"
    destination_id: int = Field(primary_key=True, foreign_key="destination.id")
    segments: list[str] = Field(sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_type=UTCDateTime)


class RunTable(SQLModel, table=True):
    __tablename__: ClassVar[str] = "run"
    id: int | None = Field(default=None, primary_key=True)
    destination_id: int = Field(foreign_key="destination.id", index=True)
    destination_name: str  # as it was at the time: destinations can be renamed
    segments: list[str] = Field(sa_column=Column(JSON, nullable=False))
    mode: str
    incremental: bool
    dry_run: bool
    status: str = Field(index=True)
    config: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    counts: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    message: str | None = None
    operator: str
    host: str
    pid: int
    started_at: datetime = Field(sa_type=UTCDateTime, index=True)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # schema v2
    resumed_from: int | None = Field(default=None, foreign_key="run.id")
    # schema v3: the changeset the run applied, and what kind of run it is
    plan_id: int | None = Field(default=None, foreign_key="plan.id")
    kind: str = Field(default="export", sa_column_kwargs={"server_default": "export"})
    undo_of: int | None = Field(default=None, foreign_key="run.id")


class RunBatchTable(SQLModel, table=True):
    __tablename__: ClassVar[str] = "run_batch"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_run_batch_run_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    seq: int
    contacts: int
    bytes: int
    first_email: str
    last_email: str
    job_id: str | None = None
    status: str
    created: int | None = None  # SendGrid's job results, known once it finished
    updated: int | None = None
    errored: int | None = None
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RejectedRowTable(SQLModel, table=True):
    __tablename__: ClassVar[str] = "rejected_row"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    seq: int | None = None  # NULL: excluded by the plan, before any batch
    key: str | None = None
    email: str | None = None
    reason: str
    # schema v2; the server default lets the upgrade fill rows written by v1
    source: str = Field(sa_column_kwargs={"server_default": "plan"})


class PlanTable(SQLModel, table=True):
    """A frozen changeset (schema v3): what one plan decided for each person lives in
    a Parquet file beside the database; this row holds its summary and basis."""

    __tablename__: ClassVar[str] = "plan"
    id: int | None = Field(default=None, primary_key=True)
    destination_id: int = Field(foreign_key="destination.id", index=True)
    destination_name: str
    segments: list[str] = Field(sa_column=Column(JSON, nullable=False))
    mode: str
    incremental: bool
    kind: str = "export"
    undo_of: int | None = Field(default=None, foreign_key="run.id")
    counts: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    basis: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str  # ready | applied | superseded
    applied_run_id: int | None = Field(default=None, foreign_key="run.id")
    operator: str
    host: str
    created_at: datetime = Field(sa_type=UTCDateTime, index=True)


class SyncTable(SQLModel, table=True):
    """A saved sync (schema v4): what to export where, when, and how it last went.

    The configuration columns are what the user set; the state columns below
    them are written by `segsync syncs run-due` so that "when did this last
    run, how did it go, when is it next" is one row read (the TUI's table).
    """

    __tablename__: ClassVar[str] = "sync"
    # Unique among active syncs only, like destinations: a removed sync keeps
    # its row (its events point at it) and its name can be used again.
    __table_args__ = (
        Index("ux_sync_active_name", "name", unique=True, sqlite_where=text("removed_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str
    destination_id: int = Field(foreign_key="destination.id", index=True)
    workspace: str  # absolute path of the workspace folder
    segments: list[str] = Field(sa_column=Column(JSON, nullable=False))
    mode: str
    incremental: bool
    trigger: str  # every | cron | refresh
    every_seconds: int | None = None
    cron: str | None = None
    timezone: str | None = None  # IANA zone a cron expression is read in; NULL: the machine's
    allow_removals: int | None = None
    max_rejected_share: float | None = None  # NULL: the default (connector.syncs)
    on_failure: str | None = None  # a shell command; never holds a key
    hook_timeout: float | None = None
    paused: bool = False
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # state, written by the runner
    next_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_success_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_result: str | None = None
    last_run_id: int | None = None  # not a foreign key: a failed start has no run
    last_message: str | None = None
    success_fingerprint: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    attempt_fingerprint: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    running_pid: int | None = None
    running_since: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SyncEventTable(SQLModel, table=True):
    """What happened to a sync (schema v4): runs, skips (with the reason) and hooks.

    Consecutive identical skips are one row with a count, so a destination busy
    for an hour is one line, not sixty.
    """

    __tablename__: ClassVar[str] = "sync_event"
    id: int | None = Field(default=None, primary_key=True)
    sync_id: int = Field(foreign_key="sync.id", index=True)
    kind: str  # run | skip | hook
    result: str
    at: datetime = Field(sa_type=UTCDateTime, index=True)
    last_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    count: int = 1
    run_id: int | None = None
    message: str | None = None
    alert: bool = False  # a failure someone must hear about
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ConsentApprovalTable(SQLModel, table=True):
    """Every data-privacy acknowledgment given for a destination (schema v5):
    who, when and the wording. The destination row holds the latest; these
    rows keep the earlier ones, so a run's evidence names the approval that
    was in force when the run started, not one recorded after it."""

    __tablename__: ClassVar[str] = "consent_approval"
    id: int | None = Field(default=None, primary_key=True)
    destination_id: int = Field(foreign_key="destination.id", index=True)
    approved_by: str
    approved_at: datetime = Field(sa_type=UTCDateTime)
    wording: str
