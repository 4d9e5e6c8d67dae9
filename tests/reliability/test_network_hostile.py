"""A hostile network between segsync and SendGrid: slow, huge, malformed, proxied, busy.

Each test stands for something a user would otherwise meet as a hang, a
crash with a raw traceback, an exhausted machine, or an API key sent in
clear. Servers here are tiny loopback servers (or httpx's MockTransport) that
misbehave on purpose; the emulator stands in for SendGrid where it can. No
assertion depends on tight timings: the bounds are many times what a working
client needs, and far below what a broken one takes.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import orjson
import pytest

from connector.client import GLOBAL_URL, SendGridClient
from connector.emulator import Emulator
from connector.errors import (
    InsecureURL,
    NetworkError,
    RateLimited,
    RequestCancelled,
    ResponseTooLarge,
    SendGridError,
    SendGridUnavailable,
    UnexpectedAnswer,
)
from connector.retry import RetryNotice, RetryPolicy, rate_limit_wait
from tests.connector import no_sleep, requests_to

pytestmark = pytest.mark.slow  # hostile servers, deadlines and waits

KEY = "SG.hostile-network-key-0123.hostile-network-key-0123456789abcdefghijk"
COUNT = "GET /v3/marketing/contacts/count"
MB = 1024 * 1024

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# ------------------------------------------------------------------ helpers


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[str]:
    """A loopback server whose every connection is handled by ``handle``."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: that is often the point
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and body, as received."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


async def eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def httpx_objects_reachable(exc: BaseException) -> list[str]:
    """httpx requests, responses or exceptions reachable from what the caller got:
    its chain, attributes, traceback frames' locals and closures (the client
    itself, the caller's own object, is not walked)."""
    found: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[object, int]] = [(exc, 0)]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen or depth > 15 or obj is None:
            continue
        seen.add(id(obj))
        if isinstance(obj, httpx.Request | httpx.Response | httpx.HTTPError):
            found.append(type(obj).__name__)
            continue
        if isinstance(obj, httpx.Headers) and "authorization" in obj:
            found.append("Headers with Authorization")
            continue
        children: list[object] = []
        if isinstance(obj, BaseException):
            children = [obj.__context__, obj.__cause__, obj.__traceback__, *obj.args]
            children += list(vars(obj).values())
        elif isinstance(obj, types.TracebackType):
            children = [obj.tb_frame, obj.tb_next]
        elif isinstance(obj, types.FrameType):
            children = list(obj.f_locals.values())
        elif isinstance(obj, types.FunctionType):
            children = [c.cell_contents for c in obj.__closure__ or () if c.cell_contents]
        elif isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            children = list(obj)
        elif isinstance(obj, SendGridClient | httpx.AsyncClient | type | types.ModuleType):
            continue
        elif type(obj).__module__.split(".")[0] in ("connector", "tenacity", "concurrent"):
            slots = getattr(type(obj), "__slots__", ())
            children = [getattr(obj, s, None) for s in slots] + list(
                getattr(obj, "__dict__", {}).values()
            )
        stack.extend((child, depth + 1) for child in children)
    return found


def assert_clean(exc: BaseException) -> None:
    """What a user or a crash reporter could see holds neither the key nor httpx's request."""
    import traceback

    texts = [
        str(exc),
        repr(exc),
        "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format()),
    ]
    assert not any(KEY in text for text in texts)
    assert httpx_objects_reachable(exc) == []


def mock_client(handler: Callable[[httpx.Request], httpx.Response], **kwargs) -> SendGridClient:
    kwargs.setdefault("sleep", no_sleep)
    return SendGridClient(KEY, GLOBAL_URL, transport=httpx.MockTransport(handler), **kwargs)


def statuses(emulator: Emulator, endpoint: str) -> list[int]:
    return [e.status for e in list(emulator.state.request_log) if e.endpoint == endpoint]


# ------------------------------------------------------- 1. slow and huge


