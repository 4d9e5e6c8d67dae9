"""The emulator behaves like SendGrid where segsync depends on it.

Every test talks HTTP over loopback, as the client does, and checks the
account through the state's inspection API: a client that passes against
this emulator must meet the same answers from SendGrid.
"""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.emulator import Emulator, EmulatorState, Faults, demo_api_key, seed_demo
from connector.emulator.server import BAD_KEY_MESSAGE

pytestmark = pytest.mark.slow  # the emulator over HTTP, job delays

CONTACTS = "/v3/marketing/contacts"


def client(emu: Emulator, key: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=emu.url, headers={"Authorization": f"Bearer {key or emu.api_key}"}, timeout=10
    )


def wait_job(http: httpx.Client, job_id: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = http.get(f"{CONTACTS}/imports/{job_id}").json()
        if body["status"] != "pending" or time.monotonic() > deadline:
            return body
        time.sleep(0.01)


def upsert(http: httpx.Client, contacts: list[dict], list_ids: list[str]) -> dict:
    response = http.put(CONTACTS, json={"list_ids": list_ids, "contacts": contacts})
    assert response.status_code == 202, response.text
    return wait_job(http, response.json()["job_id"])


def only_error(response: httpx.Response) -> dict:
    body = response.json()
    assert len(body["errors"]) == 1
    return body["errors"][0]


@pytest.fixture
def http(emulator: Emulator) -> httpx.Client:
    with client(emulator) as c:
        yield c


@pytest.fixture
def list_id(emulator: Emulator) -> str:
    return emulator.state.create_list("newsletter")["id"]


# ------------------------------------------------------------------ auth


def test_keys_look_like_sendgrid_keys(emulator: Emulator) -> None:
    for key in (emulator.api_key, emulator.read_only_key, demo_api_key()):
        assert key.startswith("SG.") and len(key) == 69 and key[25] == "."
    assert emulator.api_key != emulator.read_only_key
    assert demo_api_key() == demo_api_key()


def test_scopes_of_full_and_read_only_keys(emulator: Emulator, http: httpx.Client) -> None:
    assert "marketing.read" in http.get("/v3/scopes").json()["scopes"]
    with client(emulator, emulator.read_only_key) as ro:
        scopes = ro.get("/v3/scopes").json()["scopes"]
        assert "marketing.read" in scopes and "marketing.write" not in scopes
        denied = ro.put(CONTACTS, json={"contacts": [{"email": "a@example.com"}]})
        assert denied.status_code == 403
        assert denied.json() == {"errors": [{"field": None, "message": "access forbidden"}]}
        assert ro.get("/v3/marketing/lists").status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer SG.nope", "Basic abc"])
def test_bad_or_missing_key_gets_sendgrids_401(emulator: Emulator, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{emulator.url}/v3/marketing/lists", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"errors": [{"field": None, "message": BAD_KEY_MESSAGE}]}


def test_key_is_never_kept_in_logs_reprs_or_state_file(emulator: Emulator, tmp_path: Path) -> None:
    with client(emulator) as c:
        c.get("/v3/scopes")
    seen = repr(emulator) + repr(list(emulator.state.request_log)) + repr(emulator.exchanges)
    assert emulator.api_key not in seen
    emulator.state_file = tmp_path / "state.json"
    emulator.save()
    text = emulator.state_file.read_text()
    assert emulator.api_key not in text and emulator.api_key[3:25] not in text


# ----------------------------------------------------------------- lists


def test_lists_page_with_page_token_until_no_next(emulator: Emulator, http: httpx.Client) -> None:
    ids = [emulator.state.create_list(f"list {n}")["id"] for n in range(5)]
    seen, pages = [], 0
    url: str | None = "/v3/marketing/lists?page_size=2"
    while url:
        body = http.get(url).json()
        pages += 1
        assert body["_metadata"]["count"] == 5
        seen += [lst["id"] for lst in body["result"]]
        url = body["_metadata"].get("next")
    assert pages == 3 and seen == ids
    assert "next" not in http.get("/v3/marketing/lists").json()["_metadata"]


@pytest.mark.parametrize("size", ["0", "1001", "ten"])
def test_lists_page_size_out_of_range_is_400(http: httpx.Client, size: str) -> None:
    response = http.get("/v3/marketing/lists", params={"page_size": size})
    assert response.status_code == 400
    assert only_error(response)["field"] == "page_size"


def test_create_list_and_name_limits(emulator: Emulator, http: httpx.Client) -> None:
    created = http.post("/v3/marketing/lists", json={"name": "vip"})
    assert created.status_code == 201
    assert created.json()["name"] == "vip" and created.json()["contact_count"] == 0
    assert len(created.json()["id"]) == 36
    for name in ("", "x" * 101):
        assert http.post("/v3/marketing/lists", json={"name": name}).status_code == 400
    for n in range(999):
        emulator.state.create_list(f"bulk {n}")
    too_many = http.post("/v3/marketing/lists", json={"name": "one too many"})
    assert too_many.status_code == 400 and "1000" in only_error(too_many)["message"]


def test_unknown_list_is_404(http: httpx.Client) -> None:
    for path in ("", "/contacts/count"):
        response = http.get(f"/v3/marketing/lists/00000000-0000-0000-0000-000000000000{path}")
        assert response.status_code == 404
        assert only_error(response)["message"]


# ---------------------------------------------------------------- upsert


def test_upsert_adds_to_list_and_job_completes(
    emulator: Emulator, http: httpx.Client, list_id: str
) -> None:
    job = upsert(http, [{"email": "Ann@Example.com"}, {"email": "bob@example.com"}], [list_id])
    assert job["status"] == "completed" and job["job_type"] == "upsert"
    assert job["results"]["requested_count"] == 2 and job["results"]["created_count"] == 2
    assert "errors_url" not in job["results"] and job["finished_at"]
    assert emulator.state.list_members(list_id) == {"ann@example.com", "bob@example.com"}
    count = http.get(f"/v3/marketing/lists/{list_id}/contacts/count").json()
    assert count == {"contact_count": 2, "billable_count": 2}
    assert http.get(f"{CONTACTS}/count").json()["contact_count"] == 2


def test_upsert_keeps_omitted_fields_and_matches_case_insensitively(
    emulator: Emulator, http: httpx.Client, list_id: str
) -> None:
    field = emulator.state.create_field("tier", "Text")["id"]
    upsert(http, [{"email": "a@example.com", "first_name": "Ann", "city": "Oslo"}], [list_id])
    job = upsert(
        http, [{"email": "A@EXAMPLE.COM", "city": "Bergen", "custom_fields": {field: "gold"}}], []
    )
    assert job["results"]["updated_count"] == 1 and job["results"]["created_count"] == 0
    contact = emulator.state.contact("a@example.com")
    assert (contact["first_name"], contact["city"]) == ("Ann", "Bergen")
    assert contact["custom_fields"] == {field: "gold"} and contact["list_ids"] == [list_id]
    assert emulator.state.contact_count() == 1


def test_job_stays_pending_for_the_configured_delay(
    emulator: Emulator, http: httpx.Client, list_id: str
) -> None:
    emulator.faults.job_delay = 0.3
    job_id = http.put(CONTACTS, json={"contacts": [{"email": "a@example.com"}]}).json()["job_id"]
    emulator.state.drain()
    assert http.get(f"{CONTACTS}/imports/{job_id}").json()["status"] == "pending"
    time.sleep(0.35)
    assert http.get(f"{CONTACTS}/imports/{job_id}").json()["status"] == "completed"


def test_invalid_rows_error_the_job_and_are_listed_in_errors_file(
    emulator: Emulator, http: httpx.Client, list_id: str
) -> None:
    number = emulator.state.create_field("orders", "Number")["id"]
    job = upsert(
        http,
        [
            {"email": "good@example.com", "custom_fields": {number: 3}},
            {"email": "not an email"},
            {"email": "bad-number@example.com", "custom_fields": {number: "many"}},
        ],
        [list_id],
    )
    assert job["status"] == "errored"
    assert job["results"]["errored_count"] == 2 and job["results"]["created_count"] == 1
    assert emulator.state.list_members(list_id) == {"good@example.com"}
    errors_file = httpx.get(job["results"]["errors_url"])
    rows = list(csv.DictReader(io.StringIO(errors_file.text)))
    assert {r["email"] for r in rows} == {"not an email", "bad-number@example.com"}
    assert all(r["error"] for r in rows)


def test_job_fails_when_every_row_fails(http: httpx.Client, list_id: str) -> None:
    job = upsert(http, [{"email": "nope"}, {"email": "also@nope"}], [list_id])
    assert job["status"] == "failed" and job["results"]["errored_count"] == 2


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"contacts": []}, 400, "between 1 and 30000"),
        ({"contacts": [{"email": f"u{n}@example.com"} for n in range(30_001)]}, 400, "30000"),
        ({"contacts": [{"first_name": "Ann"}]}, 400, "identifier"),
        ({"contacts": [{"email": "a@example.com", "first_name": "x" * 51}]}, 400, "50"),
        ({"contacts": [{"email": "a@example.com", "loyalty": "gold"}]}, 400, "unknown field"),
        (
            {"contacts": [{"email": "a@example.com", "custom_fields": {"loyalty_tier": "x"}}]},
            400,
            "invalid custom field ids supplied - loyalty_tier",
        ),
        ({"contacts": [{"email": "a@example.com", "alternate_emails": "b@x.com"}]}, 400, "array"),
        ({"list_ids": ["no-such-list"], "contacts": [{"email": "a@example.com"}]}, 404, "list"),
    ],
)
def test_malformed_upserts_are_refused_before_queueing(
    emulator: Emulator, http: httpx.Client, body: dict, status: int, fragment: str
) -> None:
    response = http.put(CONTACTS, json=body)
    assert response.status_code == status
    assert fragment in only_error(response)["message"]
    assert emulator.state.jobs == {}


