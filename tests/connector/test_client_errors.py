"""Each error type, what its message tells the user, and that no error leaks the key."""

from __future__ import annotations

import socket
import traceback

import httpx
import pytest

from connector.client import EU_URL, GLOBAL_URL, SendGridClient
from connector.emulator import Emulator
from connector.errors import (
    BadApiKey,
    InsecureURL,
    ListNotFound,
    MissingScope,
    NetworkError,
    RateLimited,
    RequestRejected,
    SendGridError,
    SendGridUnavailable,
)
from tests.connector import no_sleep, requests_to

WRONG_KEY = "SG.wrongwrongwrongwrongwr.ongwrongwrongwrongwrongwrongwrongwrongwrong12"


def assert_key_absent(exc: BaseException, *keys: str) -> None:
    """Message, repr, plain traceback, and a traceback with every frame's locals."""
    texts = [
        str(exc),
        repr(exc),
        "".join(traceback.format_exception(exc)),
        "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format()),
    ]
    for key in keys:
        for text in texts:
            assert key not in text
        assert key[10:30] not in texts[3]  # not even a fragment of it


async def failure(coro) -> SendGridError:
    with pytest.raises(SendGridError) as info:
        await coro
    return info.value


async def test_bad_key_quotes_sendgrid_and_says_what_to_do(emulator: Emulator):
    async with SendGridClient(WRONG_KEY, emulator.url, sleep=no_sleep) as client:
        exc = await failure(client.validate_key())
    assert isinstance(exc, BadApiKey) and exc.status == 401
    assert "authorization grant is invalid, expired, or revoked" in str(exc)
    assert "API Keys" in str(exc)
    assert exc.sendgrid_message
    assert_key_absent(exc, WRONG_KEY)
    assert requests_to(emulator, "GET /v3/scopes", 1) == 1  # a 401 is not retried


async def test_missing_scope_is_named_by_validate_key(emulator: Emulator):
    async with SendGridClient(emulator.read_only_key, emulator.url) as client:
        scopes = await client.validate_key()
        assert "marketing.read" in scopes
        exc = await failure(client.validate_key(required=("marketing.read", "marketing.write")))
    assert isinstance(exc, MissingScope)
    assert exc.scopes == ("marketing.write",)
    assert "'marketing.write'" in str(exc) and "Marketing access" in str(exc)
    assert_key_absent(exc, emulator.read_only_key)


async def test_forbidden_write_is_missing_scope_quoting_sendgrid(emulator: Emulator):
    async with SendGridClient(emulator.read_only_key, emulator.url, sleep=no_sleep) as client:
        exc = await failure(client.create_list("x"))
    assert isinstance(exc, MissingScope) and exc.status == 403
    assert "access forbidden" in str(exc)
    assert_key_absent(exc, emulator.read_only_key)
    assert requests_to(emulator, "POST /v3/marketing/lists", 1) == 1


@pytest.mark.parametrize("call", ["get_list", "list_contact_count", "remove_from_list"])
async def test_unknown_list_is_named(emulator: Emulator, call: str):
    async with SendGridClient(emulator.api_key, emulator.url, sleep=no_sleep) as client:
        args = ("no-such-list", ["c1"]) if call == "remove_from_list" else ("no-such-list",)
        exc = await failure(getattr(client, call)(*args))
    assert isinstance(exc, ListNotFound) and exc.list_id == "no-such-list"
    assert "'no-such-list'" in str(exc) and "list ID does not exist" in str(exc)
    assert_key_absent(exc, emulator.api_key)


async def test_bad_request_is_rejected_once_quoting_field_and_message(emulator: Emulator):
    async with SendGridClient(emulator.api_key, emulator.url, sleep=no_sleep) as client:
        exc = await failure(client.create_field("1 bad name", "Text"))
    assert isinstance(exc, RequestRejected) and exc.status == 400
    assert exc.errors and exc.errors[0][1] in str(exc)
    assert "POST /v3/marketing/field_definitions" in str(exc)
    assert requests_to(emulator, "POST /v3/marketing/field_definitions", 1) == 1  # never retried
    assert_key_absent(exc, emulator.api_key)


async def test_upsert_to_unknown_list_is_rejected(emulator: Emulator):
    async with SendGridClient(emulator.api_key, emulator.url, sleep=no_sleep) as client:
        exc = await failure(client.upsert_contacts(["no-such-list"], [{"email": "a@x.io"}]))
    assert isinstance(exc, RequestRejected)
    assert exc.sendgrid_message and exc.sendgrid_message in str(exc)
    assert requests_to(emulator, "PUT /v3/marketing/contacts", 1) == 1


async def test_invalid_search_address_is_named(emulator: Emulator):
    async with SendGridClient(emulator.api_key, emulator.url, sleep=no_sleep) as client:
        exc = await failure(client.search_emails(["ok@example.com", "not an address"]))
    assert isinstance(exc, RequestRejected) and exc.status == 400
    assert "not an address" in str(exc)


@pytest.mark.parametrize(
    ("script", "error", "status"),
    [(["429"] * 3, RateLimited, 429), (["503"] * 3, SendGridUnavailable, 503)],
)
async def test_budget_spent_gives_a_clear_error(emulator: Emulator, script, error, status):
    emulator.set_faults(script=script)
    async with SendGridClient(
        emulator.api_key, emulator.url, max_attempts=3, sleep=no_sleep
    ) as client:
        exc = await failure(client.contact_count())
    assert isinstance(exc, error) and exc.status == status
    assert "3 attempts" in str(exc) and "run again" in str(exc)
    assert exc.sendgrid_message in str(exc)
    assert requests_to(emulator, "GET /v3/marketing/contacts/count", 3) == 3
    assert_key_absent(exc, emulator.api_key)