async def test_a_server_trickling_its_answer_is_cut_off_at_the_deadline():
    """httpx's timeouts are per read: a byte every 0.2 s would never trip them."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: 100000\r\n\r\n")
        while True:
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.2)

    async with (
        raw_server(trickle) as url,
        SendGridClient(KEY, url, request_deadline=1.0, max_attempts=2) as client,
    ):
        started = time.monotonic()
        with pytest.raises(NetworkError) as info:
            await asyncio.wait_for(client.contact_count(), 30)
        elapsed = time.monotonic() - started
    assert "no complete answer within 1 s" in str(info.value)
    assert "2 attempts" in str(info.value)  # a deadline is retried like a timeout, within budget
    assert elapsed < 15
    assert_clean(info.value)


async def test_an_endless_answer_is_read_only_up_to_the_cap():
    """No Content-Length, bytes forever: reading stops at the cap, the server sees us hang up."""
    sent: list[int] = []

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Connection: close\r\n\r\n[")
        total = 0
        try:
            while total < 400 * MB:
                writer.write(b"1," * (MB // 2))
                await writer.drain()
                total += MB
        finally:
            sent.append(total)

    async with raw_server(endless) as url:
        async with SendGridClient(KEY, url, max_response_bytes=4 * MB) as client:
            with pytest.raises(ResponseTooLarge) as info:
                await asyncio.wait_for(client.lists(), 60)
        assert await eventually(lambda: bool(sent))
    assert sent[0] < 100 * MB  # the cap plus what socket buffers hold, not 400 MB
    assert info.value.status == 200 and "larger than 4 MB" in str(info.value)
    assert isinstance(info.value, UnexpectedAnswer)
    assert_clean(info.value)


async def test_a_huge_declared_length_is_refused_before_reading():
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1600000000\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(30)  # never sends the rest

    async with raw_server(huge) as url, SendGridClient(KEY, url) as client:
        started = time.monotonic()
        with pytest.raises(ResponseTooLarge):
            await asyncio.wait_for(client.contact_count(), 20)
    assert time.monotonic() - started < 10


async def test_caps_count_decoded_bytes_and_differ_per_kind_of_answer():
    """A gzip bomb is measured after decoding; the errors file may be bigger than JSON."""
    bomb = gzip.compress(b" " * (40 * MB))  # ~40 KB on the wire
    rows = b"email,error\n" + b"".join(
        b"someone%d@example.com,invalid email\n" % n for n in range(60_000)
    )  # ~2 MB

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/errors"):
            return httpx.Response(200, stream=httpx.ByteStream(rows))
        return httpx.Response(
            200, stream=httpx.ByteStream(bomb), headers={"content-encoding": "gzip"}
        )

    async with mock_client(
        handler, max_response_bytes=1 * MB, max_errors_file_bytes=4 * MB
    ) as client:
        with pytest.raises(ResponseTooLarge):
            await client.contact_count()
        found = await client.download_errors(f"{GLOBAL_URL}/errors/1.csv")
    assert len(found) == 60_000


# ------------------------------------------------------------------ 2. cancel


@pytest.mark.parametrize(
    ("script", "settings"),
    [(["429"], {}), (["503"], {"backoff_initial": 30.0, "backoff_max": 60.0})],
    ids=["rate-limit-wait", "backoff-wait"],
)
async def test_cancel_ends_a_wait_at_once(emulator: Emulator, script, settings):
    emulator.set_faults(script=script, rate_limit_reset=30)
    told = asyncio.Event()
    async with SendGridClient(
        emulator.api_key, emulator.url, on_retry=lambda notice: told.set(), **settings
    ) as client:
        call = asyncio.create_task(client.contact_count())
        await asyncio.wait_for(told.wait(), 10)
        await asyncio.sleep(0.2)  # the wait is now in progress
        cancelled_at = time.monotonic()
        client.cancel()
        with pytest.raises(RequestCancelled) as info:
            await asyncio.wait_for(call, 10)
        assert time.monotonic() - cancelled_at < 5  # SendGrid asked for 30 s
    assert not isinstance(info.value, SendGridError)  # a cancel is not a failure
    assert info.value.attempts_sent == 1 and info.value.endpoint == COUNT
    assert_clean(info.value)
    assert requests_to(emulator, COUNT, 1) == 1


async def test_cancel_also_releases_requests_held_at_the_rate_gate(emulator: Emulator):
    emulator.set_faults(script=["429"], rate_limit_reset=30)
    told = asyncio.Event()
    async with SendGridClient(
        emulator.api_key, emulator.url, on_retry=lambda notice: told.set()
    ) as client:
        first = asyncio.create_task(client.contact_count())
        await asyncio.wait_for(told.wait(), 10)
        others = [asyncio.create_task(client.lists()) for _ in range(3)]
        await asyncio.sleep(0.3)
        assert emulator.state.stats()["requests_total"] == 1  # the others wait at the gate
        client.cancel()
        results = await asyncio.wait_for(asyncio.gather(first, *others, return_exceptions=True), 10)
    assert all(isinstance(r, RequestCancelled) for r in results)
    assert [r.attempts_sent for r in results] == [1, 0, 0, 0]


async def test_nothing_is_sent_once_cancelled(emulator: Emulator):
    stop = asyncio.Event()
    async with SendGridClient(emulator.api_key, emulator.url, cancel=stop) as client:
        assert await client.contact_count() == 0
        stop.set()
        assert client.cancelled
        for call in (client.lists(), client.upsert_contacts([], [{"email": "a@example.com"}])):
            with pytest.raises(RequestCancelled) as info:
                await call
            assert info.value.attempts_sent == 0
    assert emulator.state.stats()["requests_total"] == 1


async def test_a_request_already_on_the_wire_finishes_after_cancel(emulator: Emulator):
    """Its answer is not thrown away: an upsert's job id is what lets a run confirm it."""
    emulator.set_faults(latency=0.5)
    async with SendGridClient(emulator.api_key, emulator.url) as client:
        call = asyncio.create_task(client.create_list("in flight"))
        assert await eventually(lambda: client._in_flight == 1)
        client.cancel()
        created = await asyncio.wait_for(call, 10)
    assert created.name == "in flight"
    assert [lst["name"] for lst in emulator.state.all_lists()] == ["in flight"]


