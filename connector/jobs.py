"""Polling SendGrid's jobs (imports and list removals) to a terminal status."""

from __future__ import annotations

import asyncio
import contextlib
import time

from connector.client import SendGridClient
from connector.models import ImportJob


async def poll_job(
    client: SendGridClient,
    job_id: str,
    *,
    cancel: asyncio.Event,
    interval: float,
    max_interval: float,
    timeout: float,
) -> ImportJob | None:
    """Poll until the job is terminal; None if still pending at ``timeout`` or
    when ``cancel`` is set (the wait between polls ends at once on cancel).

    The interval grows from ``interval`` (x1.5 per poll) so small jobs confirm
    fast and big ones are not hammered.
    """
    deadline = time.monotonic() + timeout
    while not cancel.is_set():
        job = await client.import_status(job_id)
        if job.finished:
            return job
        if time.monotonic() > deadline:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cancel.wait(), timeout=interval)
        interval = min(interval * 1.5, max_interval)
    return None