def test_invalid_json_and_oversized_bodies(emulator: Emulator, http: httpx.Client) -> None:
    bad = http.put(CONTACTS, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and "parsed" in only_error(bad)["message"]
    postal = "x" * 300  # postal_code has no length limit, so only the body size is wrong
    contacts = [{"email": f"u{n}@example.com", "postal_code": postal} for n in range(20_000)]
    data = orjson.dumps({"contacts": contacts})
    assert len(data) > 6_000_000
    big = http.put(CONTACTS, content=data)
    assert big.status_code == 413
    assert emulator.state.jobs == {}


# ---------------------------------------------------------- search/remove


def test_search_by_emails(emulator: Emulator, http: httpx.Client, list_id: str) -> None:
    field = emulator.state.create_field("tier", "Text")["id"]
    upsert(http, [{"email": "ann@example.com", "custom_fields": {field: "gold"}}], [list_id])
    found = http.post(
        f"{CONTACTS}/search/emails", json={"emails": ["ANN@example.com", "x@example.com"]}
    )
    assert found.status_code == 200
    result = found.json()["result"]
    assert result["x@example.com"] == {"error": "contact not found"}
    contact = result["ann@example.com"]["contact"]
    assert contact["list_ids"] == [list_id] and contact["custom_fields"] == {"tier": "gold"}
    none = http.post(f"{CONTACTS}/search/emails", json={"emails": ["x@example.com"]})
    assert none.status_code == 404
    invalid = http.post(f"{CONTACTS}/search/emails", json={"emails": ["not-an-email"]})
    assert invalid.status_code == 400
    many = [f"u{n}@example.com" for n in range(101)]
    assert http.post(f"{CONTACTS}/search/emails", json={"emails": many}).status_code == 400


def test_remove_from_list_keeps_the_contact(
    emulator: Emulator, http: httpx.Client, list_id: str
) -> None:
    other = emulator.state.create_list("other")["id"]
    upsert(http, [{"email": "a@example.com"}, {"email": "b@example.com"}], [list_id, other])
    contact_id = emulator.state.contact("a@example.com")["id"]
    response = http.delete(
        f"/v3/marketing/lists/{list_id}/contacts", params={"contact_ids": contact_id}
    )
    assert response.status_code == 202
    job = wait_job(http, response.json()["job_id"])
    assert job["status"] == "completed"
    assert emulator.state.list_members(list_id) == {"b@example.com"}
    assert emulator.state.list_members(other) == {"a@example.com", "b@example.com"}
    assert emulator.state.contact_count() == 2
    missing = http.delete(
        "/v3/marketing/lists/00000000-0000-0000-0000-000000000000/contacts",
        params={"contact_ids": contact_id},
    )
    assert missing.status_code == 404


def removal(http: httpx.Client, list_id: str, *contact_ids: str) -> httpx.Response:
    return http.delete(
        f"/v3/marketing/lists/{list_id}/contacts", params={"contact_ids": ",".join(contact_ids)}
    )


def test_removal_jobs_are_pollable_like_upserts(
    emulator: Emulator, http: httpx.Client, list_id: str
) -> None:
    """GET .../imports/{id} documents upsert and delete jobs alike."""
    upsert(http, [{"email": "a@example.com"}, {"email": "b@example.com"}], [list_id])
    ids = [emulator.state.contact(e)["id"] for e in ("a@example.com", "b@example.com")]
    emulator.set_faults(job_delay=0.3)
    response = removal(http, list_id, *ids)
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    pending = http.get(f"{CONTACTS}/imports/{job_id}").json()
    assert (pending["status"], pending["job_type"]) == ("pending", "delete")
    assert pending["results"]["requested_count"] == 2
    done = wait_job(http, job_id)
    assert done["status"] == "completed" and done["results"]["deleted_count"] == 2
    assert done["finished_at"] and emulator.state.list_members(list_id) == set()


@pytest.mark.parametrize(
    ("outcome", "status", "deleted"),
    [("failed", "failed", 0), ("pending", "pending", None), ("ignored", "completed", 1)],
)
def test_removal_job_faults_change_nothing_whatever_the_job_says(
    emulator: Emulator,
    http: httpx.Client,
    list_id: str,
    outcome: str,
    status: str,
    deleted: int | None,
) -> None:
    upsert(http, [{"email": "a@example.com"}], [list_id])
    contact_id = emulator.state.contact("a@example.com")["id"]
    emulator.set_faults(removal_job=outcome)
    job = wait_job(http, removal(http, list_id, contact_id).json()["job_id"], timeout=0.5)
    assert (job["status"], job["job_type"]) == (status, "delete")
    assert job["results"].get("deleted_count") == deleted
    assert emulator.state.list_members(list_id) == {"a@example.com"}
    if outcome == "failed":
        rows = httpx.get(job["results"]["errors_url"]).text.splitlines()
        assert rows[1].startswith(contact_id)
    emulator.set_faults(removal_job="ok")  # later removals behave again
    wait_job(http, removal(http, list_id, contact_id).json()["job_id"])
    assert emulator.state.list_members(list_id) == set()


def test_removal_script_faults_only_removal_deletes(
    emulator: Emulator, http: httpx.Client, list_id: str
) -> None:
    upsert(http, [{"email": "a@example.com"}], [list_id])
    contact_id = emulator.state.contact("a@example.com")["id"]
    emulator.set_faults(removal_script=["503", "429", "500", "drop"], rate_limit_reset=3)
    assert http.get("/v3/scopes").status_code == 200  # not a removal: untouched
    assert removal(http, list_id, contact_id).status_code == 503
    limited = removal(http, list_id, contact_id)
    assert limited.status_code == 429 and limited.headers["X-RateLimit-Reset"] == "3"
    assert http.post(f"{CONTACTS}/search/emails", json={"emails": ["a@example.com"]}).is_success
    assert removal(http, list_id, contact_id).status_code == 500
    with pytest.raises(httpx.RemoteProtocolError):
        removal(http, list_id, contact_id)
    assert emulator.state.list_members(list_id) == {"a@example.com"}  # none applied
    assert removal(http, list_id, contact_id).status_code == 202
    assert emulator.faults.removal_script == []


def test_removal_faults_are_validated_and_settable_over_http(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="removal_job"):
        Faults(removal_job="sometimes")
    with pytest.raises(ValueError, match="removal_script"):
        Faults(removal_script=["418"])
    url = f"{emulator.url}/_emulator/faults"
    answer = httpx.post(url, json={"removal_job": "pending", "removal_script": ["429"]})
    assert answer.status_code == 200
    assert (emulator.faults.removal_job, emulator.faults.removal_script) == ("pending", ["429"])
    assert httpx.post(url, json={"removal_job": "never"}).status_code == 400


def test_a_script_given_to_set_faults_is_not_consumed_in_place(emulator: Emulator) -> None:
    script = ["503"]
    emulator.set_faults(script=script)
    with client(emulator) as c:
        assert c.get("/v3/scopes").status_code == 503
    assert script == ["503"]  # a parametrized test's list stays whole for the next case


# ----------------------------------------------------------- custom fields


def test_field_definitions(emulator: Emulator, http: httpx.Client) -> None:
    ids = [
        http.post("/v3/marketing/field_definitions", json={"name": n, "field_type": t}).json()["id"]
        for n, t in (("tier", "Text"), ("orders", "Number"), ("born", "Date"))
    ]
    assert [i[-2:] for i in ids] == ["_T", "_N", "_D"] and len(set(ids)) == 3
    listing = http.get("/v3/marketing/field_definitions").json()
    assert [f["id"] for f in listing["custom_fields"]] == ids
    assert "first_name" in {f["name"] for f in listing["reserved_fields"]}
    for bad in (
        {"name": "TIER", "field_type": "Text"},
        {"name": "1st", "field_type": "Text"},
        {"name": "has space", "field_type": "Text"},
        {"name": "ok", "field_type": "Bool"},
        {"name": "email", "field_type": "Text"},
    ):
        assert http.post("/v3/marketing/field_definitions", json=bad).status_code == 400, bad
    for n in range(497):
        emulator.state.create_field(f"f{n}", "Text")
    full = http.post(
        "/v3/marketing/field_definitions", json={"name": "extra", "field_type": "Text"}
    )
    assert full.status_code == 400 and "500" in only_error(full)["message"]


# ------------------------------------------------------- rate limit/faults


def test_rate_limit_headers_and_429_past_the_limit(emulator: Emulator, http: httpx.Client) -> None:
    emulator.set_faults(rate_limit=3, rate_period=30)
    answers = [http.get("/v3/marketing/lists") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a.headers["X-RateLimit-Limit"] == "3" for a in answers)
    assert 0 < int(answers[-1].headers["X-RateLimit-Reset"]) <= 30
    assert answers[-1].json() == {"errors": [{"field": None, "message": "too many requests"}]}
    assert http.get("/v3/marketing/field_definitions").status_code == 200  # per endpoint


def test_scripted_faults_429_5xx_and_dropped_connection(
    emulator: Emulator, http: httpx.Client
) -> None:
    emulator.set_faults(script=["429", "503", "500", "drop"], rate_limit_reset=2)
    limited = http.get("/v3/scopes")
    assert limited.status_code == 429 and limited.headers["X-RateLimit-Reset"] == "2"
    assert http.get("/v3/scopes").status_code == 503
    assert http.get("/v3/scopes").status_code == 500
    with pytest.raises(httpx.RemoteProtocolError):
        http.put(CONTACTS, json={"contacts": [{"email": "a@example.com"}]})
    assert http.get("/v3/scopes").status_code == 200
    assert emulator.state.jobs == {}  # the dropped PUT was not processed


def test_fault_shares_are_reproducible_with_a_seed(emulator: Emulator) -> None:
    def run() -> list[int]:
        emulator.set_faults(rate_5xx=0.5, rate_429=0.2, seed=7, rate_limit=None)
        with client(emulator) as c:
            return [c.get("/v3/scopes").status_code for _ in range(30)]

    first = run()
    assert first == run()
    assert {200, 429} <= set(first) and set(first) & {500, 503}


def test_faults_can_be_set_over_http(emulator: Emulator) -> None:
    response = httpx.post(
        f"{emulator.url}/_emulator/faults", json={"latency": 0.2, "rate_429": 0.1}
    )
    assert response.status_code == 200 and response.json()["latency"] == 0.2
    assert emulator.faults.rate_429 == 0.1
    start = time.monotonic()
    emulator.set_faults(rate_429=0.0)
    with client(emulator) as c:
        c.get("/v3/scopes")
    assert time.monotonic() - start >= 0.2
    bad = httpx.post(f"{emulator.url}/_emulator/faults", json={"rate_429": 2})
    assert bad.status_code == 400
    assert httpx.post(f"{emulator.url}/_emulator/faults", json={"typo": 1}).status_code == 400


def test_error_emails_and_row_error_rate(
    emulator: Emulator, http: httpx.Client, list_id: str
) -> None:
    emulator.set_faults(error_emails={"Doomed@example.com"})
    job = upsert(http, [{"email": "doomed@example.com"}, {"email": "fine@example.com"}], [list_id])
    assert job["status"] == "errored" and job["results"]["errored_count"] == 1
    assert emulator.state.list_members(list_id) == {"fine@example.com"}
    emulator.set_faults(error_emails=set(), row_error_rate=1.0)
    assert upsert(http, [{"email": "x@example.com"}], [list_id])["status"] == "failed"


def test_discard_mode_answers_without_storing(
    emulator: Emulator, http: httpx.Client, list_id: str
) -> None:
    emulator.faults.discard = True
    job = upsert(http, [{"email": f"u{n}@example.com"} for n in range(10)], [list_id])
    assert job["status"] == "completed" and job["results"]["requested_count"] == 10
    assert emulator.state.contact_count() == 0
    assert emulator.state.stats()["contacts_received"] == 10


def test_faults_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        Faults(rate_5xx=1.5)
    with pytest.raises(ValueError):
        Faults(script=["418"])


# ------------------------------------------------------ inspection/persist


def test_inspection_over_http(emulator: Emulator, http: httpx.Client, list_id: str) -> None:
    upsert(http, [{"email": "a@example.com"}], [list_id])
    state = httpx.get(f"{emulator.url}/_emulator/state").json()
    assert state["lists"] == [{"id": list_id, "name": "newsletter", "contact_count": 1}]
    emails = httpx.get(f"{emulator.url}/_emulator/lists/{list_id}/emails").json()
    assert emails == {"emails": ["a@example.com"]}
    stats = httpx.get(f"{emulator.url}/_emulator/stats").json()
    assert stats["requests"]["PUT /v3/marketing/contacts"] == 1 and stats["contacts_received"] == 1
    entry = emulator.state.request_log[0]
    assert (entry.method, entry.status, entry.contacts) == ("PUT", 202, 1)


def test_state_file_keeps_the_account_between_runs(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    with Emulator(state_file=path, save_interval=0.05) as first:
        key, list_id = seed_demo(first.state)
        with client(first, key) as c:
            upsert(c, [{"email": "a@example.com"}], [list_id])
        time.sleep(0.2)
        assert path.exists()  # saved while running, not only at stop
    assert path.stat().st_mode & 0o777 == 0o600
    with Emulator(state_file=path) as second:
        assert seed_demo(second.state) == (key, list_id)  # idempotent, same list
        assert second.state.list_members(list_id) == {"a@example.com"}
        assert len(second.state.fields) == 3
        with client(second, key) as c:
            assert c.get("/v3/scopes").status_code == 200


def test_state_can_be_driven_without_http() -> None:
    state = EmulatorState()
    list_id = state.create_list("direct")["id"]
    list_ids, contacts = state.validate_upsert(
        {"list_ids": [list_id], "contacts": [{"email": "A@b.co"}]}
    )
    job_id = state.submit_upsert(list_ids, contacts)
    state.drain()
    assert state.job(job_id).status() == "completed"
    assert state.list_members(list_id) == {"a@b.co"}


def test_command_serves_the_demo_account_and_saves_when_stopped(tmp_path: Path) -> None:
    """`python -m connector.emulator` (what `segsync emulator` runs) until SIGTERM."""
    path = tmp_path / "emulator.json"
    cmd = [sys.executable, "-m", "connector.emulator", "--port", "0", "--state-file", str(path)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stderr.readline() for _ in range(3)]
        url = lines[0].split()[-1]
        assert url.startswith("http://127.0.0.1:")
        assert lines[1].strip().endswith(demo_api_key())  # the demo key, said to be no secret
        headers = {"Authorization": f"Bearer {demo_api_key()}"}
        lists = httpx.get(f"{url}/v3/marketing/lists", headers=headers).json()["result"]
        assert [lst["name"] for lst in lists] == ["segsync demo"]
        proc.stderr.close()  # as the benchmarks do: nobody reads the goodbye line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0  # stopped cleanly, state saved
    assert "segsync demo" in path.read_text()


def test_concurrent_upserts_lose_nothing(
    emulator: Emulator, http: httpx.Client, list_id: str
) -> None:
    """Several connections at once (the client uploads in parallel): every row lands."""
    from concurrent.futures import ThreadPoolExecutor

    def send(batch: int) -> str:
        contacts = [{"email": f"b{batch}-{n}@example.com"} for n in range(300)]
        response = http.put(CONTACTS, json={"list_ids": [list_id], "contacts": contacts})
        return response.json()["job_id"]

    with ThreadPoolExecutor(6) as pool:
        job_ids = list(pool.map(send, range(12)))
    emulator.state.drain()
    assert len(set(job_ids)) == 12
    assert len(emulator.state.list_members(list_id)) == 12 * 300


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["upsert_a", "upsert_b", "remove_a"]),
            st.sets(st.integers(0, 15), min_size=1, max_size=6),
        ),
        max_size=12,
    )
)
def test_membership_matches_a_simple_model(ops: list[tuple[str, set[int]]]) -> None:
    """Any sequence of upserts and removals leaves lists as set arithmetic says."""
    state = EmulatorState()
    lists = {"a": state.create_list("a")["id"], "b": state.create_list("b")["id"]}
    model: dict[str, set[str]] = {"a": set(), "b": set()}
    known: set[str] = set()
    for op, numbers in ops:
        emails = {f"P{n}@Example.com".lower() for n in numbers}
        if op == "remove_a":
            ids = [state.contact(e)["id"] for e in emails & known]
            if ids:
                state.submit_removal(lists["a"], ids)
                model["a"] -= emails
        else:
            name = op[-1]
            contacts = [{"email": e.upper()} for e in sorted(emails)]
            state.submit_upsert(
                *state.validate_upsert({"list_ids": [lists[name]], "contacts": contacts})
            )
            model[name] |= emails
            known |= emails
        state.drain()
    assert {k: state.list_members(v) for k, v in lists.items()} == model
    assert state.contact_count() == len(known)