async def test_cancel_ends_a_wait_for_a_free_connection(emulator: Emulator):
    emulator.set_faults(latency=4.0)
    async with SendGridClient(emulator.api_key, emulator.url, max_connections=1) as client:
        busy = asyncio.create_task(client.create_list("holds the only connection"))
        assert await eventually(lambda: client._in_flight == 1)
        queued = asyncio.create_task(client.contact_count())
        await asyncio.sleep(0.2)
        client.cancel()
        with pytest.raises(RequestCancelled) as info:
            await asyncio.wait_for(queued, 3)  # before the busy request's 4 s are up
        assert not busy.done()
        assert (await asyncio.wait_for(busy, 10)).name == "holds the only connection"
    assert info.value.attempts_sent == 0


# --------------------------------------------------------- 3. malformed answers


def _json(status: int, payload: object, **headers: str) -> Callable[[], httpx.Response]:
    """A fresh answer per request (a response object can be read only once)."""
    return lambda: httpx.Response(
        status, stream=httpx.ByteStream(orjson.dumps(payload)), headers=headers
    )


def _gzip_header_plain_body() -> httpx.Response:
    body = httpx.ByteStream(b'{"contact_count": 1}')
    return httpx.Response(200, stream=body, headers={"content-encoding": "gzip"})


