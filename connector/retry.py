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
    None when neither header is usable.
    """
    now = time.time() if now is None else now
    reset = headers.get("x-ratelimit-reset")
    if reset is not None:
        try:
            value = float(reset)
        except ValueError:
            value = None
        if value is not None:
            return max(value - now, 0.0) if value > EPOCH_THRESHOLD else max(value, 0.0)
    after = headers.get("retry-after")
    if after is not None:
        try:
            return max(float(after), 0.0)
        except ValueError:
            pass
        try:
            return max(parsedate_to_datetime(after).timestamp() - now, 0.0)
        except (TypeError, ValueError):
            return None
    return None


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
        seconds = failure.wait_hint
        if seconds is None:
            seconds = self.policy.rate_limit_default
        if self.policy.max_rate_limit_wait is not None:
            seconds = min(seconds, self.policy.max_rate_limit_wait)
        return max(seconds, MIN_RATE_LIMIT_WAIT)

    def stop(self, state: RetryCallState) -> bool:
        self.attempts = state.attempt_number
        if state.attempt_number >= self.policy.max_attempts:
            return True
        return self.waited + state.upcoming_sleep > self.policy.max_total_wait

    def before_sleep(self, state: RetryCallState) -> None:
        failure = self.failure(state)
        seconds = state.upcoming_sleep
        self.waited += seconds
        if self.on_retry is not None:
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
