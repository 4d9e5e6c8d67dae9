"""Plans in the history: frozen changesets, kept apart from runs.

A plan row holds what a reviewer reads first (counts, segments, mode) and the
basis it was computed from (source fingerprint, mapping, predicates, ledger
version, list), which `apply` compares against the present before sending.
The per-person operations live in a Parquet file (``store.changeset``); the
row names no person. `History` mixes this in, sharing its connections.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from store.history_errors import plan_not_found
from store.history_models import PlanTable, inserted_id, table_of
from store.history_read import custom_field_ids
from store.operator import current_operator
from store.records import PlanRecord

PLAN_STATUSES = ("ready", "applied", "superseded")
_PLAN = table_of(PlanTable)


def _plan(row: Any) -> PlanRecord:
    values = dict(row._mapping)
    values["segments"] = tuple(values["segments"])
    return PlanRecord(**values)


class PlansMixin:
    """Plan rows; relies on the host class's `_read`, `_write`, `host` and `_now`."""

    host: str

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # provided by History

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # provided by History

    def add_plan(
        self,
        *,
        destination_id: int,
        destination_name: str,
        segments: Sequence[str],
        mode: str,
        incremental: bool,
        counts: Mapping[str, Any],
        basis: Mapping[str, Any],
        created_at: datetime,
        kind: str = "export",
        undo_of: int | None = None,
    ) -> int:
        """Record a new plan (status ``ready``); returns its id."""
        with self._write() as conn:
            return inserted_id(
                conn.execute(
                    insert(_PLAN).values(
                        destination_id=destination_id,
                        destination_name=destination_name,
                        segments=list(segments),
                        mode=mode,
                        incremental=incremental,
                        kind=kind,
                        undo_of=undo_of,
                        counts=dict(counts),
                        basis=dict(basis),
                        status="ready",
                        operator=current_operator(),
                        host=self.host,
                        created_at=created_at,
                    )
                )
            )

    def get_plan(self, plan_id: int) -> PlanRecord:
        with self._read() as conn:
            row = conn.execute(select(_PLAN).where(_PLAN.c.id == plan_id)).first()
        if row is None:
            raise plan_not_found(plan_id)
        return _plan(row)

    def list_plans(self, destination_id: int | None = None, limit: int = 50) -> list[PlanRecord]:
        """Plans, newest first."""
        query = select(_PLAN).order_by(_PLAN.c.id.desc()).limit(limit)
        if destination_id is not None:
            query = query.where(_PLAN.c.destination_id == destination_id)
        with self._read() as conn:
            return [_plan(r) for r in conn.execute(query)]

    def latest_custom_field_ids(self, destination_id: int) -> dict[str, str]:
        """The SendGrid custom field ids the destination's newest plan used
        (ids differ per account; a plan looks them up, explain reuses them)."""
        return custom_field_ids(self.list_plans(destination_id, limit=1))

    def mark_plan(self, plan_id: int, status: str, run_id: int | None = None) -> None:
        """A plan was applied (by run ``run_id``) or superseded by a newer one."""
        if status not in PLAN_STATUSES:
            raise ValueError(f"unknown plan status {status!r}")
        values: dict[str, Any] = {"status": status}
        if run_id is not None:
            values["applied_run_id"] = run_id
        with self._write() as conn:
            conn.execute(update(_PLAN).where(_PLAN.c.id == plan_id).values(**values))

    def set_plan_counts(self, plan_id: int, counts: Mapping[str, Any]) -> None:
        """Counts known only once the plan's file was written (an undo's)."""
        with self._write() as conn:
            conn.execute(update(_PLAN).where(_PLAN.c.id == plan_id).values(counts=dict(counts)))

    def plans_older_than(self, age: timedelta, now: datetime) -> Iterator[PlanRecord]:
        """Plans made more than `age` ago that no run depends on any more
        (never applied, or applied by a run that has ended)."""
        from store.history_models import RunTable

        run = table_of(RunTable)
        running = select(run.c.plan_id).where(
            run.c.status.in_(("running", "interrupted", "cancelled", "failed")),
            run.c.plan_id.is_not(None),
        )
        query = select(_PLAN).where(_PLAN.c.created_at < now - age, _PLAN.c.id.not_in(running))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return (_plan(r) for r in rows)

    def delete_plan(self, plan_id: int) -> bool:
        """Forget a plan row no run refers to (its file is the caller's); a plan
        that a run applied keeps its row, which the run's record points at.
        Returns whether the row went."""
        from store.history_models import RunTable

        run = table_of(RunTable)
        used = select(run.c.plan_id).where(run.c.plan_id.is_not(None))
        with self._write() as conn:
            done = conn.execute(
                _PLAN.delete().where(_PLAN.c.id == plan_id, _PLAN.c.id.not_in(used))
            )
        return bool(done.rowcount)
