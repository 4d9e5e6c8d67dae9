"""Take people who left the segments off the list, held to the upload's standard.

A removal is what hurts most when it silently fails or silently over-reaches,
so each is confirmed, not assumed:

1. The addresses are looked up (100 per search) for their contact ids; an
   address SendGrid does not know is not on the list: nothing to do.
2. Ids go in DELETE requests of 100, pipelined with the same concurrency as
   uploads (the client's rate-limit gate is shared by all of them); an id
   SendGrid no longer has is split out (a contact that is gone is on no list).
3. Each removal job is polled to a terminal status where SendGrid answers for
   it; then, whatever the job said, membership is read back (search returns
   each contact's ``list_ids``) before anyone counts as removed. The 202 and
   even a "completed" job are not taken on trust (sendgrid-api.md).

The outcome names every person: removed, still on the list (with why), or
not attempted because the run was cancelled. Only confirmed removals leave
the ledger; the rest are tried again by the next mirror run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from connector import events as ev
from connector.client import REMOVE_CHUNK, SendGridClient
from connector.errors import RequestCancelled, SendGridError
from connector.jobs import poll_job


@dataclass
class RemovalOutcome:
    removed: set[str] = field(default_factory=set)  # confirmed off the list
    failed: dict[str, str] = field(default_factory=dict)  # still on it: email -> why
    not_attempted: set[str] = field(default_factory=set)  # cancelled before their turn


@dataclass(frozen=True)
class RemovalSettings:
    concurrency: int
    poll_interval: float
    poll_max_interval: float
    job_timeout: float


async def remove_departed(
    client: SendGridClient,
    list_id: str,
    emails: Sequence[str],
    *,
    run_id: int,
    settings: RemovalSettings,
    cancel: asyncio.Event,
    emit: Callable[[ev.Event], None],
    outcome: RemovalOutcome,
) -> None:
    """Remove ``emails`` from ``list_id`` (never deleting the contacts), filling
    ``outcome`` as removals are confirmed, so a cancel or a failure midway
    still leaves the record of who went."""
    total = len(emails)
    emit(ev.PhaseStarted(run_id, "removing", total))
    if not emails:
        return
    ids_by_email = await client.search_emails(emails)
    # Unknown to the account: not on the list, so they are off it already.
    outcome.removed.update(e for e in emails if e not in ids_by_email)
    found = sorted(ids_by_email.items())
    chunks = [found[i : i + REMOVE_CHUNK] for i in range(0, len(found), REMOVE_CHUNK)]
    slots = asyncio.Semaphore(settings.concurrency)

    async def remove_chunk(chunk: list[tuple[str, str]]) -> None:
        async with slots:
            if cancel.is_set():
                outcome.not_attempted.update(e for e, _ in chunk)
                return
            chunk_emails = [e for e, _ in chunk]
            try:
                for removal in await client.remove_members(list_id, [cid for _, cid in chunk]):
                    if removal.job_id:
                        await _settle(client, removal.job_id, settings, cancel)
                on_list = await _still_on_list(client, list_id, chunk_emails)
            except RequestCancelled:
                outcome.not_attempted.update(chunk_emails)
                return
            except SendGridError as exc:
                # The DELETE or the read-back failed: nobody in the chunk is known
                # to be off the list, so they all stay in the ledger.
                outcome.failed.update((e, f"removal not confirmed: {exc}") for e in chunk_emails)
                return
            for email in chunk_emails:
                if email in on_list:
                    outcome.failed[email] = "still on the list after the removal job"
                else:
                    outcome.removed.add(email)
            emit(ev.ContactsRemoved(run_id, len(outcome.removed), total, len(outcome.failed)))

    await asyncio.gather(*(remove_chunk(c) for c in chunks))
    emit(ev.ContactsRemoved(run_id, len(outcome.removed), total, len(outcome.failed)))


async def _settle(
    client: SendGridClient, job_id: str, settings: RemovalSettings, cancel: asyncio.Event
) -> None:
    """Wait for a removal job where SendGrid answers for it; a job it does not
    show (404) is judged by the read-back alone."""
    try:
        await poll_job(
            client,
            job_id,
            cancel=cancel,
            interval=settings.poll_interval,
            max_interval=settings.poll_max_interval,
            timeout=settings.job_timeout,
        )
    except SendGridError as exc:
        if getattr(exc, "status", None) != 404:
            raise


async def _still_on_list(client: SendGridClient, list_id: str, emails: list[str]) -> set[str]:
    """Which of ``emails`` SendGrid still shows as members of ``list_id``."""
    members = await client.memberships(emails)
    return {email for email, member in members.items() if list_id in member.list_ids}
