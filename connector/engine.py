"""The export engine: plan -> upload -> confirm -> (remove) -> record.

One engine serves the command line and the TUI: `ExportEngine.run()` is an
async iterator of plain events (connector/events.py). Every step that must
survive a crash is written to history the moment it happens, so a run killed
at any point is visible as interrupted and `resume` can finish it without
sending a confirmed batch twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from connector import events as ev
from connector.batching import MAX_BYTES, MAX_CONTACTS, Body, pack_bodies
from connector.client import RetryNotice, SendGridClient
from connector.errors import SendGridError
from connector.models import ImportJob
from store import batch_emails
from store.history import FINAL_BATCH_STATUSES, mapping_json
from store.plan import EXCLUSIONS, FieldMapping, Plan, PlanRequest, plan_export
from store.workspace import Workspace

Mode = Literal["upsert", "mirror"]
REMOVE_CHUNK = 100
# Exclusions stored row by row; rows without consent are only counted (see below).
DATA_PROBLEMS = tuple(e for e in EXCLUSIONS if e != "no_consent")


class ExportRefused(Exception):
    """The export cannot start; nothing was sent. The message says why and what to do."""

    exit_code = 2


@dataclass(frozen=True)
class ExportRequest:
    """Plain data a front end hands to the engine: no widgets, no I/O handles."""

    destination: str
    segments: tuple[str, ...] = ()
    mode: Mode = "upsert"
    incremental: bool = False
    dry_run: bool = False
    resume_run: int | None = None


@dataclass
class EngineSettings:
    """Knobs with production defaults; tests and benchmarks shrink them."""

    concurrency: int = 4
    max_contacts: int = MAX_CONTACTS
    max_bytes: int = MAX_BYTES
    poll_interval: float = 0.25  # grows x1.5 per poll: quick for small jobs, polite for big
    poll_max_interval: float = 10.0
    job_timeout: float = 3600.0


@dataclass
class _RunState:
    """Mutable bookkeeping of one run while it executes."""

    run_id: int
    list_id: str
    counts: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    errored_emails: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)
    recording: asyncio.Future[None] | None = None  # plan rejections being written


class ExportEngine:
    """Runs exports for one workspace against destinations kept in history."""

    def __init__(
        self,
        *,
        workspace: Workspace,
        history: Any,
        keys: Any,
        state_dir: Path,
        settings: EngineSettings | None = None,
        client_factory: Callable[..., SendGridClient] = SendGridClient,
    ) -> None:
        self.workspace = workspace
        self.history = history
        self.keys = keys
        self.state_dir = state_dir
        self.settings = settings or EngineSettings()
        self.client_factory = client_factory

    async def run(
        self, request: ExportRequest, cancel: asyncio.Event | None = None
    ) -> AsyncIterator[ev.Event]:
        """Execute `request`, yielding events as they happen.

        Raises ExportRefused before anything is sent when the request cannot
        run (no consent, over the cap, a bad key, an unknown list, ...).
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

        history = self.history
        destination = history.get_destination(request.destination)
        request, previous = self._resolve_request(request, destination)
        mapping = history.get_mapping(destination.id)
        if mapping is None:
            raise ExportRefused(
                f"Destination {destination.name!r} has no field mapping yet. "
                f"Run `segsync map {destination.name} email=COLUMN ...` first."
            )
        if not request.segments:
            raise ExportRefused(
                "No segments selected. Name at least one with --segment "
                "(see `segsync segments` for the list)."
            )
        await asyncio.to_thread(self._check_inputs, request, mapping)
        if not request.dry_run and not destination.consent_at:
            raise ExportRefused(
                f"Destination {destination.name!r} has no data-privacy acknowledgment. "
                f"Record it with `segsync destinations consent {destination.name}` "
                "(or --agree when adding it) before exporting; a --dry-run is allowed."
            )
        lock = (
            contextlib.nullcontext()
            if request.dry_run
            else export_lock(self.state_dir, destination.id, destination.name)
        )
        with lock:
            await self._execute_locked(request, destination, mapping, previous, emit, cancel)

    def _check_inputs(self, request: ExportRequest, mapping: FieldMapping) -> None:
        """Segments and mapped columns must exist in the workspace as it is now
        (the profile file may have changed since the mapping was saved)."""
        from store.plan import MappingError, validate_mapping
        from store.workspace import WorkspaceError

        known = {s.name for s in self.workspace.segments()}
        unknown = [name for name in request.segments if name not in known]
        if unknown:
            raise ExportRefused(
                f"Unknown segment(s) {', '.join(map(repr, unknown))} in "
                f"{self.workspace.config_path}. Known segments: {', '.join(sorted(known))}."
            )
        try:
            with self.workspace.connect() as con:  # one connection for every check
                validate_mapping(mapping, self.workspace.columns(con))
                for name in request.segments:
                    self.workspace.check_segment(con, name)
        except (MappingError, WorkspaceError) as exc:
            raise ExportRefused(str(exc)) from exc

    def _resolve_request(
        self, request: ExportRequest, destination: Any
    ) -> tuple[ExportRequest, Any]:
        """Fill in saved segments, or the settings of the run being resumed."""
        if request.resume_run is None:
            segments = request.segments or tuple(self.history.get_segments(destination.id))
            return replace(request, segments=tuple(segments)), None
        previous = self.history.get_run(request.resume_run)
        if previous.destination_id != destination.id:
            raise ExportRefused(
                f"Run {previous.id} belongs to destination {previous.destination_name!r}, "
                f"not {destination.name!r}."
            )
        if previous.status not in ("interrupted", "cancelled", "failed", "running"):
            raise ExportRefused(
                f"Run {previous.id} is {previous.status}; only interrupted, cancelled or "
                "failed runs can be resumed. Start a new export instead."
            )
        if previous.dry_run:
            raise ExportRefused(f"Run {previous.id} was a dry-run; there is nothing to resume.")
        return (
            replace(
                request,
                segments=tuple(previous.segments),
                mode=previous.mode,
                incremental=previous.incremental,
                dry_run=False,
            ),
            previous,
        )

    async def _execute_locked(
        self,
        request: ExportRequest,
        destination: Any,
        mapping: FieldMapping,
        previous: Any,
        emit: Callable[[ev.Event], None],
        cancel: asyncio.Event,
    ) -> None:
        from store.paths import ledger_path

        history = self.history
        run_id_box: list[int] = [0]  # the client (and its retries) exists before the run

        def on_retry(notice: RetryNotice) -> None:
            if notice.kind == "rate_limit":
                emit(ev.RateLimitWait(run_id_box[0], notice.seconds, notice.endpoint))
            else:
                emit(
                    ev.RetryScheduled(run_id_box[0], notice.attempt, notice.seconds, notice.reason)
                )

        client = await self._open_client(destination, request, on_retry)
        try:
            field_ids = await self._prepare_account(client, destination, mapping, request)
            started = time.monotonic()
            if previous is not None:
                run_id = previous.id
                history.reopen_run(run_id)
            else:
                run_id = history.start_run(
                    destination_id=destination.id,
                    segments=list(request.segments),
                    mode=request.mode,
                    incremental=request.incremental,
                    dry_run=request.dry_run,
                    config=self._config_snapshot(request, destination, mapping),
                )
            run_id_box[0] = run_id
            emit(
                ev.RunStarted(
                    run_id,
                    destination.name,
                    request.segments,
                    request.mode,
                    request.dry_run,
                    resumed=previous is not None,
                )
            )
            state = _RunState(run_id=run_id, list_id=destination.list_id)
            try:
                await self._run_phases(
                    request,
                    destination,
                    mapping,
                    field_ids,
                    previous,
                    state,
                    ledger_path(self.state_dir, destination.id),
                    client,
                    emit,
                    cancel,
                    started,
                )
            except asyncio.CancelledError:
                history.finish_run(run_id, "cancelled", state.counts, "cancelled by the user")
                emit(ev.RunFinished(run_id, "cancelled", state.counts, "cancelled by the user"))
                raise
            except ExportRefused as exc:
                history.finish_run(run_id, "failed", state.counts, str(exc))
                raise
            except SendGridError as exc:
                history.finish_run(run_id, "failed", state.counts, str(exc))
                emit(ev.RunFinished(run_id, "failed", state.counts, str(exc)))
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                history.finish_run(run_id, "failed", state.counts, message)
                emit(ev.RunFinished(run_id, "failed", state.counts, message))
        finally:
            if client is not None:
                await client.aclose()

    async def _open_client(
        self, destination: Any, request: ExportRequest, on_retry: Callable[[RetryNotice], None]
    ) -> SendGridClient | None:
        """Open a client and check the key; a dry-run may go on without one."""
        try:
            key = self.keys.load(destination.id, destination.api_key_env, destination.name)
        except Exception as exc:
            if request.dry_run:
                return None
            raise ExportRefused(str(exc)) from exc
        try:
            client = self.client_factory(key, destination.base_url, on_retry=on_retry)
        except SendGridError as exc:
            raise ExportRefused(str(exc)) from exc
        if request.dry_run:
            return client
        try:
            await client.validate_key()
            await client.get_list(destination.list_id)
        except SendGridError as exc:
            await client.aclose()
            raise ExportRefused(str(exc)) from exc
        return client

    async def _prepare_account(
        self,
        client: SendGridClient | None,
        destination: Any,
        mapping: FieldMapping,
        request: ExportRequest,
    ) -> dict[str, str]:
        """Look up the SendGrid ids of the mapped custom fields (they differ per account)."""
        if not mapping.custom or client is None:
            return {}
        try:
            custom, _reserved = await client.field_definitions()
        except SendGridError as exc:
            if request.dry_run:
                return {}
            raise ExportRefused(str(exc)) from exc
        by_name = {f.name.lower(): f.id for f in custom}
        missing = [name for name in mapping.custom if name.lower() not in by_name]
        if missing and not request.dry_run:
            raise ExportRefused(
                f"Custom field(s) {', '.join(missing)} do not exist on the SendGrid account of "
                f"{destination.name!r}. Create them with `segsync map {destination.name} ... "
                "--create-fields`, or remove them from the mapping."
            )
        return {name: by_name[name.lower()] for name in mapping.custom if name.lower() in by_name}

    def _config_snapshot(
        self, request: ExportRequest, destination: Any, mapping: FieldMapping
    ) -> dict[str, Any]:
        return {
            "workspace": str(self.workspace.root),
            "destination": destination.name,
            "list_id": destination.list_id,
            "base_url": destination.base_url,
            "segments": list(request.segments),
            "mode": request.mode,
            "incremental": request.incremental,
            "dry_run": request.dry_run,
            "mapping": mapping_json(mapping),
            "cap": destination.cap,
        }

    async def _run_phases(
        self,
        request: ExportRequest,
        destination: Any,
        mapping: FieldMapping,
        field_ids: dict[str, str],
        previous: Any,
        state: _RunState,
        ledger: Path,
        client: SendGridClient | None,
        emit: Callable[[ev.Event], None],
        cancel: asyncio.Event,
        started: float,
    ) -> None:
        history = self.history
        run_id = state.run_id
        emit(ev.PhaseStarted(run_id, "planning"))
        if previous is not None and client is not None:
            await self._settle_unconfirmed_batches(previous, state, client, emit)
        skip_emails, resent = None, frozenset[int]()
        if previous is not None:
            skip_emails, missing = await asyncio.to_thread(self._confirmed_emails, run_id)
            resent = frozenset(missing)
            if missing:
                emit(
                    ev.Warning(
                        run_id,
                        f"{len(missing)} confirmed batch(es) of run {run_id} have no record "
                        "of their addresses (a run started by an older segsync, or a lost "
                        "file): their contacts are sent again, which SendGrid treats as "
                        "updates.",
                    )
                )
        plan_request = PlanRequest(
            segments=request.segments,
            mapping=mapping,
            custom_field_ids=field_ids,
            ledger=ledger,
            incremental=request.incremental,
            mirror=request.mode == "mirror",
            skip_emails=skip_emails,
        )
        plan = await asyncio.to_thread(plan_export, self.workspace, plan_request)
        try:
            state.counts = dict(plan.counts)
            # Rows with data problems go to history in the background while the
            # upload starts; the run is not finished before they are all written.
            state.recording = asyncio.ensure_future(
                asyncio.to_thread(self._record_plan_rejections, run_id, plan)
            )
            emit(ev.PlanReady(run_id, dict(plan.counts), _expected_batches(plan, self.settings)))
            if not request.dry_run and plan.counts["to_send"] > destination.cap:
                raise ExportRefused(
                    f"This export would send {plan.counts['to_send']:,} contacts, over the "
                    f"cap of {destination.cap:,} for {destination.name!r}. Narrow the "
                    f"segments, or raise the cap with `segsync destinations set-cap "
                    f"{destination.name} N`."
                )
            if request.dry_run:
                await self._finish_dry_run(plan, state, emit, started)
                return
            assert client is not None
            if previous is not None:
                for batch in history.get_run(run_id).batches:
                    if batch.status in ("completed", "errored") and batch.seq not in resent:
                        emit(ev.BatchSkipped(run_id, batch.seq, batch.contacts))
            await self._upload_and_confirm(plan, state, client, emit, cancel)
            if cancel.is_set():
                await self._finish(state, "cancelled", "cancelled by the user", emit, started)
                return
            removed: set[str] = set()
            if request.mode == "mirror":
                removed = await self._remove_departed(plan, state, client, emit, cancel)
            emit(ev.PhaseStarted(run_id, "recording"))
            if state.failed:
                await self._finish(state, "failed", "; ".join(state.failed), emit, started)
                return
            await asyncio.to_thread(plan.write_ledger, ledger, state.errored_emails, removed)
            status: ev.RunStatus = "partial" if state.errored_emails else "succeeded"
            message = (
                f"{len(state.errored_emails):,} contacts rejected by SendGrid: "
                f"see `segsync runs rejected {run_id} --csv FILE`"
                if state.errored_emails
                else ""
            )
            await self._finish(state, status, message, emit, started)
        finally:
            try:
                if state.recording is not None:
                    await asyncio.shield(state.recording)
            finally:
                plan.close()

    def _record_batch(self, run_id: int, body: Body) -> None:
        """Make a batch known before it is sent: its addresses (so a resumed run
        can skip it once confirmed), then its row in history."""
        batch_emails.record(self.state_dir, run_id, body.seq, body.emails)
        self.history.add_batch(
            run_id, body.seq, body.count, len(body.data), body.first_email, body.last_email
        )

    def _confirmed_emails(self, run_id: int) -> tuple[pa.Array, list[int]]:
        """Addresses of the run's batches that SendGrid finished processing, and
        the seqs of those whose addresses were not recorded."""
        seqs = self.history.confirmed_batches(run_id)
        return batch_emails.confirmed(self.state_dir, run_id, seqs)

    def _record_plan_rejections(self, run_id: int, plan: Plan) -> None:
        """Store the rows excluded for a data problem, all or nothing.

        Rows left out for lack of consent are counted, not stored row by row:
        they are the user's own filter working as intended, not a problem to
        fix, and on real data they can be a large share of every run. A resumed
        run writes them again in place of what a killed attempt left.

        The rows are read from DuckDB before the write transaction starts, so the
        history's write lock is held only for the insert: batch records written
        meanwhile by the upload wait for that, not for the whole read.
        """
        rows = [
            (None, row.key, row.email, _reason(row.category, row.detail), "plan")
            for row in plan.rejected(categories=DATA_PROBLEMS)
        ]
        self.history.replace_rejected(run_id, "plan", rows)

    async def _finish_dry_run(
        self, plan: Plan, state: _RunState, emit: Callable[[ev.Event], None], started: float
    ) -> None:
        first = await asyncio.to_thread(self._first_body, plan, state.list_id)
        emit(
            ev.PreviewReady(
                state.run_id,
                dict(plan.counts),
                tuple(plan.sample_contacts),
                tuple((r.email or "", r.category, r.detail or "") for r in plan.sample_rejected),
                first,
                tuple(plan.removals()[:20]),
            )
        )
        await self._finish(state, "dry_run", "dry-run: nothing was sent", emit, started)

    def _first_body(self, plan: Plan, list_id: str, limit: int = 4000) -> str:
        """The first request body as it would be sent (the key is never in a body)."""
        bodies = pack_bodies(
            plan.contacts(limit=self.settings.max_contacts),
            [list_id],
            max_contacts=self.settings.max_contacts,
            max_bytes=self.settings.max_bytes,
        )
        body = next(iter(bodies), None)
        if body is None:
            return ""
        text = body.data[: limit + 1].decode("utf-8", errors="replace")
        return text if len(body.data) <= limit else text[:limit] + " …"

    async def _finish(
        self,
        state: _RunState,
        status: ev.RunStatus,
        message: str,
        emit: Callable[[ev.Event], None],
        started: float,
    ) -> None:
        if state.recording is not None:
            await asyncio.shield(state.recording)
        counts = self._final_counts(state)
        self.history.finish_run(state.run_id, status, counts, message)
        if status in ("succeeded", "partial", "dry_run"):  # final: nothing left to resume
            await asyncio.to_thread(batch_emails.forget, self.state_dir, state.run_id)
        emit(ev.PhaseStarted(state.run_id, "done"))
        emit(ev.RunFinished(state.run_id, status, counts, message, time.monotonic() - started))

    def _final_counts(self, state: _RunState) -> dict[str, int]:
        """Plan counts plus what SendGrid reported, summed over every batch of the run."""
        counts = dict(state.counts)
        totals = {"sent": 0, "created": 0, "updated": 0, "errored": 0}
        for batch in self.history.get_run(state.run_id).batches:
            if batch.status in FINAL_BATCH_STATUSES:
                totals["sent"] += batch.contacts
                totals["created"] += batch.created or 0
                totals["updated"] += batch.updated or 0
                totals["errored"] += batch.errored or 0
        counts.update(totals)
        counts.setdefault("removed", 0)
        return counts

    # -- upload and confirm -------------------------------------------------

    async def _upload_and_confirm(
        self,
        plan: Plan,
        state: _RunState,
        client: SendGridClient,
        emit: Callable[[ev.Event], None],
        cancel: asyncio.Event,
    ) -> None:
        history = self.history
        settings = self.settings
        to_send = plan.counts["to_send"]
        emit(ev.PhaseStarted(state.run_id, "uploading", to_send))
        start_seq = history.next_batch_seq(state.run_id)
        bodies: Iterator[Body] = iter(
            pack_bodies(
                plan.contacts(),
                [state.list_id],
                max_contacts=settings.max_contacts,
                max_bytes=settings.max_bytes,
                start_seq=start_seq,
            )
        )
        slots = asyncio.Semaphore(settings.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        errors: list[BaseException] = []
        stop = asyncio.Event()  # a failed batch stops new ones; in-flight ones finish

        async def send_and_confirm(body: Body, recorded: asyncio.Future[None]) -> None:
            seq, count, size = body.seq, body.count, len(body.data)
            try:
                try:
                    await recorded  # the batch is in history before it is sent
                    job_id = await client.upsert_body(body.data)
                finally:
                    slots.release()
                # The body is not needed past its upload: dropped here, memory stays
                # flat while SendGrid takes its time with the import jobs.
                del body
                await asyncio.to_thread(history.mark_batch_sent, state.run_id, seq, job_id)
                state.sent += count
                emit(ev.BatchSent(state.run_id, seq, count, size, job_id, state.sent, to_send))
                await self._confirm_job(state, client, seq, count, job_id, emit)
            except BaseException as exc:
                errors.append(exc)
                stop.set()
                raise

        while not (cancel.is_set() or stop.is_set()):
            try:
                body = await asyncio.to_thread(next, bodies, None)
            except Exception as exc:  # e.g. a contact too large for any request
                errors.append(exc)  # after the batches in flight have ended
                break
            if body is None:
                break
            # Recorded on a thread while the next body is built: when the history's
            # write lock is busy (plan rejections being stored), only this batch's
            # PUT waits for it, not the stream.
            recorded = asyncio.ensure_future(
                asyncio.to_thread(self._record_batch, state.run_id, body)
            )
            await slots.acquire()
            if cancel.is_set() or stop.is_set():
                slots.release()
                try:
                    await recorded
                except Exception as exc:  # reported after the batches in flight end
                    errors.append(exc)
                break
            task = asyncio.create_task(send_and_confirm(body, recorded))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            emit(ev.PhaseStarted(state.run_id, "confirming", len(tasks)))
            await asyncio.gather(*tasks, return_exceptions=True)
        for exc in errors:  # the first failure is the cause; later ones follow from it
            if not isinstance(exc, asyncio.CancelledError):
                raise exc

    async def _confirm_job(
        self,
        state: _RunState,
        client: SendGridClient,
        seq: int,
        count: int,
        job_id: str,
        emit: Callable[[ev.Event], None],
    ) -> None:
        """Poll one import job (batch ``seq`` of ``count`` contacts) until SendGrid
        says it is done; 202 is not success."""
        job = await self._poll_job(client, job_id)
        if job is None:
            state.failed.append(
                f"import job {job_id} still pending after {self.settings.job_timeout:.0f} s"
            )
            return
        rejected: list[tuple[str, str]] = []
        if job.status in ("errored", "failed") and job.errors_url:
            rejected = await client.download_errors(job.errors_url)
        errored = job.errored if job.errored is not None else len(rejected)
        if job.status == "failed" and not errored:
            errored = count  # failed as a whole, without a per-row count
        await asyncio.to_thread(
            self.history.mark_batch_finished,
            state.run_id,
            seq,
            job.status,
            job.created or 0,
            job.updated or 0,
            errored,
        )
        if rejected:
            state.errored_emails.update(email.lower() for email, _reason in rejected)
            await asyncio.to_thread(
                self.history.add_rejected,
                state.run_id,
                [(seq, None, email, reason, "sendgrid") for email, reason in rejected],
            )
            emit(ev.RowsRejected(state.run_id, seq, tuple(rejected)))
        emit(
            ev.JobFinished(
                state.run_id, seq, job_id, job.status, job.created or 0, job.updated or 0, errored
            )
        )

    async def _settle_unconfirmed_batches(
        self,
        previous: Any,
        state: _RunState,
        client: SendGridClient,
        emit: Callable[[ev.Event], None],
    ) -> None:
        """On resume: a batch sent before the kill may have landed; ask SendGrid first."""
        for batch in previous.batches:
            if batch.status == "sent" and batch.job_id:
                with contextlib.suppress(SendGridError):
                    await self._confirm_job(
                        state, client, batch.seq, batch.contacts, batch.job_id, emit
                    )

    # -- mirror -------------------------------------------------------------

    async def _remove_departed(
        self,
        plan: Plan,
        state: _RunState,
        client: SendGridClient,
        emit: Callable[[ev.Event], None],
        cancel: asyncio.Event,
    ) -> set[str]:
        """Take contacts that left the segments off the list (never delete them)."""
        emails = plan.removals()
        emit(ev.PhaseStarted(state.run_id, "removing", len(emails)))
        removed: set[str] = set()
        ids_by_email = await client.search_emails(emails) if emails else {}
        found = list(ids_by_email.items())
        for start in range(0, len(found), REMOVE_CHUNK):
            if cancel.is_set():
                break
            chunk = found[start : start + REMOVE_CHUNK]
            job_ids = await client.remove_from_list(state.list_id, [cid for _e, cid in chunk])
            for job_id in job_ids:
                await self._poll_job(client, job_id, missing_ok=True)
            removed.update(email for email, _cid in chunk)
            state.counts["removed"] = len(removed)
            emit(ev.ContactsRemoved(state.run_id, len(removed), len(emails)))
        # Emails that SendGrid no longer knows are off the list already.
        removed.update(e for e in emails if e not in ids_by_email)
        return removed

    async def _poll_job(
        self, client: SendGridClient, job_id: str, *, missing_ok: bool = False
    ) -> ImportJob | None:
        """Poll a job until it is terminal; None if it is still pending at the timeout.

        The interval grows from `poll_interval` so small jobs confirm fast and big
        ones are not hammered. `missing_ok`: a removal job SendGrid does not show
        as an import job counts as done (whether it does is unconfirmed).
        """
        interval = self.settings.poll_interval
        deadline = time.monotonic() + self.settings.job_timeout
        while True:
            try:
                job = await client.import_status(job_id)
            except SendGridError as exc:
                if missing_ok and getattr(exc, "status", None) == 404:
                    return None
                raise
            if job.finished:
                return job
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, self.settings.poll_max_interval)


def _reason(category: str, detail: str | None) -> str:
    return f"{category}: {detail}" if detail else category


def _expected_batches(plan: Plan, settings: EngineSettings) -> int:
    to_send = plan.counts["to_send"]
    return -(-to_send // settings.max_contacts) if to_send else 0
