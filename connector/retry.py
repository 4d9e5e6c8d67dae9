"""When and how long to wait before sending a request to SendGrid again.

Rate limits are normal on big exports: SendGrid says when the window resets
and we wait exactly that long, telling the caller (the UI shows "waiting 12 s
for SendGrid rate limit"). Server errors, timeouts and dropped connections are
retried with exponential backoff and jitter, so many clients hitting a bad
minute do not all come back at once. Other 4xx answers are never retried: the
same request gets the same refusal. Attempts and the total time spent waiting
are both bounded, then the caller gets an exception that says what happened.

The loop itself is tenacity's; this module only decides what is retryable and
how long each wait is.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_exponential_jitter

from connector.errors import NetworkError, RateLimited, SendGridError, SendGridUnavailable

T = TypeVar("T")
RetryKind = Literal["rate_limit", "transient"]

EPOCH_THRESHOLD = 1e9  # X-RateLimit-Reset above this is a Unix time, below it a delay
MIN_RATE_LIMIT_WAIT = 0.1  # a reset "now" must not turn into a burst of instant retries


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """Sent to ``on_retry`` before each wait: the engine turns it into an event."""

    kind: RetryKind
    seconds: float
    endpoint: str
    attempt: int  # the attempt that just failed, from 1
    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds and pacing. ``max_total_wait`` caps the sum of the waits of one call;
    ``max_rate_limit_wait`` (None: no cap) shortens what SendGrid asks for, which
    is meant for tests and demos, not for real accounts."""

    max_attempts: int = 8
    max_total_wait: float = 300.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    rate_limit_default: float = 5.0  # a 429 without reset headers
    max_rate_limit_wait: float | None = None

    def rate_limit_delay(self, hint: float | None) -> float:
        """The wait for a rate limit: SendGrid's hint (or the default), capped for
        demos by ``max_rate_limit_wait``, never shorter than a tenth of a second."""
        seconds = self.rate_limit_default if hint is None or not math.isfinite(hint) else hint
        if self.max_rate_limit_wait is not None:
            seconds = min(seconds, self.max_rate_limit_wait)
        return max(seconds, MIN_RATE_LIMIT_WAIT)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_total_wait < 0 or self.backoff_initial < 0 or self.backoff_max < 0:
            raise ValueError("waits must not be negative")


