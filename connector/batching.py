"""Pack a stream of contacts into SendGrid upsert request bodies.

SendGrid accepts at most 30,000 contacts and at most 6 MB per
``PUT /v3/marketing/contacts``. The plan hands us contacts already serialised
as JSON text (built by DuckDB), so a body is assembled by joining bytes: each
contact is serialised exactly once and never parsed again.

Speed matters (a million contacts should pack in a fraction of a second), so
Arrow batches are handled without per-row Python: one Arrow kernel appends a
comma to every contact, the offsets buffer of that result is the running byte
total, and ``bisect`` on it finds where each body must end. A body is then the
envelope around one contiguous slice of Arrow's data buffer.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

MAX_CONTACTS = 30_000
MAX_BYTES = 6_000_000


@dataclass(frozen=True, slots=True)
class Body:
    """One request body, ready to PUT as is.

    ``emails`` are its contacts' addresses in body order (``first_email`` and
    ``last_email`` the ends, for people reading the history): a resumed run
    skips exactly the addresses of bodies SendGrid confirmed.
    """

    seq: int
    data: bytes
    count: int
    first_email: str
    last_email: str
    emails: pa.Array

    def __repr__(self) -> str:  # the data can be megabytes: keep logs readable
        return (
            f"Body(seq={self.seq}, count={self.count}, bytes={len(self.data)}, "
            f"first_email={self.first_email!r}, last_email={self.last_email!r})"
        )


class ContactTooLarge(ValueError):
    """A single contact does not fit in a body even on its own."""


def envelope(list_ids: Sequence[str]) -> tuple[bytes, bytes]:
    """The bytes around the contacts: ``{"list_ids":[...],"contacts":[`` and ``]}``."""
    return b'{"list_ids":' + orjson.dumps(list(list_ids)) + b',"contacts":[', b"]}"


class _Packer:
    """Accumulates slices of serialised contacts into one body at a time."""

    def __init__(
        self, list_ids: Sequence[str], max_contacts: int, max_bytes: int, start_seq: int
    ) -> None:
        if max_contacts < 1:
            raise ValueError("max_contacts must be at least 1")
        self.prefix, self.suffix = envelope(list_ids)
        self.max_contacts = max_contacts
        self.max_bytes = max_bytes
        self.seq = start_seq
        self.parts: list[memoryview] = []
        self.emails: list[pa.Array] = []
        self.count = 0
        self.size = 0  # bytes of the contacts and the commas between them

    def room(self) -> int:
        """Bytes still free for ``c1,c2,...,cn,`` (each contact with a trailing comma)."""
        used = len(self.prefix) + len(self.suffix) + self.size + (1 if self.count else 0)
        # A run of k contacts with trailing commas is one byte longer than it adds
        # to the body (its last comma is dropped), hence the + 1.
        return self.max_bytes - used + 1

    def add(self, part: memoryview, emails: pa.Array) -> None:
        self.parts.append(part)
        self.emails.append(emails)
        self.size += len(part) + (1 if self.count else 0)
        self.count += len(emails)

    def flush(self) -> Body | None:
        """The body gathered so far, or None when nothing is waiting."""
        return self.take() if self.count else None

    def take(self) -> Body:
        """The body gathered so far (at least one contact is waiting)."""
        data = b"".join([self.prefix, b",".join(self.parts), self.suffix])
        emails = pa.concat_arrays(self.emails) if len(self.emails) > 1 else self.emails[0]
        first, last = emails[0].as_py(), emails[-1].as_py()
        body = Body(self.seq, data, self.count, first, last, emails)
        self.seq += 1
        self.parts, self.emails, self.count, self.size = [], [], 0, 0
        return body

    def feed(self, emails: pa.Array, contacts: pa.Array) -> Iterator[Body]:
        """Pack one Arrow batch; yields the bodies it completes."""
        n = len(contacts)
        if not n:
            return
        if contacts.null_count:
            bad = pc.filter(emails, pc.is_null(contacts))[0].as_py()
            raise ValueError(f"contact for {bad!r} is missing (NULL contact JSON)")
        # "c," for every contact: offsets of this array are the running byte totals.
        comma = pa.scalar(b",", pa.large_binary())
        empty = pa.scalar(b"", pa.large_binary())
        joined = pc.binary_join_element_wise(contacts.cast(pa.large_binary()), empty, comma)
        _, offsets_buf, data_buf = joined.buffers()
        offsets = memoryview(offsets_buf).cast("q")[joined.offset : joined.offset + n + 1]
        data = memoryview(data_buf)
        start = 0
        while start < n:
            limit = offsets[start] + self.room()
            end = bisect_right(offsets, limit, start, n + 1) - 1
            end = min(end, start + self.max_contacts - self.count)
            if end <= start:
                if self.count:
                    yield self.take()
                    continue
                email = emails[start].as_py()
                size = offsets[start + 1] - offsets[start] - 1
                raise ContactTooLarge(
                    f"the contact for {email!r} is {size:,} bytes serialised, more than "
                    f"fits in one request of at most {self.max_bytes:,} bytes; shorten its "
                    "field values or leave it out"
                )
            part = data[offsets[start] : offsets[end] - 1]
            self.add(part, emails.slice(start, end - start))
            start = end
            if self.count >= self.max_contacts or end < n:
                yield self.take()


def _columns(batch: pa.RecordBatch | list[dict[str, Any]]) -> tuple[pa.Array, pa.Array]:
    if isinstance(batch, pa.RecordBatch):
        return batch.column("email"), batch.column("contact")
    emails = pa.array([c["email"] for c in batch], pa.string())
    contacts = pa.array([orjson.dumps(c) for c in batch], pa.binary())
    return emails, contacts


def pack_bodies(
    batches: Iterable[pa.RecordBatch | list[dict[str, Any]]],
    list_ids: Sequence[str],
    *,
    max_contacts: int = MAX_CONTACTS,
    max_bytes: int = MAX_BYTES,
    start_seq: int = 0,
) -> Iterator[Body]:
    """Yield ``{"list_ids": [...], "contacts": [...]}`` bodies in input order.

    ``batches`` are Arrow record batches with columns ``email`` and ``contact``
    (JSON text of one contact) or lists of contact dicts (serialised here, once).
    Bodies are filled greedily: each holds at most ``max_contacts`` contacts and
    at most ``max_bytes`` bytes (envelope included); a contact is never split.
    Raises ``ContactTooLarge`` naming the email of a contact that cannot fit alone.
    """
    packer = _Packer(list_ids, max_contacts, max_bytes, start_seq)
    for batch in batches:
        emails, contacts = _columns(batch)
        yield from packer.feed(emails, contacts)
    last = packer.flush()
    if last is not None:
        yield last
