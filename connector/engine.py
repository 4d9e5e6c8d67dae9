"""The export engine: plan a changeset, then apply it (upload, confirm, remove, record).

One engine serves the command line and the TUI: `ExportEngine.run()` is an
async iterator of plain events (connector/events.py). What it computes, shows,
applies and records is one thing, a changeset (store/changeset.py):

- a dry-run (a preview, `segsync plan`) computes and stores a plan and sends
  nothing; no run is recorded;
- `apply` of a plan checks that nothing it was computed from has changed
  (drift), checks the destination's guardrails, then sends exactly that plan;
- an export is both in one step; a resume applies the rest of its run's plan.

Every step that must survive a crash is written to history the moment it
happens, so a run killed at any point is visible as interrupted and `resume`
can finish it without sending a confirmed batch twice. Preflight, upload,
removals and job polling live in their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from connector import events as ev
from connector.batching import MAX_BYTES, MAX_CONTACTS, pack_bodies
from connector.client import RetryNotice, SendGridClient
from connector.errors import RequestCancelled, SendGridError
from connector.preflight import (
    AccountAnswers,
    ExportRefused,
    Preflight,
    basis_changes,
    guardrail_violation,
    list_id_of,
)
from connector.removals import RemovalOutcome, RemovalSettings, remove_departed
from connector.upload import UploadContext, UploadState, confirm_job, upload_and_confirm
from store import batch_emails, forgotten
from store.changeset import Changeset, changeset_file
from store.ledger import read_info, write_ledger
from store.people import people_file, write_people
from store.plan import EXCLUSIONS, Plan, PlanRequest, plan_export
from store.records import FieldMapping
from store.workspace import QueryInterrupted

if TYPE_CHECKING:
    from store.history import History
    from store.records import Destination, PlanRecord, RunDetail
    from store.secrets import KeyStore
    from store.undo import UndoPlan
    from store.workspace import Workspace

__all__ = ["EngineSettings", "ExportEngine", "ExportRefused", "ExportRequest"]

Mode = Literal["upsert", "mirror"]
# Exclusions stored row by row in history; every exclusion is also in the
# run's people record (store.people), no-consent rows included.
DATA_PROBLEMS = tuple(e for e in EXCLUSIONS if e != "no_consent")
# Outcome counts every run carries from its start, so nothing reads a plan's
# figure where an outcome is missing.
OUTCOMES = ("sent", "created", "updated", "errored", "removed", "remove_failed")


@dataclass(frozen=True)
class ExportRequest:
    """Plain data a front end hands to the engine: no widgets, no I/O handles.

    ``plan_id``: apply that stored plan (its segments and mode win). ``replan``:
    when the plan drifted, plan again and apply the fresh plan instead of
    refusing. ``allow_removals``: lift the removal guardrail to that many for
    this run (the operator saw the number).
    """

    destination: str | int  # a name, or an id (never ambiguous with a name like "3")
    segments: tuple[str, ...] = ()
    mode: Mode = "upsert"
    incremental: bool = False
    dry_run: bool = False
    resume_run: int | None = None
    plan_id: int | None = None
    replan: bool = False
    allow_removals: int | None = None


@dataclass
class EngineSettings:
    """Knobs with production defaults; tests and benchmarks shrink them."""

    concurrency: int = 4
    max_contacts: int = MAX_CONTACTS
    max_bytes: int = MAX_BYTES
    poll_interval: float = 0.25  # grows x1.5 per poll: quick for small jobs, polite for big
    poll_max_interval: float = 10.0
    job_timeout: float = 3600.0


class Sender:
    """Where an applied plan's contacts come from: an open plan (the export's
    own, or the profiles planned again), limited to a stored changeset's
    (email, digest) rows when ``only`` is given; nothing when ``plan`` is None."""

    def __init__(self, plan: Plan | None, only: pa.Table | None) -> None:
        self._plan = plan
        self._only = only

    def contacts(self, skip: pa.Array | None = None) -> Iterator[pa.RecordBatch]:
        if self._plan is None:
            return iter(())
        return self._plan.contacts(only=self._only, skip=skip)

    def close(self) -> None:
        """Release the plan's DuckDB connection (and its memory); once."""
        if self._plan is not None:
            self._plan.close()
            self._plan = None


