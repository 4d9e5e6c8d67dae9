"""Retries: rate limits wait as told, transient failures back off, 4xx never repeat."""

from __future__ import annotations

import time
from email.utils import formatdate

import httpx
import pytest

from connector.client import GLOBAL_URL, SendGridClient
from connector.emulator import Emulator
from connector.errors import RateLimited, SendGridUnavailable
from connector.retry import RetryNotice, RetryPolicy, rate_limit_wait
from tests.connector import requests_to


class Clock:
    """Records waits and notices in the order they happen, without waiting."""

    def __init__(self) -> None:
        self.log: list[object] = []

    async def sleep(self, seconds: float) -> None:
        self.log.append(("sleep", seconds))

    def notice(self, notice: RetryNotice) -> None:
        self.log.append(notice)

    @property
    def notices(self) -> list[RetryNotice]:
        return [x for x in self.log if isinstance(x, RetryNotice)]


def client_for(emulator: Emulator, clock: Clock, **kwargs) -> SendGridClient:
    return SendGridClient(
        emulator.api_key, emulator.url, on_retry=clock.notice, sleep=clock.sleep, **kwargs
    )


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"x-ratelimit-reset": "12"}, 12.0),
        ({"x-ratelimit-reset": "0"}, 0.0),
        ({"x-ratelimit-reset": str(1_700_000_030)}, 30.0),  # epoch: 30 s after "now"
        ({"x-ratelimit-reset": str(1_699_999_000)}, 0.0),  # epoch in the past
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": formatdate(1_700_000_045, usegmt=True)}, 45.0),
        ({"x-ratelimit-reset": "soon", "retry-after": "3"}, 3.0),
        ({"retry-after": "whenever"}, None),
        ({}, None),
    ],
)
def test_rate_limit_wait_reads_reset_as_epoch_or_delay(headers, seconds):
    assert rate_limit_wait(headers, now=1_700_000_000.0) == seconds


async def test_429_waits_as_reset_says_then_succeeds(emulator: Emulator):
    emulator.set_faults(script=["429"], rate_limit_reset=12)
    clock = Clock()
    async with client_for(emulator, clock) as client:
        assert await client.contact_count() == 0
    assert clock.log == [
        RetryNotice(
            "rate_limit", 12.0, "GET /v3/marketing/contacts/count", 1, "rate limited (429)"
        ),
        ("sleep", 12.0),
    ]
    assert requests_to(emulator, "GET /v3/marketing/contacts/count", 2) == 2


async def test_5xx_and_dropped_connections_back_off_exponentially(emulator: Emulator):
    emulator.set_faults(script=["500", "503", "drop"])
    clock = Clock()
    async with client_for(emulator, clock, backoff_initial=0.5) as client:
        created = await client.create_list("after three failures")
    assert created.name == "after three failures"
    notices = clock.notices
    assert [n.kind for n in notices] == ["transient"] * 3
    assert [n.attempt for n in notices] == [1, 2, 3]
    assert notices[0].reason == "server error 500" and notices[1].reason == "server error 503"
    assert "disconnected" in notices[2].reason.lower()
    # 0.5 * 2^(n-1) plus up to 0.5 s of jitter
    for notice, base in zip(notices, (0.5, 1.0, 2.0), strict=True):
        assert base <= notice.seconds <= base + 0.5
    assert [x for x in clock.log if isinstance(x, tuple)] == [("sleep", n.seconds) for n in notices]


async def test_upsert_is_resent_after_a_dropped_connection(emulator: Emulator):
    """Safe because upserts are keyed by email: the contact ends up there once."""
    clock = Clock()
    async with client_for(emulator, clock) as client:
        lst = await client.create_list("l")
        emulator.set_faults(script=["drop"])
        job_id = await client.upsert_contacts([lst.id], [{"email": "once@example.com"}])
        assert job_id
        emulator.state.drain()
        assert await client.list_contact_count(lst.id) == 1
    assert [n.kind for n in clock.notices] == ["transient"]
    assert emulator.state.list_members(lst.id) == {"once@example.com"}


@pytest.mark.slow
async def test_real_rate_limit_windows_are_waited_out(emulator: Emulator):
    """The emulator's own limiter (2 per second), real sleeps: every call gets through."""
    emulator.set_faults(rate_limit=2, rate_period=1.0)
    notices: list[RetryNotice] = []
    started = time.monotonic()
    async with SendGridClient(emulator.api_key, emulator.url, on_retry=notices.append) as client:
        for _ in range(5):
            assert await client.contact_count() == 0
    assert time.monotonic() - started < 6
    assert notices and all(n.kind == "rate_limit" for n in notices)
    assert all(n.seconds <= 1.0 for n in notices)


async def test_a_wait_beyond_the_budget_is_not_started(emulator: Emulator):
    emulator.set_faults(script=["429"], rate_limit_reset=60)
    clock = Clock()
    async with client_for(emulator, clock, max_total_wait=30) as client:
        with pytest.raises(RateLimited) as info:
            await client.contact_count()
    assert clock.log == []  # no notice for a wait that will not happen
    assert "1 attempt over 0 s" in str(info.value)
    assert requests_to(emulator, "GET /v3/marketing/contacts/count", 1) == 1


async def test_attempts_are_bounded(emulator: Emulator):
    emulator.set_faults(rate_5xx=1.0, seed=1)
    clock = Clock()
    async with client_for(emulator, clock, max_attempts=4) as client:
        with pytest.raises(SendGridUnavailable):
            await client.contact_count()
    assert len(clock.notices) == 3
    assert requests_to(emulator, "GET /v3/marketing/contacts/count", 4) == 4


async def test_rate_limit_waits_can_be_capped_for_demos(emulator: Emulator):
    emulator.set_faults(script=["429"], rate_limit_reset=30)
    clock = Clock()
    async with client_for(emulator, clock, max_rate_limit_wait=0.2) as client:
        await client.contact_count()
    assert [n.seconds for n in clock.notices] == [0.2]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, RetryPolicy().rate_limit_default), ({"Retry-After": "3"}, 3.0)],
)
async def test_429_without_reset_uses_retry_after_or_a_default(headers, expected):
    answers = [httpx.Response(429, headers=headers, json={"errors": [{"message": "too many"}]})]
    answers.append(httpx.Response(200, json={"contact_count": 3}))
    clock = Clock()
    transport = httpx.MockTransport(lambda request: answers.pop(0))
    async with SendGridClient(
        "SG.k", GLOBAL_URL, transport=transport, on_retry=clock.notice, sleep=clock.sleep
    ) as client:
        assert await client.contact_count() == 3
    assert [n.seconds for n in clock.notices] == [expected]


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
