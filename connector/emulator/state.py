"""The emulated SendGrid account: keys, lists, contacts, custom fields and jobs.

Everything SendGrid decides is decided here, independent of HTTP, so tests can
inspect and drive an account directly (`state.list_members(list_id)`) and the
server stays a thin translation layer. All access goes through one lock; the
upsert work itself runs on a worker thread so a PUT answers 202 at once, as
SendGrid does, and the job stays `pending` until it is processed and its
configured delay has passed.

The rules themselves (limits, valid values, error bodies) are in `rules.py`.
"""

from __future__ import annotations

import hashlib
import heapq
import queue
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.emulator.faults import FaultInjector
from connector.emulator.rules import (
    CONTACT_SAMPLE_SIZE,
    EMAIL_RE,
    FIELD_NAME_RE,
    FIELD_PREFIX,
    FIELD_TYPES,
    FULL_SCOPES,
    IDENTIFIERS,
    MAX_CONTACTS_PER_REQUEST,
    MAX_CUSTOM_FIELDS,
    MAX_LISTS,
    MAX_SEARCH_EMAILS,
    RESERVED_FIELDS,
    ApiError,
    check_contacts,
    custom_value_problem,
)

_APPLY_CHUNK = 5_000


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_digest(api_key: str) -> str:
    """Keys are held (and persisted) only as digests: the emulator never stores a key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def make_api_key(seed: bytes | None = None) -> str:
    """A key shaped like SendGrid's: 'SG.' + 22 chars + '.' + 43 chars (69 in all).

    With a seed the key is derived deterministically (the demo key, which is no
    secret); without one it is random.
    """
    raw = hashlib.shake_256(seed).digest(65) if seed is not None else secrets.token_bytes(65)
    chars = "".join(_KEY_ALPHABET[b % 64] for b in raw)
    return f"SG.{chars[:22]}.{chars[22:65]}"


@dataclass
class Job:
    """An import (upsert) or list-removal job, as GET .../imports/{id} reports it."""

    id: str
    job_type: str
    started_at: str
    ready_at: float  # time.time() before which the job reports `pending`
    requested_count: int = 0
    created_count: int = 0
    updated_count: int = 0
    deleted_count: int = 0
    errored_count: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    processed: bool = False
    finished_at: str | None = None

    def status(self) -> str:
        if not self.processed or time.time() < self.ready_at:
            return "pending"
        if self.errored_count == 0:
            return "completed"
        if self.errored_count >= self.requested_count:
            return "failed"
        return "errored"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        data = dict(data)
        data["errors"] = [tuple(e) for e in data.get("errors", [])]
        return cls(**data)


@dataclass(frozen=True)
class LogEntry:
    """One API request as the emulator saw it (never its headers, so never the key)."""

    method: str
    path: str
    endpoint: str
    status: int
    contacts: int


class EmulatorState:
    """The account. Thread-safe; every public method takes the lock."""

    def __init__(self, faults: FaultInjector | None = None) -> None:
        self.lock = threading.RLock()
        self.faults = faults or FaultInjector()
        self.keys: dict[str, tuple[str, ...]] = {}
        self.lists: dict[str, dict[str, Any]] = {}
        self.members: dict[str, set[str]] = {}
        self.contacts: dict[str, dict[str, Any]] = {}
        self.contact_ids: dict[str, str] = {}
        self.fields: list[dict[str, str]] = []
        self.field_seq = 0
        self.jobs: dict[str, Job] = {}
        self.request_log: deque[LogEntry] = deque(maxlen=100_000)
        self.requests_by_endpoint: Counter[str] = Counter()
        self.contacts_received = 0
        self.version = 0  # bumped on every change, for debounced persistence
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue()
        self._worker: threading.Thread | None = None
        # Called on the job thread after each job; the dedicated emulator process
        # uses it to take stored contacts out of the garbage collector's sight.
        self.after_job: Callable[[], None] | None = None
        # Contact ids are UUID-shaped: a random prefix per state plus a counter
        # (uuid4() per row costs more than the rest of the upsert together).
        rand = secrets.token_hex(10)
        self._id_prefix = f"{rand[:8]}-{rand[8:12]}-4{rand[12:15]}-a{rand[15:18]}-"
        self._id_seq = 0

    # ----------------------------------------------------------------- keys
    def add_key(self, scopes: tuple[str, ...] = FULL_SCOPES, api_key: str | None = None) -> str:
        """Register a key (a new random one unless given) with these scopes; return it."""
        api_key = api_key or make_api_key()
        with self.lock:
            self.keys[key_digest(api_key)] = tuple(scopes)
            self.version += 1
        return api_key

    def scopes_for(self, api_key: str) -> tuple[str, ...] | None:
        with self.lock:
            return self.keys.get(key_digest(api_key))

    # ---------------------------------------------------------------- lists
    def create_list(self, name: Any) -> dict[str, Any]:
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise ApiError(400, "name is required and must be 1 to 100 characters", "name")
        with self.lock:
            if len(self.lists) >= MAX_LISTS:
                raise ApiError(400, f"you may have at most {MAX_LISTS} lists", "name")
            # Unconfirmed: whether SendGrid refuses a duplicate list name.
            if any(lst["name"] == name for lst in self.lists.values()):
                raise ApiError(400, "a list with this name already exists", "name")
            list_id = str(uuid.uuid4())
            self.lists[list_id] = {"id": list_id, "name": name, "created_at": now_iso()}
            self.members[list_id] = set()
            self.version += 1
            return dict(self.lists[list_id])

    def get_list(self, list_id: str) -> dict[str, Any]:
        with self.lock:
            lst = self.lists.get(list_id)
            if lst is None:
                raise ApiError(404, "list ID does not exist", "id")
            return dict(lst) | {"contact_count": len(self.members[list_id])}

    def all_lists(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(lst) | {"contact_count": len(self.members[lid])}
                for lid, lst in self.lists.items()
            ]

    def list_members(self, list_id: str) -> set[str]:
        """Emails (lower-cased) on a list: the test's view of "what is on SendGrid"."""
        with self.lock:
            return set(self.members[list_id])

    def list_sample(self, list_id: str) -> list[dict[str, Any]]:
        with self.lock:
            emails = heapq.nsmallest(CONTACT_SAMPLE_SIZE, self.members[list_id])
            return [self.contact(email) for email in emails]

    # ------------------------------------------------------------- contacts
    def contact(self, email: str) -> dict[str, Any]:
        """A stored contact (custom fields keyed by id) with its list ids; KeyError if absent."""
        with self.lock:
            key = email.lower()
            record = dict(self.contacts[key])
            record["custom_fields"] = dict(record.get("custom_fields") or {})
            record["list_ids"] = sorted(lid for lid, m in self.members.items() if key in m)
            return record

    def contact_count(self) -> int:
        with self.lock:
            return len(self.contacts)

    # --------------------------------------------------------- field defs
    def create_field(self, name: Any, field_type: Any) -> dict[str, str]:
        if not isinstance(name, str) or not 1 <= len(name) <= 100 or not FIELD_NAME_RE.match(name):
            raise ApiError(
                400,
                "field names may contain only letters, numbers and underscores "
                "and must not start with a number",
                "name",
            )
        if field_type not in FIELD_TYPES:
            raise ApiError(400, "field_type must be one of Text, Number, Date", "field_type")
        with self.lock:
            taken = {f["name"].lower() for f in self.fields} | {
                f["name"].lower() for f in RESERVED_FIELDS
            }
            if name.lower() in taken:
                raise ApiError(400, "a field with this name already exists", "name")
            if len(self.fields) >= MAX_CUSTOM_FIELDS:
                raise ApiError(400, f"you may have at most {MAX_CUSTOM_FIELDS} custom fields")
            self.field_seq += 1
            fid = f"{FIELD_PREFIX[field_type]}{self.field_seq}_{FIELD_TYPES[field_type]}"
            definition = {"id": fid, "name": name, "field_type": field_type}
            self.fields.append(definition)
            self.version += 1
            return dict(definition)

    # -------------------------------------------------------------- upsert
    def validate_upsert(self, payload: Any) -> tuple[list[str], list[dict[str, Any]]]:
        """Request-level checks SendGrid makes before it queues a job (4xx on failure)."""
        if not isinstance(payload, dict):
            raise ApiError(400, "request body must be a JSON object")
        contacts = payload.get("contacts")
        list_ids = payload.get("list_ids", [])
        if not isinstance(list_ids, list) or not all(isinstance(i, str) for i in list_ids):
            raise ApiError(400, "list_ids must be an array of list ID strings", "list_ids")
        if not isinstance(contacts, list):
            raise ApiError(400, "contacts is required and must be an array", "contacts")
        if not 1 <= len(contacts) <= MAX_CONTACTS_PER_REQUEST:
            raise ApiError(
                400,
                f"contacts must contain between 1 and {MAX_CONTACTS_PER_REQUEST} items",
                "contacts",
            )
        with self.lock:
            missing = [i for i in list_ids if i not in self.lists]
            known_fields = {f["id"] for f in self.fields}
        if missing:
            # Unconfirmed: SendGrid's exact status for unknown list ids; 404 as documented.
            raise ApiError(404, f"list ids do not exist: {', '.join(missing)}", "list_ids")
        check_contacts(contacts, known_fields)
        return list_ids, contacts

    def submit_upsert(self, list_ids: list[str], contacts: list[dict[str, Any]]) -> str:
        """Queue a validated upsert; return its job id at once."""
        job = self._new_job("upsert", len(contacts))
        with self.lock:
            self.contacts_received += len(contacts)
        self._enqueue(lambda: self._apply_upsert(job, list_ids, contacts))
        return job.id

    def submit_discarded(self, count: int) -> str:
        """`discard` mode: a job that completes at once and stores nothing."""
        job = self._new_job("upsert", count)
        job.ready_at = time.time()
        with self.lock:
            self.contacts_received += count
            job.processed = True
            job.finished_at = job.started_at
        return job.id

    def submit_removal(self, list_id: str, contact_ids: list[str]) -> str:
        """Queue removal of contacts from a list (membership only, never the contact)."""
        with self.lock:
            if list_id not in self.lists:
                raise ApiError(404, "list ID does not exist", "id")
            unknown = [c for c in contact_ids if c not in self.contact_ids]
        if not contact_ids:
            raise ApiError(400, "contact_ids is required", "contact_ids")
        if unknown:
            raise ApiError(404, f"contact IDs do not exist: {', '.join(unknown)}", "contact_ids")
        job = self._new_job("delete", len(contact_ids))
        outcome = self.faults.faults.removal_job
        if outcome != "pending":  # a pending-forever job is simply never processed
            self._enqueue(lambda: self._apply_removal(job, list_id, contact_ids, outcome))
        return job.id

    def _new_job(self, job_type: str, count: int) -> Job:
        job = Job(
            id=str(uuid.uuid4()),
            job_type=job_type,
            started_at=now_iso(),
            ready_at=time.time() + self.faults.faults.job_delay,
            requested_count=count,
        )
        with self.lock:
            self.jobs[job.id] = job
            self.version += 1
        return job

    def _enqueue(self, work: Callable[[], None]) -> None:
        with self.lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="emulator-jobs", daemon=True
                )
                self._worker.start()
        self._queue.put(work)

    def _work(self) -> None:
        while True:
            work = self._queue.get()
            try:
                work()
                if self.after_job is not None:
                    self.after_job()
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Wait until every queued job has been processed (delays aside)."""
        self._queue.join()

    def _apply_upsert(self, job: Job, list_ids: list[str], contacts: list[dict[str, Any]]) -> None:
        """Store the rows of one job, in chunks so status polls are not blocked for long."""
        ts = now_iso()
        row_faults = self.faults.has_row_faults()
        for start in range(0, len(contacts), _APPLY_CHUNK):
            with self.lock:
                self._apply_chunk(
                    job, list_ids, contacts[start : start + _APPLY_CHUNK], ts, row_faults
                )
        with self.lock:
            job.errored_count = len(job.errors)
            self._finish(job)

    def _apply_chunk(
        self,
        job: Job,
        list_ids: list[str],
        contacts: list[dict[str, Any]],
        ts: str,
        row_faults: bool,
    ) -> None:
        # The hot loop of the 1M-contact benchmark: locals only, no per-row locks.
        valid_email = EMAIL_RE.fullmatch
        row_errors = self.faults.row_errors
        types = {f["id"]: f["field_type"] for f in self.fields}
        members = [self.members[lid] for lid in list_ids if lid in self.members]
        store = self.contacts
        ids = self.contact_ids
        prefix = self._id_prefix
        seq = self._id_seq
        errors = job.errors
        created = updated = 0
        for contact in contacts:
            email = contact.get("email")
            if email:
                key = email.lower()
                if not valid_email(email):
                    errors.append((email, "invalid email"))
                    continue
            else:
                ident = next(i for i in IDENTIFIERS if contact.get(i))
                key = f"{ident}:{contact[ident]}"
            custom = contact.get("custom_fields")
            if custom:
                problem = custom_value_problem(custom, types)
                if problem:
                    errors.append((email or key, problem))
                    continue
            if row_faults and row_errors(key):
                errors.append((email or key, "contact could not be processed"))
                continue
            existing = store.get(key)
            if existing is None:
                seq += 1
                contact_id = f"{prefix}{seq:012x}"
                contact["id"] = contact_id
                if email:
                    contact["email"] = key
                contact["created_at"] = contact["updated_at"] = ts
                store[key] = contact
                ids[contact_id] = key
                created += 1
            else:
                for name, value in contact.items():
                    if name == "custom_fields":
                        existing["custom_fields"] = {**existing.get("custom_fields", {}), **value}
                    elif name != "email":
                        existing[name] = value
                existing["updated_at"] = ts
                updated += 1
            for member_set in members:
                member_set.add(key)
        self._id_seq = seq
        job.created_count += created
        job.updated_count += updated

    def _apply_removal(
        self, job: Job, list_id: str, contact_ids: list[str], outcome: str = "ok"
    ) -> None:
        """Remove members as the job's fault outcome says (see ``Faults.removal_job``)."""
        with self.lock:
            if outcome == "failed":
                job.errors = [
                    (cid, "contact could not be removed from the list") for cid in contact_ids
                ]
                job.errored_count = len(job.errors)
            elif outcome == "ignored":
                job.deleted_count = len(contact_ids)  # claims it all, changes nothing
            else:
                job.deleted_count = self._remove_members(list_id, contact_ids)
            self._finish(job)

    def _remove_members(self, list_id: str, contact_ids: list[str]) -> int:
        member_set = self.members.get(list_id, set())
        removed = 0
        for contact_id in contact_ids:
            key = self.contact_ids.get(contact_id)
            if key is not None and key in member_set:
                member_set.discard(key)
                removed += 1
        return removed

    def _finish(self, job: Job) -> None:
        job.processed = True
        finished = max(time.time(), job.ready_at)
        job.finished_at = datetime.fromtimestamp(finished, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.version += 1

    def job(self, job_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise ApiError(404, "job ID does not exist", "id")
            return job

    # ------------------------------------------------------------- search
    def search_emails(self, payload: Any) -> dict[str, Any]:
        """POST .../search/emails: result map; 404 when none found; 400 on a bad address."""
        emails = payload.get("emails") if isinstance(payload, dict) else None
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            raise ApiError(400, "emails is required and must be an array of strings", "emails")
        emails = [e for e in emails if e]  # SendGrid skips empty strings
        if not 1 <= len(emails) <= MAX_SEARCH_EMAILS:
            raise ApiError(
                400, f"emails must contain between 1 and {MAX_SEARCH_EMAILS} items", "emails"
            )
        for email in emails:
            if not EMAIL_RE.fullmatch(email):
                raise ApiError(400, f"invalid email address: {email}", "emails")
        result: dict[str, Any] = {}
        with self.lock:
            for email in emails:
                key = email.lower()
                if key in self.contacts:
                    result[key] = {"contact": self.contact(key)}
                else:
                    result[key] = {"error": "contact not found"}
        if all("error" in v for v in result.values()):
            raise ApiError(404, "No contacts found")
        return result

    # --------------------------------------------------------- bookkeeping
    def record_request(self, entry: LogEntry) -> None:
        with self.lock:
            self.request_log.append(entry)
            self.requests_by_endpoint[entry.endpoint] += 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": dict(self.requests_by_endpoint),
                "requests_total": sum(self.requests_by_endpoint.values()),
                "contacts_received": self.contacts_received,
                "contacts_stored": len(self.contacts),
                "jobs": len(self.jobs),
            }

    # --------------------------------------------------------- persistence
    def to_json(self) -> dict[str, Any]:
        """Everything that defines the account; keys only as digests."""
        with self.lock:
            return {
                "format": 1,
                "keys": {d: list(s) for d, s in self.keys.items()},
                "lists": list(self.lists.values()),
                "members": {lid: sorted(m) for lid, m in self.members.items()},
                "contacts": self.contacts,
                "fields": self.fields,
                "field_seq": self.field_seq,
                "jobs": [j.to_json() for j in self.jobs.values() if j.processed],
            }

    def load_json(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.keys = {d: tuple(s) for d, s in data["keys"].items()}
            self.lists = {lst["id"]: lst for lst in data["lists"]}
            self.members = {lid: set(m) for lid, m in data["members"].items()}
            self.contacts = data["contacts"]
            self.contact_ids = {c["id"]: k for k, c in self.contacts.items()}
            self.fields = data["fields"]
            self.field_seq = data["field_seq"]
            self.jobs = {j["id"]: Job.from_json(j) for j in data["jobs"]}
            self.version += 1