class ExportEngine:
    """Runs exports for one workspace against destinations kept in history."""

    def __init__(
        self,
        *,
        workspace: Workspace | None,
        history: History,
        keys: KeyStore,
        state_dir: Path,
        settings: EngineSettings | None = None,
        client_factory: Callable[..., SendGridClient] = SendGridClient,
    ) -> None:
        self.workspace = workspace
        self.history = history
        self.keys = keys
        self.state_dir = Path(state_dir)
        self.settings = settings or EngineSettings()
        self.client_factory = client_factory
        self._client: SendGridClient | None = None  # the client of the run in progress
        # What SendGrid answered to the last run's look-ups (key, list, fields):
        # a preview's findings read them instead of asking again.
        self.account_answers: AccountAnswers | None = None

    async def run(
        self, request: ExportRequest, cancel: asyncio.Event | None = None
    ) -> AsyncIterator[ev.Event]:
        """Execute `request`, yielding events as they happen.

        Raises ExportRefused before anything is sent when the request cannot
        run (no consent, a bad key, an unknown list, a drifted plan, ...).
        """
        queue: asyncio.Queue[ev.Event | None] = asyncio.Queue()
        cancel = cancel or asyncio.Event()
        task = asyncio.create_task(self._execute(request, queue.put_nowait, cancel))
        task.add_done_callback(lambda _t: queue.put_nowait(None))
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                yield item
            await task  # re-raise ExportRefused or an unexpected error
        finally:
            if not task.done():
                cancel.set()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- the run ------------------------------------------------------------

    async def _execute(
        self,
        request: ExportRequest,
        emit: Callable[[ev.Event], None],
        cancel: asyncio.Event,
    ) -> None:
        from store.locks import export_lock

        self.account_answers = None  # this run's, or none: never an earlier run's
        pre = Preflight(self.workspace, self.history, self.keys, self.state_dir)
        destination = await asyncio.to_thread(self.history.get_destination, request.destination)
        request, previous, stored = await asyncio.to_thread(pre.resolve, request, destination)
        undo = stored is not None and stored.kind == "undo"  # made from a run's record
        mapping = None if undo else await asyncio.to_thread(pre.mapping, destination, request)
        if mapping is not None:
            await asyncio.to_thread(pre.check_inputs, request, mapping)
        if not request.dry_run:
            pre.require_consent(destination)
        lock = (
            contextlib.nullcontext()
            if request.dry_run
            else export_lock(self.state_dir, destination.id, destination.name)
        )
        with lock:
            watcher = asyncio.ensure_future(self._interrupt_on_cancel(cancel))
            run_id_box: list[int] = [0]  # the client (and its retries) exists before the run
            client = await pre.open_client(
                destination, request.dry_run, self._on_retry(emit, run_id_box), self.client_factory
            )
            self._client = client
            try:
                list_contacts, field_ids, self.account_answers = await pre.account(
                    client, destination, mapping, request
                )
                if cancel.is_set():  # while SendGrid answered: plan nothing, as in planning
                    raise QueryInterrupted("interrupted")
                if request.dry_run:
                    assert mapping is not None
                    await self._preview(
                        request, destination, mapping, field_ids, list_contacts, emit
                    )
                    return
                live: Sender | None = None
                try:
                    if stored is not None and previous is None:
                        stored = await self._check_drift(
                            stored, destination, mapping, request, emit
                        )
                    if stored is not None and not undo:
                        live = await self._plan_again(
                            stored, destination, mapping, field_ids, request, previous, emit
                        )
                        if live is None:  # replanned: the stored plan is superseded
                            stored = None
                    if stored is not None and previous is None:  # applied as it was reviewed
                        counts = dict(stored.counts)
                        batches = _min_batches(counts, self.settings)
                        emit(ev.PlanReady(0, counts, batches, stored.id))
                    if stored is None:  # an export (plan + apply), or a run from before plans
                        assert mapping is not None
                        stored, plan = await self._plan_and_store(
                            request, destination, mapping, field_ids, list_contacts, emit
                        )
                        live = Sender(plan, None)
                    if previous is None:
                        refusal = self._guardrail_refusal(
                            stored, destination, list_contacts, request
                        )
                        if refusal is not None:
                            emit(
                                await asyncio.to_thread(
                                    self._refuse, stored, destination, request, mapping, refusal
                                )
                            )
                            return
                    await self._apply(
                        request,
                        destination,
                        mapping,
                        stored,
                        previous,
                        live,
                        client,
                        run_id_box,
                        emit,
                        cancel,
                    )
                finally:
                    if live is not None:
                        live.close()
            finally:
                self._client = None
                watcher.cancel()
                if client is not None:
                    await client.aclose()

    async def _check_drift(
        self,
        stored: PlanRecord,
        destination: Destination,
        mapping: FieldMapping | None,
        request: ExportRequest,
        emit: Callable[[ev.Event], None],
    ) -> PlanRecord | None:
        """The stored plan if nothing it was computed from changed; None (plan
        again) when it did and ``replan`` was asked; otherwise a refusal that
        names every change."""
        pre = Preflight(self.workspace, self.history, self.keys, self.state_dir)
        now = await asyncio.to_thread(pre.basis_now, destination, mapping, request)
        changed = basis_changes(stored.basis, now)
        if not changed:
            return stored
        await self._supersede_or_refuse(stored, destination, request, "; ".join(changed), emit)
        return None

    async def _supersede_or_refuse(
        self,
        stored: PlanRecord,
        destination: Destination,
        request: ExportRequest,
        why: str,
        emit: Callable[[ev.Event], None],
    ) -> None:
        """A stored plan that no longer holds: refused, naming ``why``; or, with
        ``replan``, marked superseded so that the caller plans afresh."""
        if not request.replan or stored.kind == "undo":
            raise ExportRefused(
                f"Plan {stored.id} is out of date: {why}. Review a fresh plan "
                f"(`segsync plan {destination.name} ...`) or apply with --replan."
            )
        emit(ev.Warning(0, f"plan {stored.id} is out of date, planned again: {why}"))
        await asyncio.to_thread(self.history.mark_plan, stored.id, "superseded")

    async def _interrupt_on_cancel(self, cancel: asyncio.Event) -> None:
        """On cancel: interrupt DuckDB work in flight and abandon retry waits, so
        the run ends within a second plus the requests already on the wire."""
        await cancel.wait()
        if self.workspace is not None:
            self.workspace.interrupt()
        if self._client is not None:
            self._client.cancel()

    def _on_retry(
        self, emit: Callable[[ev.Event], None], run_id_box: list[int]
    ) -> Callable[[RetryNotice], None]:
        def on_retry(notice: RetryNotice) -> None:
            if notice.kind == "rate_limit":
                emit(ev.RateLimitWait(run_id_box[0], notice.seconds, notice.endpoint))
            else:
                emit(
                    ev.RetryScheduled(run_id_box[0], notice.attempt, notice.seconds, notice.reason)
                )

        return on_retry

    # -- planning -----------------------------------------------------------

    async def _plan_again(
        self,
        stored: PlanRecord,
        destination: Destination,
        mapping: FieldMapping | None,
        field_ids: dict[str, str],
        request: ExportRequest,
        previous: RunDetail | None,
        emit: Callable[[ev.Event], None],
    ) -> Sender | None:
        """What sends a stored plan's people: the profiles planned again, each
        person sent only with the payload whose digest the changeset holds.

        A changeset file keeps digests, not payloads (see ``store.changeset``).
        Applying a plan, the drift check saw the ledger as it was planned with,
        so the plan is made again the same way and must name the same people
        with the same digests: then it is sent in the same order the preview's
        first body showed. A resume plans every selected profile (the ledger
        has moved on with what the run confirmed) and sends only the
        changeset's people. If anyone is missing, extra, or has another digest
        now, nothing is sent: a refusal that says how many, or (``replan``, when
        applying a plan) None, and the caller plans afresh.
        """
        changes = await self._open_changeset(stored)
        try:
            planned = await asyncio.to_thread(changes.to_send)
        finally:
            changes.close()
        if not len(planned):  # removals only: nothing to build
            return Sender(None, planned)
        assert mapping is not None
        pre = Preflight(self.workspace, self.history, self.keys, self.state_dir)
        workspace = pre.require_workspace()
        emit(ev.PhaseStarted(previous.id if previous else 0, "planning"))
        same = previous is None
        ledger = None
        if same and not stored.basis.get("ledger_distrusted"):
            ledger = await asyncio.to_thread(pre.ledger, destination)
        info = await asyncio.to_thread(read_info, ledger) if ledger is not None else None
        plan_request = PlanRequest(
            segments=tuple(stored.segments),
            mapping=mapping,
            custom_field_ids=dict(stored.basis.get("custom_field_ids") or field_ids),
            ledger=ledger,
            incremental=same and stored.incremental,
            compare_digests=info.digests_comparable if info is not None else True,
            forgotten=await self._forgotten(workspace, mapping, emit),
        )
        try:
            plan = await asyncio.to_thread(plan_export, workspace, plan_request)
        except Exception as exc:
            raise pre.planning_refusal(exc, request) from None
        try:
            missing = await asyncio.to_thread(plan.mismatches, planned)
        except BaseException:
            plan.close()
            raise
        extra = plan.counts["to_send"] - (len(planned) - missing) if same else 0
        if not missing and not extra:
            return Sender(plan, None if same else planned)
        plan.close()
        differ = []
        if missing:
            differ.append(
                f"{missing:,} of the {len(planned):,} people it sends are no longer in "
                "the profiles with the values it was planned with"
            )
        if extra:
            differ.append(f"{extra:,} more would be sent now")
        what = " and ".join(differ)
        if previous is not None:
            raise ExportRefused(
                f"Cannot resume run {previous.id}: plan {stored.id}: {what}; nothing was "
                "sent. Export again (--incremental sends only who is missing or changed)."
            )
        await self._supersede_or_refuse(stored, destination, request, what, emit)
        return None

    async def _forgotten(
        self, workspace: Workspace, mapping: FieldMapping, emit: Callable[[ev.Event], None]
    ) -> tuple[str, pa.Array] | None:
        """The salted digests of people erased with `segsync forget`, when the
        source still holds any (None otherwise: nothing to leave out)."""
        held = await asyncio.to_thread(forgotten.release, self.state_dir, workspace, mapping.email)
        if not held:
            return None
        emit(ev.Warning(0, f"the profile source still holds {held:,} forgotten people: "
                           "they are not sent; remove them from the source"))  # fmt: skip
        return await asyncio.to_thread(
            lambda: (
                forgotten.salt(self.state_dir),
                forgotten.load(self.state_dir, workspace.source_label),
            )
        )

    async def _plan_and_store(
        self,
        request: ExportRequest,
        destination: Destination,
        mapping: FieldMapping,
        field_ids: dict[str, str],
        list_contacts: int | None,
        emit: Callable[[ev.Event], None],
    ) -> tuple[PlanRecord, Plan]:
        """Plan and store the changeset; returns its PlanRecord and the Plan, still
        open (a preview reads its samples; the caller closes it)."""
        pre = Preflight(self.workspace, self.history, self.keys, self.state_dir)
        workspace = pre.require_workspace()
        emit(ev.PhaseStarted(0, "planning"))
        ledger = await asyncio.to_thread(pre.ledger, destination)
        info = await asyncio.to_thread(read_info, ledger)
        distrust = pre.distrust(info, list_contacts)
        for warning in pre.ledger_warnings(info, distrust, request):
            emit(ev.Warning(0, warning))
        erased = await self._forgotten(workspace, mapping, emit)
        plan_request = PlanRequest(
            segments=request.segments,
            mapping=mapping,
            custom_field_ids=field_ids,
            ledger=None if distrust else ledger,
            incremental=request.incremental,
            mirror=request.mode == "mirror",
            compare_digests=info.digests_comparable if info is not None else True,
            forgotten=erased,
            # a preview is never sent from memory: apply plans again
            keep_payloads=not request.dry_run,
        )
        try:
            plan = await asyncio.to_thread(plan_export, workspace, plan_request)
        except Exception as exc:
            raise pre.planning_refusal(exc, request) from None
        try:
            counts = dict(plan.counts)
            basis = await asyncio.to_thread(pre.basis_now, destination, mapping, request)
            basis.update(
                ledger_version=info.version if info else 0,
                ledger_rows=info.rows if info else 0,
                ledger_distrusted=distrust,
                list_contacts=list_contacts,
                custom_field_ids=field_ids,
            )
            plan_id = await asyncio.to_thread(
                functools.partial(
                    self.history.add_plan,
                    destination_id=destination.id,
                    destination_name=destination.name,
                    segments=request.segments,
                    mode=request.mode,
                    incremental=request.incremental,
                    counts=counts,
                    basis=basis,
                    created_at=datetime.now(UTC),
                )
            )
            saving = asyncio.to_thread(plan.save_changeset, changeset_file(self.state_dir, plan_id))
            try:
                if request.dry_run:  # the preview's samples are read while it is written
                    await asyncio.gather(saving, asyncio.to_thread(_samples, plan))
                else:
                    await saving
            except BaseException:
                # Shielded: a cancel arriving now must not leave a plan row
                # without its file.
                await asyncio.shield(asyncio.to_thread(self.history.delete_plan, plan_id))
                raise
            record = await asyncio.to_thread(self.history.get_plan, plan_id)
            emit(ev.PlanReady(0, counts, _min_batches(counts, self.settings), plan_id))
            return record, plan
        except BaseException:
            plan.close()
            raise

    async def _preview(
        self,
        request: ExportRequest,
        destination: Destination,
        mapping: FieldMapping,
        field_ids: dict[str, str],
        list_contacts: int | None,
        emit: Callable[[ev.Event], None],
    ) -> None:
        """A dry-run: a stored plan, its samples and first request body; no run."""
        started = time.monotonic()
        record, plan = await self._plan_and_store(
            request, destination, mapping, field_ids, list_contacts, emit
        )
        try:
            first = await asyncio.to_thread(self._first_body, plan, destination.list_id or "")
            emit(
                ev.PreviewReady(
                    0,
                    dict(record.counts),
                    tuple(plan.sample_contacts),
                    tuple(
                        (r.email or "", r.category, r.detail or "") for r in plan.sample_rejected
                    ),
                    first,
                    tuple(plan.removals()[:20]),
                    record.id,
                )
            )
        finally:
            plan.close()
        emit(ev.PhaseStarted(0, "done"))
        emit(
            ev.RunFinished(
                0,
                "dry_run",
                dict(record.counts),
                f"plan {record.id}: nothing was sent (apply it with `segsync apply {record.id}`)",
                time.monotonic() - started,
            )
        )

    def _first_body(self, plan: Plan, list_id: str, limit: int = 4000) -> str:
        """The first request body as it would be sent (the key is never in a body),
        cut at ``limit`` characters. Only as many contacts as can fill those
        characters are built (each takes at least 16 bytes): the same first
        characters as the whole body of up to 30,000, without building it."""
        enough = min(self.settings.max_contacts, limit // 16 + 1)
        bodies = pack_bodies(
            plan.contacts(limit=enough),
            [list_id],
            max_contacts=self.settings.max_contacts,
            max_bytes=self.settings.max_bytes,
        )
        body = next(iter(bodies), None)
        if body is None:
            return ""
        text = body.data[: limit + 1].decode("utf-8", errors="replace")
        return text if len(body.data) <= limit else text[:limit] + " …"

    def plan_undo(self, run_id: int) -> tuple[PlanRecord, UndoPlan]:
        """Store the undo of run ``run_id`` as a plan (kind ``undo``); returns the
        plan and what it would do (store.undo.UndoPlan). Apply it like any plan."""
        from store.undo import build_undo

        run = self.history.get_run(run_id)
        if run.status == "running":
            raise ExportRefused(f"Run {run_id} is still running; undo it once it has ended.")
        destination = self.history.get_destination(run.destination_id)
        if run.config.get("list_id") not in (None, destination.list_id):
            raise ExportRefused(
                f"Run {run_id} went to list {run.config.get('list_id')}, but "
                f"{destination.name!r} now points at {destination.list_id}: undo would "
                "act on the wrong list."
            )
        later = [
            r.id
            for r in self.history.list_runs(destination=destination.id, limit=None)
            if r.id > run_id and r.config.get("list_id") == destination.list_id
        ]
        pre = Preflight(self.workspace, self.history, self.keys, self.state_dir)
        basis = pre.basis_now(destination, None, None)
        plan_id = self.history.add_plan(
            destination_id=destination.id,
            destination_name=destination.name,
            segments=run.segments,
            mode="mirror",  # an undo both puts back and takes off
            incremental=False,
            counts={},
            basis=basis,
            created_at=datetime.now(UTC),
            kind="undo",
            undo_of=run_id,
        )
        try:
            undo = build_undo(
                self.state_dir, run_id, later, changeset_file(self.state_dir, plan_id)
            )
        except BaseException:
            self.history.delete_plan(plan_id)
            raise
        counts = {
            "selected": undo.to_add + undo.to_remove,
            **dict.fromkeys(EXCLUSIONS, 0),
            "unchanged": 0,
            "skipped": 0,
            "to_send": undo.to_add,
            "to_add": undo.to_add,
            "to_update": 0,
            "to_remove": undo.to_remove,
            "updated_not_restored": undo.updated_not_restored,
            "touched_later": len(undo.touched_later),
        }
        self.history.set_plan_counts(plan_id, counts)
        return self.history.get_plan(plan_id), undo

    # -- guardrails ---------------------------------------------------------

    def _guardrail_refusal(
        self,
        plan: PlanRecord,
        destination: Destination,
        list_contacts: int | None,
        request: ExportRequest,
    ) -> str | None:
        """The cap or guardrail the plan breaks (the preview's preflight shows the
        same finding: `connector.preflight.guardrail_violation`)."""
        found = guardrail_violation(plan.counts, destination, list_contacts, request.allow_removals)
        return found.message if found is not None else None

    def _refuse(
        self,
        plan: PlanRecord,
        destination: Destination,
        request: ExportRequest,
        mapping: FieldMapping | None,
        reason: str,
    ) -> ev.RunFinished:
        """Record a run refused by a guardrail: nothing was sent, and history says
        why. Runs on a thread (history I/O); returns the event for the loop."""
        run_id = self._new_run(request, destination, mapping, plan)
        counts = {**plan.counts, **dict.fromkeys(OUTCOMES, 0)}
        message = f"refused before any request: {reason}"
        self.history.finish_run(run_id, "refused", counts, message)
        return ev.RunFinished(run_id, "refused", counts, message)

    # -- apply --------------------------------------------------------------

    async def _apply(
        self,
        request: ExportRequest,
        destination: Destination,
        mapping: FieldMapping | None,
        plan: PlanRecord,
        previous: RunDetail | None,
        live: Sender | None,
        client: SendGridClient | None,
        run_id_box: list[int],
        emit: Callable[[ev.Event], None],
        cancel: asyncio.Event,
    ) -> None:
        """Send ``plan`` (its contacts from ``live``, or from the changeset file
        for an undo), confirm, remove, and record the run."""
        assert client is not None
        started = time.monotonic()
        counts: dict[str, int] = {**plan.counts, **dict.fromkeys(OUTCOMES, 0)}
        changeset = await self._open_changeset(plan)  # before a run exists to end
        try:
            run_id = await self._start_run(
                cancel, self._open_run, request, destination, mapping, plan, previous, counts
            )
        except BaseException:
            changeset.close()
            raise
        run_id_box[0] = run_id
        emit(
            ev.RunStarted(
                run_id,
                destination.name,
                request.segments,
                request.mode,
                False,
                resumed=previous is not None,
                undo_of=plan.undo_of if plan.kind == "undo" else None,
            )
        )
        state = UploadState(
            run_id=run_id, list_id=list_id_of(destination), to_send=counts["to_send"]
        )
        ctx = UploadContext(
            history=self.history,
            state_dir=self.state_dir,
            client=client,
            emit=emit,
            cancel=cancel,
            concurrency=self.settings.concurrency,
            max_contacts=self.settings.max_contacts,
            max_bytes=self.settings.max_bytes,
            poll_interval=self.settings.poll_interval,
            poll_max_interval=self.settings.poll_max_interval,
            job_timeout=self.settings.job_timeout,
            keys_for=changeset.keys_for,
        )
        removals = RemovalOutcome()
        # Rows with data problems go to history in the background while the
        # upload starts; the run does not end before they are all written.
        recording = asyncio.ensure_future(
            asyncio.to_thread(self._record_plan_rejections, run_id, changeset)
        )
        try:
            try:
                skip = await self._resume_skip(previous, ctx, state, counts, emit)
                if previous is not None:  # a resume: what is left of its plan
                    batches = _min_batches(counts, self.settings)
                    emit(ev.PlanReady(run_id, dict(counts), batches, plan.id))
                contacts = (live or changeset).contacts(skip=skip)
                await upload_and_confirm(ctx, contacts, state)
                if live is not None:  # everything is sent: free the plan's memory
                    live.close()  # before removals and recording need theirs
                if request.mode == "mirror" and not cancel.is_set() and not state.failed:
                    await remove_departed(
                        client,
                        list_id_of(destination),
                        await asyncio.to_thread(changeset.removals),
                        run_id=run_id,
                        settings=RemovalSettings(
                            self.settings.concurrency,
                            self.settings.poll_interval,
                            self.settings.poll_max_interval,
                            self.settings.job_timeout,
                        ),
                        cancel=cancel,
                        emit=emit,
                        outcome=removals,
                    )
            except RequestCancelled:  # the client was cancelled under a request
                await self._end(run_id, "cancelled", "cancelled by the user", destination, plan,
                                changeset, state, removals, counts, emit, started)  # fmt: skip
                return
            except asyncio.CancelledError:
                await self._end(run_id, "cancelled", "cancelled", destination, plan, changeset,
                                state, removals, counts, emit, started)  # fmt: skip
                raise
            except SendGridError as exc:
                await self._end(run_id, "failed", str(exc), destination, plan, changeset,
                                state, removals, counts, emit, started)  # fmt: skip
                return
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                await self._end(run_id, "failed", message, destination, plan, changeset,
                                state, removals, counts, emit, started)  # fmt: skip
                return
            status, message = self._verdict(run_id, cancel, state, removals)
            await self._end(run_id, status, message, destination, plan, changeset,
                            state, removals, counts, emit, started)  # fmt: skip
        finally:
            try:
                await asyncio.shield(recording)
            finally:
                changeset.close()

    @staticmethod
    async def _start_run(cancel: asyncio.Event, open_run: Callable[..., int], *args: object) -> int:
        """``open_run(*args)`` on a thread: the run's row. A cancel arriving
        meanwhile cannot stop it half way: it is let finish, and the run is
        stopped the way the cancel button does, so it is recorded as cancelled
        rather than left running."""
        opening = asyncio.ensure_future(asyncio.to_thread(open_run, *args))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            cancel.set()
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return await opening

    async def _open_changeset(self, plan: PlanRecord) -> Changeset:
        """The plan's changeset, opened on a thread (a file check and a DuckDB
        connection; the TUI's event loop runs this engine). A missing file (pruned
        by hand, a state folder copied without it) refuses the export: nothing
        is sent and no run is opened."""
        try:
            return await asyncio.to_thread(Changeset, changeset_file(self.state_dir, plan.id))
        except FileNotFoundError as exc:
            raise ExportRefused(str(exc)) from None

    def _open_run(
        self,
        request: ExportRequest,
        destination: Destination,
        mapping: FieldMapping | None,
        plan: PlanRecord,
        previous: RunDetail | None,
        counts: dict[str, int],
    ) -> int:
        """Start the run in history (or reopen the one being resumed), with the
        counts every run carries from its start; runs on a thread."""
        if previous is not None:
            run_id = previous.id
            self.history.reopen_run(run_id)
        else:
            run_id = self._new_run(request, destination, mapping, plan)
            self.history.mark_plan(plan.id, "applied", run_id)
        self.history.update_run_counts(run_id, counts)
        return run_id

    def _new_run(
        self,
        request: ExportRequest,
        destination: Destination,
        mapping: FieldMapping | None,
        plan: PlanRecord,
    ) -> int:
        """A new run row for ``plan`` (applied, or refused before any request):
        its configuration snapshot, plan, kind and the run it undoes."""
        pre = Preflight(self.workspace, self.history, self.keys, self.state_dir)
        return self.history.start_run(
            destination_id=destination.id,
            segments=list(request.segments),
            mode=request.mode,
            incremental=request.incremental,
            config=pre.config_snapshot(request, destination, mapping),
            plan_id=plan.id,
            kind=plan.kind,
            undo_of=plan.undo_of,
        )

    def _record_plan_rejections(self, run_id: int, changeset: Changeset) -> None:
        """Store the rows excluded for a data problem in history, all or nothing
        (`segsync runs rejected`). Rows left out for lack of consent are in the
        run's people record but not here: they are the user's own filter, often
        a large share of every run. A resumed run writes them again in place of
        what a killed attempt left."""
        rows = [
            (None, row.key, row.email, _reason(row.category, row.detail), "plan")
            for row in changeset.rejected(categories=DATA_PROBLEMS)
        ]
        self.history.replace_rejected(run_id, "plan", rows)

    async def _resume_skip(
        self,
        previous: RunDetail | None,
        ctx: UploadContext,
        state: UploadState,
        counts: dict[str, int],
        emit: Callable[[ev.Event], None],
    ) -> pa.Array | None:
        """On resume: settle batches sent before the stop, then the addresses of
        every confirmed batch, which are not sent again."""
        if previous is None:
            return None
        emit(ev.PhaseStarted(previous.id, "planning"))
        for batch in previous.batches:
            if batch.status == "sent" and batch.job_id:
                with contextlib.suppress(SendGridError):
                    await confirm_job(ctx, state, batch.seq, batch.contacts, batch.job_id)
        seqs = await asyncio.to_thread(self.history.confirmed_batches, previous.id)
        skip, missing = await asyncio.to_thread(
            batch_emails.confirmed, self.state_dir, previous.id, seqs
        )
        if missing:
            emit(
                ev.Warning(
                    previous.id,
                    f"{len(missing)} confirmed batch(es) of run {previous.id} have no record "
                    "of their addresses (a run started by an older segsync, or a lost "
                    "file): their contacts are sent again, which SendGrid treats as "
                    "updates.",
                )
            )
        counts["skipped"] = len(skip)
        counts["to_send"] = max(counts["to_send"] - len(skip), 0)
        state.to_send = counts["to_send"]
        run = await asyncio.to_thread(self.history.get_run, previous.id)
        for batch in run.batches:
            if batch.status in ("completed", "errored") and batch.seq not in missing:
                emit(ev.BatchSkipped(previous.id, batch.seq, batch.contacts))
        return skip

    @staticmethod
    def _verdict(
        run_id: int, cancel: asyncio.Event, state: UploadState, removals: RemovalOutcome
    ) -> tuple[ev.RunStatus, str]:
        if cancel.is_set():
            return "cancelled", "cancelled by the user"
        if state.failed:
            return "failed", "; ".join(state.failed)
        problems = []
        if state.errored:
            problems.append(f"{len(state.errored):,} contacts rejected by SendGrid")
        if removals.failed:
            problems.append(
                f"{len(removals.failed):,} removals not confirmed (still on the list; "
                "the next mirror run tries them again)"
            )
        if problems:
            return "partial", "; ".join(problems) + f": see `segsync runs show {run_id} --people`"
        return "succeeded", ""

    async def _end(
        self,
        run_id: int,
        status: ev.RunStatus,
        message: str,
        destination: Destination,
        plan: PlanRecord,
        changeset: Changeset,
        state: UploadState,
        removals: RemovalOutcome,
        counts: dict[str, int],
        emit: Callable[[ev.Event], None],
        started: float,
    ) -> None:
        """Record what happened: the ledger, the people record, the counts, the status."""
        emit(ev.PhaseStarted(run_id, "recording"))
        final = await asyncio.shield(
            asyncio.to_thread(
                self._record, run_id, destination, plan, changeset, state, removals, counts
            )
        )
        if status == "succeeded" and state.unconfirmed:
            status, message = "failed", f"{state.unconfirmed} import job(s) not confirmed"
        await asyncio.shield(
            asyncio.to_thread(self.history.finish_run, run_id, status, final, message)
        )
        if status in ("succeeded", "partial"):  # final: nothing left to resume
            await asyncio.to_thread(batch_emails.forget, self.state_dir, run_id)
        emit(ev.PhaseStarted(run_id, "done"))
        emit(ev.RunFinished(run_id, status, final, message, time.monotonic() - started))

    def _record(
        self,
        run_id: int,
        destination: Destination,
        plan: PlanRecord,
        changeset: Changeset,
        state: UploadState,
        removals: RemovalOutcome,
        counts: dict[str, int],
    ) -> dict[str, int]:
        """Counts from what SendGrid confirmed; the ledger and people record to match."""
        run = self.history.get_run(run_id)
        final = dict(counts)
        totals = dict.fromkeys(("sent", "created", "updated", "errored"), 0)
        for batch in run.batches:
            if batch.status in ("completed", "errored", "failed"):
                totals["sent"] += batch.contacts
                totals["created"] += batch.created or 0
                totals["updated"] += batch.updated or 0
                totals["errored"] += batch.errored or 0
        final.update(totals)
        final["removed"] = len(removals.removed)
        final["remove_failed"] = len(removals.failed)
        final["unconfirmed"] = sum(1 for b in run.batches if b.status == "sent")
        seqs = [b.seq for b in run.batches if b.status in ("completed", "errored")]
        sent, _missing = batch_emails.confirmed(self.state_dir, run_id, seqs)
        errored = {
            (r.email or "").strip().lower(): r.reason
            for r in self.history.rejected_rows(run_id, source="sendgrid")
        }
        errored.update(state.errored)
        # The people record and the ledger are independent files, each written
        # atomically: written side by side (DuckDB and Parquet release the
        # interpreter), the user waits for the slower one, not for both. Leaving
        # the pool waits for the people record even when the ledger fails.
        with ThreadPoolExecutor(1, thread_name_prefix="segsync-people") as pool:
            people = pool.submit(
                write_people,
                people_file(self.state_dir, run_id),
                changeset,
                sent=sent,
                errored=errored,
                removed=removals.removed,
                remove_failed=removals.failed,
            )
            if len(sent) or removals.removed:
                ledger = Preflight(self.workspace, self.history, self.keys, self.state_dir).ledger(
                    destination
                )
                table = changeset.merged_ledger(
                    ledger, sent=sent, errored=errored, removed=removals.removed
                )
                write_ledger(
                    ledger,
                    table,
                    previous=read_info(ledger),
                    list_id=list_id_of(destination),
                    base_url=destination.base_url,
                )
            people.result()
        return final


def _samples(plan: Plan) -> None:
    """Read a preview's samples now (they are cached on the plan)."""
    _ = plan.sample_contacts, plan.sample_rejected


def _reason(category: str, detail: str | None) -> str:
    return f"{category}: {detail}" if detail else category


def _min_batches(counts: dict[str, int], settings: EngineSettings) -> int:
    """The fewest requests the contacts need (more when the 6 MB limit splits them)."""
    to_send = counts["to_send"]
    return -(-to_send // settings.max_contacts) if to_send else 0