class Retryable(Exception):  # an internal signal, never seen by callers
    """One failed attempt that may succeed if sent again.

    Holds plain values only (no httpx objects, which carry the API key).
    """

    def __init__(
        self,
        kind: RetryKind,
        reason: str,
        *,
        endpoint: str,
        host: str,
        status: int | None = None,
        sendgrid_message: str | None = None,
        wait_hint: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.endpoint = endpoint
        self.host = host
        self.status = status
        self.sendgrid_message = sendgrid_message
        self.wait_hint = wait_hint
        # False: a wait someone was already told about (requests on the wire
        # together that all met the same 429 wait once, and say so once)
        self.announce = True

    def give_up(self, attempts: int, waited: float) -> SendGridError:
        """The exception a caller sees once the budget is spent."""
        if self.kind == "rate_limit":
            return RateLimited(self.endpoint, attempts, waited, self.sendgrid_message)
        if self.status is not None:
            return SendGridUnavailable(
                self.endpoint, self.status, attempts, waited, self.sendgrid_message
            )
        return NetworkError(self.host, self.endpoint, self.reason, attempts)


def rate_limit_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds SendGrid asks us to wait, from X-RateLimit-Reset or Retry-After.

    SendGrid documents Reset as epoch seconds but has been seen sending small
    values that are seconds from now: a value above 1e9 is taken as epoch.
    None when neither header is usable: ``nan``, ``inf`` and negative numbers
    are unusable too (a nan wait would compare false against every bound, so
    the wait budget would stop applying).
    """
    now = time.time() if now is None else now
    reset = _finite(headers.get("x-ratelimit-reset"))
    if reset is not None:
        return max(reset - now, 0.0) if reset > EPOCH_THRESHOLD else reset
    after = headers.get("retry-after")
    if after is None:
        return None
    seconds = _finite(after)
    if seconds is not None:
        return seconds
    try:
        return max(parsedate_to_datetime(after).timestamp() - now, 0.0)
    except (TypeError, ValueError, OverflowError):
        return None


def _finite(raw: str | None) -> float | None:
    """A header's number if it is one a wait can be built on: finite, not negative."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def rate_limit_remaining(headers: Mapping[str, str]) -> int | None:
    """X-RateLimit-Remaining as a number, None when absent or unreadable."""
    value = _finite(headers.get("x-ratelimit-remaining"))
    return int(value) if value is not None else None


class RateGate:
    """One gate per client, shared by every request in flight on it.

    When SendGrid says wait (a 429, or a window whose remaining requests the
    ones already in flight could use up), the gate closes until the window
    resets, and no request on the client is sent before it opens: without it,
    every request queued behind the first 429 would fire into the same closed
    window and earn its own 429. A closing is announced once, however often it
    is extended (the UI shows one "waiting" line, not one per queued request).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._open_at = 0.0
        self._owner: object | None = None
        self._closings = 0  # each time the gate goes from open to closed
        self._announced = 0  # the last closing someone told on_retry about
        self._began_by: object | None = None  # the call whose answer began this closing

    @property
    def closed_for(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        return max(self._open_at - self._clock(), 0.0)

    def close_for(self, seconds: float, owner: object | None = None, *, announced: bool) -> bool:
        """Keep requests back for ``seconds`` from now (never shortens a closing);
        True when this wait was already told about for another request (requests
        on the wire together that all met the same 429 wait once: one notice).

        ``owner`` is the call whose answer closed it: that call is already
        waiting out its own retry delay, so it does not wait here again.
        ``announced``: the caller tells ``on_retry`` about this wait.
        """
        now = self._clock()
        new = self._open_at <= now
        told = not new and self._announced == self._closings and self._began_by is not owner
        until = now + seconds
        if until <= self._open_at:
            return told
        if new:
            self._closings += 1
            self._began_by = owner
        self._open_at, self._owner = until, owner
        if announced:
            self._announced = self._closings
        return told

    async def wait_open(
        self,
        owner: object,
        wait: Callable[[float], Awaitable[None]],
        announce: Callable[[float], None],
    ) -> None:
        """Return once the gate is open; ``wait`` sleeps (and may raise on cancel).

        Waits again only if the closing was extended while waiting, so a test's
        instant sleep cannot make this spin.
        """
        while True:
            target = self._open_at
            seconds = target - self._clock()
            if seconds <= 0 or self._owner is owner:
                return
            if self._closings > self._announced:
                self._announced = self._closings
                announce(seconds)
            await wait(seconds)
            if self._open_at <= target:
                return


class _Budget:
    """tenacity stop/wait/before_sleep for one call, sharing the policy."""

    def __init__(self, policy: RetryPolicy, on_retry: Callable[[RetryNotice], None] | None):
        self.policy = policy
        self.on_retry = on_retry
        self.backoff = wait_exponential_jitter(
            multiplier=policy.backoff_initial, max=policy.backoff_max, jitter=policy.backoff_initial
        )
        self.waited = 0.0
        self.attempts = 0

    @staticmethod
    def failure(state: RetryCallState) -> Retryable:
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, Retryable)
        return exc

    def wait(self, state: RetryCallState) -> float:
        failure = self.failure(state)
        if failure.kind != "rate_limit":
            return self.backoff(state)
        return self.policy.rate_limit_delay(failure.wait_hint)

    def stop(self, state: RetryCallState) -> bool:
        self.attempts = state.attempt_number
        if state.attempt_number >= self.policy.max_attempts:
            return True
        return self.waited + state.upcoming_sleep > self.policy.max_total_wait

    def before_sleep(self, state: RetryCallState) -> None:
        failure = self.failure(state)
        seconds = state.upcoming_sleep
        self.waited += seconds
        if self.on_retry is not None and failure.announce:
            self.on_retry(
                RetryNotice(
                    failure.kind, seconds, failure.endpoint, state.attempt_number, failure.reason
                )
            )


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[RetryNotice], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``attempt`` until it returns, raises something other than ``Retryable``,
    or the budget is spent (then the matching ``SendGridError``)."""
    budget = _Budget(policy, on_retry)
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(Retryable),
        stop=budget.stop,
        wait=budget.wait,
        before_sleep=budget.before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        return await retrying(attempt)
    except Retryable as exc:
        failure = exc
    # Raised here, outside the except block, so the error has no __context__
    # pointing back into httpx's exceptions (and their requests' headers).
    raise failure.give_up(budget.attempts, budget.waited)