async def test_unreachable_host_is_a_network_error_naming_it():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = "SG.unreachable-key-unreachable-key-unreachable-key-unreachable-key"
    async with SendGridClient(
        key, f"http://127.0.0.1:{port}", max_attempts=2, sleep=no_sleep
    ) as client:
        exc = await failure(client.lists())
    assert isinstance(exc, NetworkError) and exc.host == "127.0.0.1"
    assert "127.0.0.1" in str(exc) and "2 attempts" in str(exc)
    assert_key_absent(exc, key)


@pytest.mark.parametrize(
    "url",
    ["http://example.com", "http://10.0.0.5:8080", "ftp://127.0.0.1", "http://127.0.0.1.evil.io"],
)
def test_plain_http_to_another_machine_is_refused(url: str):
    with pytest.raises(InsecureURL) as info:
        SendGridClient("SG.key", url)
    assert "https://" in str(info.value) and "SG.key" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        GLOBAL_URL,
        EU_URL,
        "http://127.0.0.1:8025",
        "http://127.9.9.9",
        "http://localhost:1",
        "http://[::1]:9",
    ],
)
async def test_https_and_loopback_are_accepted(url: str):
    async with SendGridClient("SG.key", url) as client:
        assert client.base_url.startswith(url.split(":")[0])


@pytest.mark.parametrize(
    "key",
    ["", "   ", "SG.abcdefghij klmnopqrstuvwxyz0123", "SG.abcdefghijklmnopqrstuvwxyz\r\nX-Evil: 1"],
)
def test_malformed_key_is_refused_without_echoing_it(key: str):
    with pytest.raises(BadApiKey) as info:
        SendGridClient(key, GLOBAL_URL)
    if key.strip():
        exc = info.value
        # from the client's frames on: this test's own frame holds the key, of course
        exc.with_traceback(exc.__traceback__.tb_next)
        assert_key_absent(exc, key.strip())


async def test_key_never_in_repr_of_client():
    key = "SG.reprreprreprreprreprre.prreprreprreprreprreprreprreprreprreprreprrep"
    client = SendGridClient(key, GLOBAL_URL)
    try:
        assert key not in repr(client) and key not in repr(vars(client))
    finally:
        await client.aclose()


async def test_secret_objects_are_revealed_only_for_the_header(emulator: Emulator):
    class Secret:
        def __init__(self, value: str) -> None:
            self._value = value

        def reveal(self) -> str:
            return self._value

        def __repr__(self) -> str:
            return "Secret(SG.…)"

    async with SendGridClient(Secret(emulator.api_key), emulator.url) as client:
        assert "marketing.read" in await client.validate_key()


# -- behaviour the emulator cannot produce: httpx.MockTransport -----------------


def mock_client(handler, **kwargs) -> SendGridClient:
    return SendGridClient(
        "SG.mock-key-mock-key-mock-key",
        GLOBAL_URL,
        transport=httpx.MockTransport(handler),
        sleep=no_sleep,
        **kwargs,
    )


async def test_timeouts_are_retried_then_reported_as_network_errors():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    async with mock_client(handler, max_attempts=3) as client:
        exc = await failure(client.contact_count())
    assert isinstance(exc, NetworkError) and "timed out" in str(exc)
    assert exc.host == "api.sendgrid.com"
    assert len(calls) == 3
    assert exc.__context__ is None and exc.__cause__ is None  # nothing points at httpx's request
    assert_key_absent(exc, "SG.mock-key-mock-key-mock-key")


async def test_key_echoed_by_a_server_is_scrubbed_from_the_quote():
    def handler(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["authorization"]
        return httpx.Response(400, json={"errors": [{"field": "auth", "message": echoed}]})

    async with mock_client(handler) as client:
        exc = await failure(client.contact_count())
    assert isinstance(exc, RequestRejected)
    assert_key_absent(exc, "SG.mock-key-mock-key-mock-key")


async def test_non_json_error_body_is_quoted_as_text():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(413, text="Request Entity Too Large")

    async with mock_client(handler) as client:
        exc = await failure(client.upsert_body(b"{}"))
    assert isinstance(exc, RequestRejected) and exc.status == 413
    assert "Request Entity Too Large" in str(exc)


async def test_redirects_are_not_followed_with_the_key():
    hosts = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(302, headers={"location": "https://elsewhere.example/v3/scopes"})

    async with mock_client(handler) as client:
        exc = await failure(client.validate_key())
    assert isinstance(exc, RequestRejected) and "elsewhere.example" in str(exc)
    assert hosts == ["api.sendgrid.com"]


async def test_key_goes_only_to_sendgrid_hosts():
    """Paging uses only the token of `next`; an errors file on foreign storage gets no key."""
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        if request.url.host == "storage.example":
            return httpx.Response(200, text="email,error\na@x.io,invalid email\n")
        if request.url.params.get("page_token"):
            return httpx.Response(200, json={"result": [{"id": "2", "name": "b"}], "_metadata": {}})
        return httpx.Response(
            200,
            json={
                "result": [{"id": "1", "name": "a"}],
                "_metadata": {"next": "https://evil.example/v3/marketing/lists?page_token=T2"},
            },
        )

    async with mock_client(handler) as client:
        assert [x.id for x in await client.lists()] == ["1", "2"]
        rows = await client.download_errors("https://storage.example/errors/1.csv")
        assert rows == [("a@x.io", "invalid email")]
        with pytest.raises(InsecureURL):
            await client.download_errors("http://storage.example/errors/1.csv")
    assert {host for host, _ in seen} == {"api.sendgrid.com", "storage.example"}
    assert all(auth is None for host, auth in seen if host == "storage.example")
    assert all(auth for host, auth in seen if host == "api.sendgrid.com")
