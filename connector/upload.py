"""Upload a changeset's contacts and confirm every import job (202 is not success).

Bodies are packed while earlier ones are in flight; each batch is recorded in
history (with its addresses, for resume) before it is sent; every job is polled
to a terminal status and its rejected rows fetched. On cancel nothing new
starts and polling stops: batches sent but not confirmed stay ``sent`` and a
resume asks SendGrid about them first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from connector import events as ev
from connector.batching import Body, pack_bodies
from connector.client import SendGridClient
from connector.errors import RequestCancelled
from connector.jobs import poll_job
from store import batch_emails

if TYPE_CHECKING:
    from store.history import History


@dataclass
class UploadState:
    """Bookkeeping of one run's upload while it executes."""

    run_id: int
    list_id: str
    to_send: int
    sent: int = 0  # contacts in bodies SendGrid accepted (202), confirmed or not
    errored: dict[str, str] = field(default_factory=dict)  # email -> SendGrid's reason
    failed: list[str] = field(default_factory=list)  # why the run cannot succeed
    unconfirmed: int = 0  # batches whose job did not reach a terminal status


@dataclass(frozen=True)
class UploadContext:
    """What the upload needs from the engine, as plain values and callables."""

    history: History
    state_dir: Path
    client: SendGridClient
    emit: Callable[[ev.Event], None]
    cancel: asyncio.Event
    concurrency: int
    max_contacts: int
    max_bytes: int
    poll_interval: float
    poll_max_interval: float
    job_timeout: float
    keys_for: Callable[[set[str]], dict[str, str | None]]


async def upload_and_confirm(
    ctx: UploadContext, contacts: Iterator[pa.RecordBatch], state: UploadState
) -> None:
    """Send every contact of ``contacts`` and confirm each job; raises the first
    failure after the batches in flight have ended."""
    history = ctx.history
    ctx.emit(ev.PhaseStarted(state.run_id, "uploading", state.to_send))
    start_seq = await asyncio.to_thread(history.next_batch_seq, state.run_id)
    bodies: Iterator[Body] = iter(
        pack_bodies(
            contacts,
            [state.list_id],
            max_contacts=ctx.max_contacts,
            max_bytes=ctx.max_bytes,
            start_seq=start_seq,
        )
    )
    slots = asyncio.Semaphore(ctx.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    errors: list[BaseException] = []
    stop = asyncio.Event()  # a failed batch stops new ones; in-flight ones finish

    async def send_and_confirm(body: Body, recorded: asyncio.Future[None]) -> None:
        seq, count, size = body.seq, body.count, len(body.data)
        try:
            try:
                await recorded  # the batch is in history before it is sent
                job_id = await ctx.client.upsert_body(body.data)
            finally:
                slots.release()
            # The body is not needed past its upload: dropped here, memory stays
            # flat while SendGrid takes its time with the import jobs.
            del body
            await asyncio.to_thread(history.mark_batch_sent, state.run_id, seq, job_id)
            state.sent += count
            ctx.emit(
                ev.BatchSent(state.run_id, seq, count, size, job_id, state.sent, state.to_send)
            )
            await confirm_job(ctx, state, seq, count, job_id)
        except BaseException as exc:
            errors.append(exc)
            stop.set()
            raise

    while not (ctx.cancel.is_set() or stop.is_set()):
        try:
            body = await asyncio.to_thread(next, bodies, None)
        except Exception as exc:  # e.g. a contact too large for any request
            errors.append(exc)  # after the batches in flight have ended
            break
        if body is None:
            break
        # Recorded on a thread while the next body is built: when the history's
        # write lock is busy, only this batch's PUT waits for it, not the stream.
        recorded = asyncio.ensure_future(
            asyncio.to_thread(_record_batch, history, ctx.state_dir, state.run_id, body)
        )
        await slots.acquire()
        if ctx.cancel.is_set() or stop.is_set():
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
        ctx.emit(ev.PhaseStarted(state.run_id, "confirming", len(tasks)))
        await asyncio.gather(*tasks, return_exceptions=True)
    for error in errors:  # the first failure is the cause; later ones follow from it
        if isinstance(error, asyncio.CancelledError):
            continue
        if isinstance(error, RequestCancelled) and ctx.cancel.is_set():
            continue  # a batch the cancel stopped before it reached SendGrid
        raise error


def _record_batch(history: History, state_dir: Path, run_id: int, body: Body) -> None:
    """Make a batch known before it is sent: its addresses (so a resumed run
    can skip it once confirmed), then its row in history."""
    batch_emails.record(state_dir, run_id, body.seq, body.emails)
    history.add_batch(
        run_id, body.seq, body.count, len(body.data), body.first_email, body.last_email
    )


async def confirm_job(
    ctx: UploadContext, state: UploadState, seq: int, count: int, job_id: str
) -> None:
    """Poll one import job (batch ``seq`` of ``count`` contacts) until SendGrid
    says it is done, then record its outcome and its rejected rows."""
    job = await poll_job(
        ctx.client,
        job_id,
        cancel=ctx.cancel,
        interval=ctx.poll_interval,
        max_interval=ctx.poll_max_interval,
        timeout=ctx.job_timeout,
    )
    if job is None:
        state.unconfirmed += 1
        if not ctx.cancel.is_set():
            state.failed.append(f"import job {job_id} still pending after {ctx.job_timeout:.0f} s")
        return
    rejected: list[tuple[str, str]] = []
    if job.status in ("errored", "failed") and job.errors_url:
        rejected = await ctx.client.download_errors(job.errors_url)
    errored = job.errored if job.errored is not None else len(rejected)
    if job.status == "failed" and not errored:
        errored = count  # failed as a whole, without a per-row count
    await asyncio.to_thread(
        ctx.history.mark_batch_finished,
        state.run_id,
        seq,
        job.status,
        job.created or 0,
        job.updated or 0,
        errored,
    )
    if rejected:
        reasons = {email.strip().lower(): reason for email, reason in rejected}
        state.errored.update(reasons)
        keys = await asyncio.to_thread(ctx.keys_for, set(reasons))
        await asyncio.to_thread(
            ctx.history.add_rejected,
            state.run_id,
            [(seq, keys.get(email.strip().lower()), email, reason, "sendgrid")
             for email, reason in rejected],
        )  # fmt: skip
        ctx.emit(ev.RowsRejected(state.run_id, seq, tuple(rejected)))
    ctx.emit(
        ev.JobFinished(
            state.run_id, seq, job_id, job.status, job.created or 0, job.updated or 0, errored
        )
    )
