"""Taking people off a list, and proving they are off it.

SendGrid answers a removal with 202 and a job id, answers 404 when any one id
in the call does not exist, and has been seen to accept a removal that changed
nothing. These tests hold the client to what the engine needs: every id that
exists is removed even when others are gone, the gone ones are named, and
membership can be read back to confirm it.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from connector.client import GLOBAL_URL, SendGridClient
from connector.emulator import Emulator
from connector.errors import ListNotFound, UnexpectedAnswer
from connector.models import ImportJob, Membership, Removal
from connector.retry import RetryNotice
from tests.connector import no_sleep, requests_to

REMOVE = "DELETE /v3/marketing/lists/{id}/contacts"
SEARCH = "POST /v3/marketing/contacts/search/emails"
GONE = [f"00000000-0000-4000-a000-00000000000{n}" for n in range(3)]


@pytest.fixture
async def client(emulator: Emulator):
    async with SendGridClient(emulator.api_key, emulator.url, sleep=no_sleep) as c:
        yield c


async def members(
    client: SendGridClient, emulator: Emulator, count: int, *lists: str
) -> dict[str, str]:
    """``count`` contacts on ``lists``; returns email -> contact id."""
    emails = [f"p{n}@example.com" for n in range(count)]
    await client.upsert_contacts(list(lists), [{"email": e} for e in emails])
    emulator.state.drain()
    return await client.search_emails(emails)


async def settle(client: SendGridClient, job_id: str, polls: int = 200) -> ImportJob:
    for _ in range(polls):
        job = await client.import_status(job_id)
        if job.finished:
            return job
        await asyncio.sleep(0.01)
    return job


async def test_removal_takes_ids_off_in_chunks_of_100_and_keeps_the_contacts(
    client: SendGridClient, emulator: Emulator
):
    target = await client.create_list("target")
    other = await client.create_list("other")
    ids = await members(client, emulator, 250, target.id, other.id)
    removals = await client.remove_members(target.id, list(ids.values()))
    assert [len(r.ids) for r in removals] == [100, 100, 50]
    assert all(r.job_id and not r.already_gone for r in removals)
    assert {i for r in removals for i in r.ids} == set(ids.values())
    for removal in removals:
        job = await settle(client, removal.job_id)
        assert (job.status, job.job_type, job.deleted) == ("completed", "delete", len(removal.ids))
    assert emulator.state.list_members(target.id) == set()
    assert len(emulator.state.list_members(other.id)) == 250  # only this list's membership
    assert await client.contact_count() == 250
    assert requests_to(emulator, REMOVE, 3) == 3


async def test_ids_already_gone_do_not_stop_the_others_from_being_removed(
    client: SendGridClient, emulator: Emulator
):
    """One unknown id makes SendGrid refuse the whole call with 404."""
    target = await client.create_list("target")
    ids = await members(client, emulator, 40, target.id)
    mixed = list(ids.values())
    for n, gone in enumerate(GONE):
        mixed.insert(n * 15, gone)
    removals = await client.remove_members(target.id, mixed)
    assert [r.already_gone for r in removals if r.already_gone] == [tuple(GONE)]
    accepted = [r for r in removals if r.job_id]
    assert sorted(i for r in accepted for i in r.ids) == sorted(ids.values())
    for removal in accepted:
        assert (await settle(client, removal.job_id)).status == "completed"
    assert emulator.state.list_members(target.id) == set()
    # Halving around the gone ids: fewer calls than one per id (43).
    assert requests_to(emulator, REMOVE, 1) < 43


async def test_every_id_gone_reports_them_all_and_removes_nothing(
    client: SendGridClient, emulator: Emulator
):
    target = await client.create_list("target")
    await members(client, emulator, 2, target.id)
    assert await client.remove_members(target.id, GONE) == [Removal(tuple(GONE), None, tuple(GONE))]
    assert len(emulator.state.list_members(target.id)) == 2


async def test_a_missing_list_is_list_not_found_not_gone_ids(
    client: SendGridClient, emulator: Emulator
):
    target = await client.create_list("target")
    ids = await members(client, emulator, 3, target.id)
    with pytest.raises(ListNotFound) as info:
        await client.remove_members("no-such-list", list(ids.values()))
    assert info.value.list_id == "no-such-list"


async def test_nothing_to_remove_sends_nothing(client: SendGridClient, emulator: Emulator):
    assert await client.remove_members("any", []) == []
    assert emulator.state.stats()["requests_total"] == 0


async def test_the_old_call_still_returns_job_ids(client: SendGridClient, emulator: Emulator):
    target = await client.create_list("target")
    ids = await members(client, emulator, 120, target.id)
    job_ids = await client.remove_from_list(target.id, list(ids.values()))
    assert len(job_ids) == 2 and all(job_ids)


@pytest.mark.parametrize("script", [["503"], ["429"], ["500", "drop"]])
async def test_removal_deletes_that_fail_for_a_moment_are_retried(
    emulator: Emulator, script: list[str]
):
    notices: list[RetryNotice] = []
    async with SendGridClient(
        emulator.api_key, emulator.url, sleep=no_sleep, on_retry=notices.append
    ) as client:
        target = await client.create_list("target")
        ids = await members(client, emulator, 5, target.id)
        emulator.set_faults(removal_script=script, rate_limit_reset=0)
        removals = await client.remove_members(target.id, list(ids.values()))
        assert len(removals) == 1 and removals[0].job_id
        await settle(client, removals[0].job_id)
    assert len(notices) == len(script)
    assert emulator.state.list_members(target.id) == set()


# ---------------------------------------------------------------- memberships


async def test_memberships_read_back_each_contacts_lists(
    client: SendGridClient, emulator: Emulator
):
    first = await client.create_list("first")
    second = await client.create_list("second")
    ids = await members(client, emulator, 150, first.id, second.id)
    emails = [f"P{n}@Example.com" for n in range(150)] + ["nobody@example.com"]
    found = await client.memberships(emails)
    assert set(found) == set(ids)  # lower-cased; unknown addresses are absent
    assert found["p7@example.com"] == Membership(ids["p7@example.com"], {first.id, second.id})
    assert requests_to(emulator, SEARCH, 2) >= 2  # 100 per search


async def test_a_removal_accepted_but_not_done_shows_in_memberships(
    client: SendGridClient, emulator: Emulator
):
    """The case SendGrid users reported: 202, a job id, and nobody removed."""
    target = await client.create_list("target")
    ids = await members(client, emulator, 3, target.id)
    emulator.set_faults(removal_job="ignored")
    removals = await client.remove_members(target.id, list(ids.values()))
    job = await settle(client, removals[0].job_id)
    assert job.status == "completed"  # the job says all is well...
    still = await client.memberships(ids)
    assert all(target.id in m.list_ids for m in still.values())  # ...membership says not


@pytest.mark.parametrize(("outcome", "status"), [("failed", "failed"), ("pending", "pending")])
async def test_removal_jobs_that_fail_or_never_finish_are_seen_as_such(
    client: SendGridClient, emulator: Emulator, outcome: str, status: str
):
    target = await client.create_list("target")
    ids = await members(client, emulator, 3, target.id)
    emulator.set_faults(removal_job=outcome)
    removals = await client.remove_members(target.id, list(ids.values()))
    job = await settle(client, removals[0].job_id, polls=20)
    assert (job.status, job.job_type) == (status, "delete")
    assert len(emulator.state.list_members(target.id)) == 3
    found = await client.memberships(ids)
    assert all(target.id in m.list_ids for m in found.values())


async def test_a_contact_shown_without_list_ids_is_not_read_as_on_no_list():
    """Reading a missing list_ids as "on no list" would confirm removals that never happened."""

    def handler(request: httpx.Request) -> httpx.Response:
        contact = {"id": "c1", "email": "a@example.com"}
        body = orjson.dumps({"result": {"a@example.com": {"contact": contact}}})
        return httpx.Response(200, stream=httpx.ByteStream(body))

    transport = httpx.MockTransport(handler)
    async with SendGridClient("SG.k", GLOBAL_URL, transport=transport) as client:
        with pytest.raises(UnexpectedAnswer) as info:
            await client.memberships(["a@example.com"])
    assert "list_ids" in str(info.value)
