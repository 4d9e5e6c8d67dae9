"""Request bodies: limits, order, exact bytes, and speed of the packer."""

from __future__ import annotations

import itertools
import time

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.batching import Body, ContactTooLarge, envelope, pack_bodies

LIST_IDS = ["0a1b2c3d-list", "ff00-second"]

field_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=40)
contact_st = st.builds(
    lambda i, first, city, n: {
        "email": f"u{i}@example.com",
        "first_name": first,
        "city": city,
        "custom_fields": {"e1_T": first, "w2_N": n},
    },
    st.integers(0, 10**6),
    field_text,
    field_text,
    st.integers(-(10**9), 10**9),
)


def as_arrow(contacts: list[dict]) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "email": pa.array([c["email"] for c in contacts], pa.string()),
            "contact": pa.array([orjson.dumps(c).decode() for c in contacts], pa.string()),
        }
    )


def split(items: list, cuts: list[int]) -> list[list]:
    edges = [0, *sorted(c % (len(items) + 1) for c in cuts), len(items)]
    return [items[a:b] for a, b in itertools.pairwise(edges)]


def check(bodies: list[Body], contacts: list[dict], max_contacts: int, max_bytes: int) -> None:
    seen: list[dict] = []
    for i, body in enumerate(bodies):
        parsed = orjson.loads(body.data)
        assert list(parsed) == ["list_ids", "contacts"]
        assert parsed["list_ids"] == LIST_IDS
        assert 1 <= body.count == len(parsed["contacts"]) <= max_contacts
        assert len(body.data) <= max_bytes
        assert body.first_email == parsed["contacts"][0]["email"]
        assert body.last_email == parsed["contacts"][-1]["email"]
        assert body.emails.to_pylist() == [c["email"] for c in parsed["contacts"]]
        assert body.seq == 7 + i
        seen.extend(parsed["contacts"])
    assert seen == contacts


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    contacts=st.lists(contact_st, min_size=0, max_size=60),
    max_contacts=st.integers(1, 25),
    slack=st.integers(0, 2000),
    cuts=st.lists(st.integers(0, 1000), max_size=5),
    arrow=st.booleans(),
)
def test_bodies_respect_limits_and_keep_every_contact_in_order(
    contacts, max_contacts, slack, cuts, arrow
):
    prefix, suffix = envelope(LIST_IDS)
    biggest = max((len(orjson.dumps(c)) for c in contacts), default=0)
    max_bytes = len(prefix) + len(suffix) + biggest + slack
    chunks = split(contacts, cuts)
    batches = [as_arrow(c) for c in chunks] if arrow else chunks
    bodies = list(
        pack_bodies(batches, LIST_IDS, max_contacts=max_contacts, max_bytes=max_bytes, start_seq=7)
    )
    check(bodies, contacts, max_contacts, max_bytes)


@settings(max_examples=50, deadline=None)
@given(contacts=st.lists(contact_st, min_size=1, max_size=40), slack=st.integers(0, 300))
def test_bodies_are_filled_greedily(contacts, slack):
    """A body ends only because the next contact would break a limit."""
    prefix, suffix = envelope(LIST_IDS)
    biggest = max(len(orjson.dumps(c)) for c in contacts)
    max_bytes = len(prefix) + len(suffix) + biggest + slack
    bodies = list(pack_bodies([contacts], LIST_IDS, max_contacts=10, max_bytes=max_bytes))
    for body, nxt in itertools.pairwise(bodies):
        first_next = orjson.loads(nxt.data)["contacts"][0]
        assert body.count == 10 or len(body.data) + 1 + len(orjson.dumps(first_next)) > max_bytes


def test_exact_byte_limit_is_allowed():
    contacts = [{"email": f"a{i}@x.io"} for i in range(4)]
    one = len(orjson.dumps(contacts[0]))
    prefix, suffix = envelope(LIST_IDS)
    max_bytes = len(prefix) + len(suffix) + 2 * one + 1  # exactly two contacts and a comma
    bodies = list(pack_bodies([contacts], LIST_IDS, max_bytes=max_bytes))
    assert [b.count for b in bodies] == [2, 2]
    assert all(len(b.data) == max_bytes for b in bodies)


def test_a_contact_too_large_on_its_own_is_named():
    contacts = [{"email": "ok@x.io"}, {"email": "huge@x.io", "first_name": "x" * 500}]
    with pytest.raises(ContactTooLarge, match=r"huge@x\.io"):
        list(pack_bodies([as_arrow(contacts)], LIST_IDS, max_bytes=300))


def test_bodies_are_bytes_sent_unchanged_from_the_plan_json():
    """Contacts arrive serialised by DuckDB; the packer must not re-serialise them."""
    text = '{"email":"a@x.io", "first_name":"Zoë"}'  # unusual spacing survives byte for byte
    batch = pa.record_batch({"email": ["a@x.io"], "contact": [text]})
    (body,) = pack_bodies([batch], ["l1"])
    assert body.data == b'{"list_ids":["l1"],"contacts":[' + text.encode() + b"]}"


def test_empty_input_gives_no_bodies():
    assert list(pack_bodies([[], as_arrow([])], LIST_IDS)) == []


def million_contacts(rows_per_batch: int = 100_000) -> list[pa.RecordBatch]:
    """~200-byte contacts built with Arrow kernels so the setup itself stays fast."""
    batches = []
    for start in range(0, 1_000_000, rows_per_batch):
        ids = pc.cast(pa.array(range(start, start + rows_per_batch)), pa.string())
        email = pc.binary_join_element_wise("user", ids, "@example.com", "")
        contact = pc.binary_join_element_wise(
            '{"email":"',
            email,
            '","first_name":"Alexandra","last_name":"Smithson","city":"Springfield",'
            '"country":"United Kingdom","custom_fields":{"e1_T":"gold-tier","w2_N":',
            ids,
            ',"e3_D":"2024-05-01T00:00:00Z"}}',
            "",
        )
        batches.append(pa.record_batch({"email": email, "contact": contact}))
    return batches


@pytest.mark.slow
def test_a_million_contacts_pack_quickly():
    batches = million_contacts()
    size = sum(pc.sum(pc.binary_length(b.column("contact"))).as_py() for b in batches)
    assert 180 <= size / 1_000_000 <= 230
    best = float("inf")
    for _ in range(2):
        # CPU time, not wall time: other test processes on a small box must not fail this
        started = time.process_time()
        total = sum(body.count for body in pack_bodies(batches, LIST_IDS))
        best = min(best, time.process_time() - started)
    assert total == 1_000_000
    # Measured 0.17-0.25 s CPU on a 2-core machine; just listing the column in Python
    # and joining it (no cut logic at all) takes ~0.97 s.
    assert best < 0.6
