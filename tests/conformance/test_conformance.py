"""The emulator's answers and the client's requests match SendGrid's OpenAPI documents.

If the emulator drifted from SendGrid's shapes, client tests against it would
prove nothing; if the client drifted, SendGrid would refuse its requests.
Both sides are checked against the official documents, read at test time from
../shared/sendgrid-openapi/ (skipped with a reason when absent). Where the
real API departs from the documents, `openapi.ALLOWED_DEVIATIONS` says where
and why; the tests below also prove that the checks catch drift.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from connector.emulator import Emulator
from connector.emulator.server import ROUTES, Exchange
from tests.conformance.openapi import (
    ALLOWED_DEVIATIONS,
    OpenApi,
    assert_exchanges_conform,
    openapi_dir,
)

pytestmark = pytest.mark.slow  # every endpoint against the OpenAPI description

CONTACTS = "/v3/marketing/contacts"
LISTS = "/v3/marketing/lists"
FIELDS = "/v3/marketing/field_definitions"
MISSING_ID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def api() -> OpenApi:
    folder = openapi_dir()
    if folder is None:
        pytest.skip(
            "SendGrid OpenAPI documents not found: put twilio/sendgrid-oai's tsg_*_v3.json "
            "in ../shared/sendgrid-openapi/ or point SEGSYNC_OPENAPI_DIR at them"
        )
    return OpenApi.load(folder)


def test_every_emulated_route_is_a_documented_operation(api: OpenApi) -> None:
    for route in ROUTES:
        api.operation(route.method, route.template)  # KeyError names the stray route


def test_every_deviation_is_explained_and_points_at_a_real_operation(api: OpenApi) -> None:
    for deviation in ALLOWED_DEVIATIONS:
        assert len(deviation.reason) > 20
        if deviation.template != "*":
            api.operation(deviation.method, deviation.template)


def drive_every_endpoint(emu: Emulator) -> set[int]:
    """Call every emulated endpoint, in success and error cases.

    Returns the indexes (in `emu.exchanges`) of requests that are wrong on
    purpose: their responses are checked, their requests are expected to fail.
    """
    deliberate: set[int] = set()
    http = httpx.Client(
        base_url=emu.url, headers={"Authorization": f"Bearer {emu.api_key}"}, timeout=10
    )
    read_only = httpx.Client(
        base_url=emu.url, headers={"Authorization": f"Bearer {emu.read_only_key}"}, timeout=10
    )

    def wrong(response: httpx.Response) -> httpx.Response:
        deliberate.add(len(emu.exchanges) - 1)
        return response

    with http, read_only:
        assert http.get("/v3/scopes").status_code == 200
        assert httpx.get(f"{emu.url}/v3/scopes").status_code == 401
        list_id = http.post(LISTS, json={"name": "conformance"}).json()["id"]
        assert wrong(http.post(LISTS, json={"name": ""})).status_code == 400
        assert read_only.post(LISTS, json={"name": "nope"}).status_code == 403
        for n in range(3):
            http.post(LISTS, json={"name": f"extra {n}"})
        page = http.get(LISTS, params={"page_size": 2}).json()
        token = page["_metadata"]["next"].split("page_token=")[1]
        assert http.get(LISTS, params={"page_size": 2, "page_token": token}).status_code == 200
        assert wrong(http.get(LISTS, params={"page_size": 0})).status_code == 400
        assert http.get(f"{LISTS}/{MISSING_ID}").status_code == 404
        assert http.get(f"{LISTS}/{MISSING_ID}/contacts/count").status_code == 404

        fields = {
            name: http.post(FIELDS, json={"name": name, "field_type": kind}).json()["id"]
            for name, kind in (("tier", "Text"), ("orders", "Number"), ("born", "Date"))
        }
        assert http.post(FIELDS, json={"name": "TIER", "field_type": "Text"}).status_code == 400
        assert http.get(FIELDS).status_code == 200

        contacts = [
            {
                "email": "ann@example.com",
                "first_name": "Ann",
                "city": "Oslo",
                "custom_fields": {fields["tier"]: "gold", fields["orders"]: 3},
            },
            {"email": "bob@example.com", "custom_fields": {fields["born"]: "1990-01-31"}},
            {"email": "not-an-email"},
        ]
        emu.faults.job_delay = 0.2
        put = http.put(CONTACTS, json={"list_ids": [list_id], "contacts": contacts})
        job_id = put.json()["job_id"]
        assert http.get(f"{CONTACTS}/imports/{job_id}").json()["status"] == "pending"
        time.sleep(0.25)
        assert http.get(f"{CONTACTS}/imports/{job_id}").json()["status"] == "errored"
        emu.faults.job_delay = 0.0
        done = http.put(CONTACTS, json={"contacts": [{"email": "cy@example.com"}]}).json()
        emu.state.drain()
        assert http.get(f"{CONTACTS}/imports/{done['job_id']}").json()["status"] == "completed"
        assert http.get(f"{CONTACTS}/imports/{MISSING_ID}").status_code == 404
        assert wrong(http.put(CONTACTS, json={"contacts": []})).status_code == 400
        unknown_field = {"contacts": [{"email": "a@example.com", "custom_fields": {"tier": "x"}}]}
        assert http.put(CONTACTS, json=unknown_field).status_code == 400
        missing_list = {"list_ids": [MISSING_ID], "contacts": [{"email": "a@example.com"}]}
        assert http.put(CONTACTS, json=missing_list).status_code == 404
        assert (
            read_only.put(CONTACTS, json={"contacts": [{"email": "a@example.com"}]}).status_code
            == 403
        )
        big = (
            b'{"contacts":['
            + b",".join([b'{"email":"a@example.com","postal_code":"' + b"9" * 300 + b'"}'] * 19_000)
            + b"]}"
        )
        # Over 6 MB: the limit is prose in the document, not schema, so the request
        # itself validates; only its 413 answer is checked.
        assert http.put(CONTACTS, content=big).status_code == 413

        assert http.get(f"{LISTS}/{list_id}", params={"contact_sample": "true"}).status_code == 200
        assert http.get(f"{LISTS}/{list_id}/contacts/count").status_code == 200
        assert http.get(f"{CONTACTS}/count").status_code == 200
        search = f"{CONTACTS}/search/emails"
        assert (
            http.post(search, json={"emails": ["ann@example.com", "zed@example.com"]}).status_code
            == 200
        )
        assert http.post(search, json={"emails": ["zed@example.com"]}).status_code == 404
        assert http.post(search, json={"emails": ["not-an-email"]}).status_code == 400

        ann = emu.state.contact("ann@example.com")["id"]
        # Removal ("delete") jobs answer on the import-status endpoint in its documented
        # shape, pending and finished, and when they fail.
        emu.faults.job_delay = 0.2
        removal = http.delete(f"{LISTS}/{list_id}/contacts", params={"contact_ids": ann})
        assert removal.status_code == 202
        removal_job = http.get(f"{CONTACTS}/imports/{removal.json()['job_id']}").json()
        assert (removal_job["job_type"], removal_job["status"]) == ("delete", "pending")
        emu.faults.job_delay = 0.0
        emu.state.drain()
        time.sleep(0.25)
        finished = http.get(f"{CONTACTS}/imports/{removal.json()['job_id']}").json()
        assert finished["status"] == "completed"
        bob = emu.state.contact("bob@example.com")["id"]
        emu.set_faults(removal_job="failed")
        failing = http.delete(f"{LISTS}/{list_id}/contacts", params={"contact_ids": bob}).json()
        emu.state.drain()
        assert http.get(f"{CONTACTS}/imports/{failing['job_id']}").json()["status"] == "failed"
        emu.set_faults(removal_job="ok")
        assert (
            http.delete(f"{LISTS}/{list_id}/contacts", params={"contact_ids": MISSING_ID})
        ).status_code == 404
        assert (
            http.delete(f"{LISTS}/{MISSING_ID}/contacts", params={"contact_ids": ann}).status_code
            == 404
        )

        emu.set_faults(script=["429", "500", "503"], rate_limit_reset=0)
        assert [http.get(f"{CONTACTS}/count").status_code for _ in range(3)] == [429, 500, 503]
    return deliberate


def test_emulator_responses_conform_on_every_endpoint(emulator: Emulator, api: OpenApi) -> None:
    deliberate = drive_every_endpoint(emulator)
    exchanges = list(emulator.exchanges)
    problems = []
    for n, ex in enumerate(exchanges):
        problems += api.check_response(ex.method, ex.endpoint, ex.status, ex.response_json)
        request_problems = api.check_request(ex.method, ex.endpoint, ex.query, ex.request_json)
        if n in deliberate:
            # The documents themselves forbid these requests: proof the request check bites.
            assert request_problems, f"{ex.method} {ex.endpoint} {ex.request_json!r:.80} passed"
        else:
            problems += request_problems
    assert not problems, "\n".join(map(str, problems))
    covered = {(ex.method, ex.endpoint, ex.status) for ex in exchanges}
    for route in ROUTES:
        statuses = {s for m, t, s in covered if (m, t) == (route.method, route.template)}
        assert any(200 <= s < 300 for s in statuses), f"no success for {route.template}"
    error_statuses = {s for _, _, s in covered if s >= 400}
    assert error_statuses >= {400, 401, 403, 404, 413, 429, 500, 503}


# ------------------------------------------------------------ drift is caught


def test_a_drifted_response_shape_fails(api: OpenApi) -> None:
    good = {
        "result": [{"id": MISSING_ID, "name": "a", "contact_count": 3, "_metadata": {"self": "x"}}],
        "_metadata": {"self": "https://api.sendgrid.com/v3/marketing/lists", "count": 1},
    }
    assert api.check_response("GET", LISTS, 200, good) == []
    drifted = {**good, "result": [{**good["result"][0], "contact_count": "3"}]}
    assert [p.path for p in api.check_response("GET", LISTS, 200, drifted)] == [
        "result/0/contact_count"
    ]
    job = {"id": "j", "status": "completed", "results": [1, 2]}
    assert api.check_response("GET", f"{CONTACTS}/imports/{{id}}", 200, job)
    assert api.check_response("GET", "/v3/scopes", 200, {"scopes": "marketing.read"})


def test_a_drifted_request_body_fails(api: OpenApi) -> None:
    assert api.check_request("PUT", CONTACTS, {}, {"contacts": [{"email": "a@b.co"}]}) == []
    assert api.check_request("PUT", CONTACTS, {}, {"contacts": {"email": "a@b.co"}})
    too_long = {"contacts": [{"email": "a@b.co", "first_name": "x" * 51}]}
    assert api.check_request("PUT", CONTACTS, {}, too_long)
    assert api.check_request("POST", LISTS, {}, {"title": "no name"})
    assert api.check_request("POST", f"{CONTACTS}/search/emails", {}, {"emails": "a@b.co"})
    assert api.check_request("GET", LISTS, {"page_size": ["5000"]}, None)
    assert api.check_request("GET", LISTS, {"pagesize": ["10"]}, None)  # unknown parameter
    assert api.check_request("DELETE", f"{LISTS}/{{id}}/contacts", {}, None)  # ids required


def test_deviations_are_allowed_only_where_listed(api: OpenApi) -> None:
    null_field = {"errors": [{"field": None, "message": "contacts must not be empty"}]}
    assert api.check_response("PUT", CONTACTS, 400, null_field) == []
    number_field = {"errors": [{"field": 5, "message": "x"}]}
    assert api.check_response("PUT", CONTACTS, 400, number_field)
    # contact_sample may be an array, but each element must still be a contact.
    sample = {"id": MISSING_ID, "name": "a", "contact_count": 1, "contact_sample": [{"id": "x"}]}
    problems = api.check_response("GET", f"{LISTS}/{{id}}", 200, sample)
    found = {(p.path, p.keyword) for p in problems}
    assert found >= {("contact_sample/0/id", "minLength"), ("contact_sample/0", "required")}
    assert api.check_response("GET", f"{LISTS}/{{id}}", 200, {**sample, "contact_sample": "x"})
    assert api.check_response("GET", "/v3/scopes", 418, {"errors": []})  # undocumented status


def test_assert_exchanges_conform_reports_drift(api: OpenApi) -> None:
    bad = Exchange("POST", LISTS, LISTS, {}, {"name": "ok"}, 201, {"id": 7, "name": "ok"})
    with pytest.raises(AssertionError, match="201 at 'id'"):
        assert_exchanges_conform([bad], api)


# ------------------------------------------------------------------ the client


async def test_every_client_call_conforms(emulator: Emulator, api: OpenApi) -> None:
    """Each SendGridClient call, against the emulator: every request and answer conforms."""
    from connector.client import SendGridClient

    async def no_sleep(seconds: float) -> None:
        return None

    async with SendGridClient(emulator.api_key, emulator.url, sleep=no_sleep) as client:
        await client.validate_key()
        created = [await client.create_list(f"list {n}") for n in range(3)]
        assert len(await client.lists(page_size=2)) == 3
        await client.get_list(created[0].id)
        field = await client.create_field("tier", "Text")
        custom, reserved = await client.field_definitions()
        assert custom and reserved
        contacts = [
            {"email": f"p{n}@example.com", "first_name": "Zoë", "custom_fields": {field.id: "gold"}}
            for n in range(5)
        ] + [{"email": "broken@@example.com"}]
        job_id = await client.upsert_contacts([created[0].id], contacts)
        for _ in range(200):
            job = await client.import_status(job_id)
            if job.status != "pending":
                break
            await asyncio.sleep(0.01)
        assert job.status == "errored" and job.errors_url
        assert await client.download_errors(job.errors_url)
        ids = await client.search_emails(
            [c["email"] for c in contacts[:5]] + ["nobody@example.com"]
        )
        assert await client.search_emails(["nobody@example.com"]) == {}
        assert await client.list_contact_count(created[0].id) == 5
        await client.remove_from_list(created[0].id, [ids["p0@example.com"]])
        removals = await client.remove_members(
            created[0].id, [ids["p1@example.com"], MISSING_ID, ids["p2@example.com"]]
        )
        assert [r.already_gone for r in removals if r.already_gone] == [(MISSING_ID,)]
        for removal in removals:
            if removal.job_id:
                await client.import_status(removal.job_id)
        emulator.state.drain()
        found = await client.memberships([c["email"] for c in contacts[:5]])
        assert created[0].id not in found["p1@example.com"].list_ids
        assert await client.contact_count() == 5
        emulator.set_faults(script=["429", "503"], rate_limit_reset=0)
        assert await client.contact_count() == 5  # retried through a 429 and a 503
    templates = {(ex.method, ex.endpoint) for ex in emulator.exchanges}
    assert templates == {(r.method, r.template) for r in ROUTES}, "a client call is not covered"
    assert assert_exchanges_conform(emulator.exchanges, api) >= len(ROUTES)