MALFORMED = {
    "put-without-job-id": ("upsert_body", (b"{}",), _json(202, {}), "job_id"),
    "job-results-a-list": (
        "import_status",
        ("j1",),
        _json(200, {"id": "j1", "status": "completed", "results": []}),
        "results",
    ),
    "job-without-status": ("import_status", ("j1",), _json(200, {"id": "j1"}), "status"),
    "job-status-unknown": (
        "import_status",
        ("j1",),
        _json(200, {"id": "j1", "status": "thinking"}),
        "thinking",
    ),
    "job-count-text": (
        "import_status",
        ("j1",),
        _json(200, {"status": "pending", "results": {"requested_count": "many"}}),
        "requested_count",
    ),
    "gzip-header-plain-body": ("contact_count", (), _gzip_header_plain_body, "Content-Encoding"),
    "answer-is-an-array": ("contact_count", (), _json(200, [1, 2]), "JSON object"),
    "count-is-text": ("contact_count", (), _json(200, {"contact_count": "abc"}), "contact_count"),
    "lists-result-an-object": ("lists", (), _json(200, {"result": {"id": "x"}}), "result"),
    "lists-metadata-a-list": (
        "lists",
        (),
        _json(200, {"result": [], "_metadata": []}),
        "_metadata",
    ),
    "list-without-id": ("get_list", ("L",), _json(200, {"name": "x"}), "'id'"),
    "scopes-a-string": ("validate_key", (), _json(200, {"scopes": "marketing.read"}), "scopes"),
    "field-without-id": ("create_field", ("tier", "Text"), _json(200, {}), "'id'"),
    "search-result-a-list": (
        "search_emails",
        (["a@example.com"],),
        _json(200, {"result": []}),
        "result",
    ),
    "search-entry-a-string": (
        "search_emails",
        (["a@example.com"],),
        _json(200, {"result": {"a@example.com": "found"}}),
        "a@example.com",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_answer_is_an_unexpected_answer_naming_what_is_wrong(case: str):
    method, args, answer, named = MALFORMED[case]
    async with mock_client(lambda request: answer()) as client:
        with pytest.raises(SendGridError) as info:
            await getattr(client, method)(*args)
    assert isinstance(info.value, UnexpectedAnswer), repr(info.value)
    assert named in str(info.value)
    assert_clean(info.value)


async def test_a_proxys_html_502_is_named_as_such_not_quoted_as_markup():
    page = (
        b"<html><head><title>502 Bad Gateway</title></head>"
        b"<body><center><h1>502 Bad Gateway</h1></center><hr>nginx</body></html>"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            502, stream=httpx.ByteStream(page), headers={"content-type": "text/html"}
        )

    async with mock_client(handler, max_attempts=2) as client:
        with pytest.raises(SendGridUnavailable) as info:
            await client.contact_count()
    message = str(info.value)
    assert "502" in message and "'502 Bad Gateway'" in message and "proxy" in message
    assert "<html" not in message and "<center>" not in message
    assert_clean(info.value)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ProxyError,
        httpx.LocalProtocolError,
        httpx.RemoteProtocolError,
        httpx.UnsupportedProtocol,
        httpx.DecodingError,
        httpx.ReadError,
        httpx.WriteError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        httpx.TooManyRedirects,
    ],
)
async def test_no_httpx_exception_ever_leaves_the_client(error: type[httpx.HTTPError]):
    """httpx's exceptions hold the request, and the request holds the key."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error(f"boom {request.headers['authorization']}", request=request)

    async with mock_client(handler, max_attempts=2) as client:
        with pytest.raises(SendGridError) as info:
            await client.contact_count()
    assert_clean(info.value)


@pytest.mark.parametrize("reset", ["nan", "inf", "-inf", "-5", "1e999", "NaN"])
def test_unusable_reset_headers_give_no_wait(reset: str):
    assert rate_limit_wait({"x-ratelimit-reset": reset}, now=1_700_000_000.0) is None
    assert rate_limit_wait({"retry-after": reset}, now=1_700_000_000.0) is None
    both = {"x-ratelimit-reset": reset, "retry-after": "3"}
    assert rate_limit_wait(both, now=1_700_000_000.0) == 3.0


@pytest.mark.parametrize("reset", ["nan", "inf", "-5"])
async def test_a_nonsense_reset_falls_back_to_the_default_wait_within_budget(reset: str):
    notices: list[RetryNotice] = []

    headers = {"X-RateLimit-Reset": reset, "X-RateLimit-Remaining": "0"}
    answer = _json(429, {"errors": [{"message": "too many requests"}]}, **headers)

    def handler(request: httpx.Request) -> httpx.Response:
        return answer()

    async with mock_client(handler, max_attempts=3, on_retry=notices.append) as client:
        with pytest.raises(RateLimited) as info:
            await client.contact_count()
    default = RetryPolicy().rate_limit_default
    assert [n.seconds for n in notices if n.attempt] == [default, default]
    assert all(math.isfinite(n.seconds) for n in notices)
    assert "3 attempts" in str(info.value) and "nan" not in str(info.value)


# --------------------------------------------------------------------- 4. proxies


@dataclass
class FakeProxy:
    url: str = ""
    received: list[bytes] = field(default_factory=list)


@pytest.fixture
async def proxy() -> AsyncIterator[FakeProxy]:
    """A loopback "proxy" that records what it is sent and answers 502 to everything."""
    fake = FakeProxy()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fake.received.append(await read_request(reader))
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    async with raw_server(handle) as url:
        fake.url = url
        yield fake


def use_proxy(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, url)
        monkeypatch.setenv(name.lower(), url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


async def test_the_loopback_emulator_is_reached_directly_despite_proxy_settings(
    emulator: Emulator, proxy: FakeProxy, monkeypatch: pytest.MonkeyPatch
):
    use_proxy(monkeypatch, proxy.url)
    async with SendGridClient(emulator.api_key, emulator.url, sleep=no_sleep) as client:
        assert "marketing.read" in await client.validate_key()
        job = await client.upsert_contacts([], [{"email": "direct@example.com"}])
        assert job
    assert proxy.received == []  # not even one request, so never the key in clear
    assert requests_to(emulator, "GET /v3/scopes", 1) == 1


async def test_https_goes_through_a_proxy_only_as_a_tunnel(
    proxy: FakeProxy, monkeypatch: pytest.MonkeyPatch
):
    """The proxy sees CONNECT host:443 and nothing else; its refusal is a NetworkError."""
    use_proxy(monkeypatch, proxy.url)
    async with SendGridClient(KEY, GLOBAL_URL, max_attempts=2, sleep=no_sleep) as client:
        with pytest.raises(NetworkError) as info:
            await client.validate_key()
    assert len(proxy.received) == 2
    for raw in proxy.received:
        assert raw.startswith(b"CONNECT api.sendgrid.com:443 ")
        assert KEY.encode() not in raw and b"authorization" not in raw.lower()
    assert "api.sendgrid.com" in str(info.value)
    assert_clean(info.value)


@pytest.mark.parametrize("url", ["http://example.com", "http://10.0.0.5:8080"])
def test_plain_http_elsewhere_is_refused_even_with_a_proxy(
    url: str, proxy: FakeProxy, monkeypatch: pytest.MonkeyPatch
):
    use_proxy(monkeypatch, proxy.url)
    with pytest.raises(InsecureURL):
        SendGridClient(KEY, url)
    assert proxy.received == []


# ------------------------------------------------------------ 5. one rate gate


async def test_a_429_holds_every_request_on_the_client_until_the_reset(emulator: Emulator):
    emulator.set_faults(script=["429"], rate_limit_reset=2, rate_limit=None)
    notices: list[RetryNotice] = []
    told = asyncio.Event()

    def heard(notice: RetryNotice) -> None:
        notices.append(notice)
        told.set()

    async with SendGridClient(emulator.api_key, emulator.url, on_retry=heard) as client:
        first = asyncio.create_task(client.contact_count())
        await asyncio.wait_for(told.wait(), 10)
        others = [asyncio.create_task(client.contact_count()) for _ in range(5)]
        await asyncio.sleep(1.0)  # well inside the 2 s SendGrid asked for
        assert statuses(emulator, COUNT) == [429]
        assert await asyncio.wait_for(asyncio.gather(first, *others), 20) == [0] * 6
    assert statuses(emulator, COUNT) == [429] + [200] * 6
    assert len(notices) == 1  # one wait, told once


async def test_concurrent_requests_do_not_pile_into_a_used_up_window(emulator: Emulator):
    """39 requests at once against 10 per second: without a shared gate the queued
    ones keep firing into the closed window (57 429s were counted)."""
    emulator.set_faults(rate_limit=10, rate_period=1.0)
    notices: list[RetryNotice] = []
    async with SendGridClient(emulator.api_key, emulator.url, on_retry=notices.append) as client:
        results = await asyncio.wait_for(
            asyncio.gather(*(client.contact_count() for _ in range(39))), 60
        )
    assert results == [0] * 39
    seen = statuses(emulator, COUNT)
    assert seen.count(200) == 39
    assert seen.count(429) <= 3, seen
    assert 1 <= len(notices) <= 10  # a few "waiting" lines, not one per request


async def test_requests_already_on_the_wire_that_all_meet_a_429_tell_one_wait(
    emulator: Emulator,
):
    # An export asks about the key, the list and the fields at once; when
    # SendGrid answers all three with 429, the user waits once and reads so once.
    emulator.set_faults(script=["429", "429", "429"], rate_limit_reset=1, latency=0.3)
    notices: list[RetryNotice] = []
    async with SendGridClient(emulator.api_key, emulator.url, on_retry=notices.append) as client:
        results = await asyncio.wait_for(
            asyncio.gather(*(client.contact_count() for _ in range(3))), 30
        )
    assert results == [0] * 3
    assert statuses(emulator, COUNT).count(429) == 3  # all three were on the wire
    assert len(notices) == 1, notices
