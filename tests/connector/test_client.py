"""Every client call against the emulator over real loopback sockets."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from connector.client import SendGridClient, parse_errors_file
from connector.emulator import Emulator
from connector.models import ImportJob
from tests.connector import no_sleep, requests_to


@pytest.fixture
async def client(emulator: Emulator):
    async with SendGridClient(emulator.api_key, emulator.url, sleep=no_sleep) as c:
        yield c


async def wait_job(client: SendGridClient, job_id: str) -> ImportJob:
    for _ in range(200):
        job = await client.import_status(job_id)
        if job.finished:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} still pending")


async def test_validate_key_returns_scopes(client: SendGridClient):
    scopes = await client.validate_key()
    assert "marketing.read" in scopes


async def test_lists_follows_every_page(client: SendGridClient, emulator: Emulator):
    created = [await client.create_list(f"list {i}") for i in range(7)]
    found = await client.lists(page_size=3)
    assert [x.id for x in found] == [x.id for x in created]
    # three pages were read, each a separate request
    assert requests_to(emulator, "GET /v3/marketing/lists", 3) == 3


async def test_create_and_get_list(client: SendGridClient):
    created = await client.create_list("Newsletter")
    assert created.name == "Newsletter" and created.contact_count == 0
    fetched = await client.get_list(created.id)
    assert (fetched.id, fetched.name) == (created.id, "Newsletter")


async def test_fields_create_and_read_back(client: SendGridClient):
    custom, reserved = await client.field_definitions()
    assert custom == []
    assert "first_name" in {f.name for f in reserved}
    field = await client.create_field("tier", "Text")
    assert (field.name, field.field_type) == ("tier", "Text") and field.id
    custom, _ = await client.field_definitions()
    assert [(f.id, f.name) for f in custom] == [(field.id, "tier")]


class Recording(httpx.AsyncHTTPTransport):
    """A real socket transport that also keeps what was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await super().handle_async_request(request)


async def test_upsert_body_is_sent_byte_for_byte(emulator: Emulator):
    recording = Recording()
    async with SendGridClient(emulator.api_key, emulator.url, transport=recording) as client:
        lst = await client.create_list("l")
        field = await client.create_field("tier", "Text")
        contacts = [
            {"email": f"p{i}@example.com", "first_name": "Zoë", "custom_fields": {field.id: "gold"}}
            for i in range(5)
        ]
        # unusual but valid spacing: re-serialising would change these bytes
        body = b'{"list_ids": ["%s"], "contacts": %s}' % (lst.id.encode(), orjson.dumps(contacts))
        job = await wait_job(client, await client.upsert_body(body))
        assert (job.status, job.requested, job.created, job.errored) == ("completed", 5, 5, 0)
        assert await client.list_contact_count(lst.id) == 5
        assert await client.contact_count() == 5
        # one pooled keep-alive connection served every call
        assert len(recording._pool.connections) == 1
    put = next(r for r in recording.sent if r.method == "PUT")
    assert put.content == body
    assert put.headers["content-type"] == "application/json"
    assert put.headers["authorization"] == f"Bearer {emulator.api_key}"
    assert emulator.state.contact("p0@example.com")["first_name"] == "Zoë"


async def test_errored_job_reports_rows_with_reasons(client: SendGridClient):
    lst = await client.create_list("l")
    contacts = [{"email": "good@example.com"}, {"email": "not-an-email"}]
    job = await wait_job(client, await client.upsert_contacts([lst.id], contacts))
    assert job.status == "errored" and job.errored == 1 and job.errors_url
    rows = await client.download_errors(job.errors_url)
    assert len(rows) == 1 and rows[0][0] == "not-an-email" and rows[0][1]


async def test_search_splits_large_input_and_treats_none_found_as_empty(
    client: SendGridClient, emulator: Emulator
):
    lst = await client.create_list("l")
    known = [f"k{i}@example.com" for i in range(130)]
    await wait_job(client, await client.upsert_contacts([lst.id], [{"email": e} for e in known]))
    asked = [e.upper() for e in known] + [f"x{i}@example.com" for i in range(90)]
    found = await client.search_emails(asked)
    assert set(found) == set(known)  # keyed by lower-cased email
    assert len(set(found.values())) == 130
    # 220 addresses -> 3 calls of at most 100
    assert requests_to(emulator, "POST /v3/marketing/contacts/search/emails", 3) == 3
    assert await client.search_emails(["nobody@example.com"]) == {}
    assert await client.search_emails([]) == {}


async def test_remove_from_list_takes_membership_only(client: SendGridClient, emulator: Emulator):
    lst = await client.create_list("l")
    emails = [f"r{i}@example.com" for i in range(150)]
    await wait_job(client, await client.upsert_contacts([lst.id], [{"email": e} for e in emails]))
    ids = await client.search_emails(emails[:120])
    jobs = await client.remove_from_list(lst.id, list(ids.values()))
    assert len(jobs) == 2  # 120 ids -> 100 + 20
    for job_id in jobs:
        await wait_job(client, job_id)
    assert emulator.state.list_members(lst.id) == set(emails[120:])
    assert await client.contact_count() == 150  # contacts are never deleted
    assert await client.remove_from_list(lst.id, []) == []


@pytest.mark.parametrize(
    ("content", "rows"),
    [
        (
            b"email,error\na@x.io,invalid email\nb@x.io,\n",
            [("a@x.io", "invalid email"), ("b@x.io", "rejected by SendGrid (no reason given)")],
        ),
        (
            b"\xef\xbb\xbfRow,Identifier,Error Message\n1,a@x.io,too long\n",
            [("a@x.io", "too long")],
        ),
        (b"a@x.io,invalid email\n", [("a@x.io", "invalid email")]),
        (b'[{"email": "a@x.io", "error": "bad"}]', [("a@x.io", "bad")]),
        (b'{"errors": [{"identifier": "a@x.io", "reason": "bad"}]}', [("a@x.io", "bad")]),
        (b"", []),
        (b"line,message\n", []),
    ],
)
def test_errors_file_is_parsed_defensively(content: bytes, rows: list[tuple[str, str]]):
    assert parse_errors_file(content) == rows
