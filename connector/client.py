"""Async client for the SendGrid Marketing Contacts API.

One ``httpx.AsyncClient`` with keep-alive per ``SendGridClient``; every call
goes through ``_request``, which retries what may succeed if sent again (see
``connector.retry``) and turns every other answer into a ``SendGridError``
that says what to do.

The API key is handled so that it cannot leak: it is added to each request by
an httpx auth hook (never stored in default headers), it is sent only to the
configured host (plus SendGrid's own hosts for error files) and never over
plain http except to this machine, exceptions never hold httpx objects, and
SendGrid's text is scrubbed of the key before it is quoted.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import ipaddress
import math
import re
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import orjson

from connector.errors import (
    BadApiKey,
    InsecureURL,
    ListNotFound,
    MissingScope,
    RequestCancelled,
    RequestRejected,
    ResponseTooLarge,
    SendGridError,
    UnexpectedAnswer,
)
from connector.hosts import EU_URL, GLOBAL_URL
from connector.httpx_import import httpx
from connector.models import ContactList, CustomField, ImportJob, Membership, Removal
from connector.retry import (
    RateGate,
    Retryable,
    RetryNotice,
    RetryPolicy,
    call_with_retries,
    rate_limit_remaining,
    rate_limit_wait,
)

__all__ = [
    "EU_URL",
    "GLOBAL_URL",
    "READ_SCOPES",
    "ContactList",
    "CustomField",
    "ImportJob",
    "Membership",
    "Removal",
    "RequestCancelled",
    "RetryNotice",
    "SendGridClient",
]


# Scopes checked by validate_key(). SendGrid's scopes document lists no
# marketing scopes, and which scope gates contact *writes* is unconfirmed
# (only marketing.read and marketing.automation.read have been seen), so only
# the read scope is required up front: demanding a guessed write-scope name
# would refuse keys that work. A key without write access surfaces as
# MissingScope from the first upsert instead.
READ_SCOPES = ("marketing.read",)

SEARCH_CHUNK = 100  # emails per search call (SendGrid's documented maximum)
REMOVE_CHUNK = 100  # contact ids per removal call (the real limit is unconfirmed)
LIST_PAGE_SIZE = 1000
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=60.0, pool=10.0)
# One attempt, connect to last byte. The slowest honest exchange is a 6 MB PUT
# on a slow uplink (about 50 s at 1 Mbit/s) plus SendGrid's own time: 90 s
# covers it, and a server trickling bytes is cut off there instead of never.
DEFAULT_DEADLINE = 90.0
# Answers are read up to a cap per kind of call, so a runaway server or proxy
# cannot fill the memory (a 1.5 GB answer once took 3.4 GB before failing).
# JSON answers: the largest real ones are a 1,000-list page (~0.3 MB) and a
# 100-contact search with many custom fields (a few MB): 16 MB is ample.
MAX_JSON_BYTES = 16 * 1024 * 1024
# A job's errors file lists up to 30,000 rows (one PUT's maximum), each an
# address of up to 254 characters and a reason: ~15 MB at worst, so 64 MB.
MAX_ERRORS_FILE_BYTES = 64 * 1024 * 1024
_QUOTE_LIMIT = 500  # characters of a non-JSON error body worth quoting


class SecretLike(Protocol):
    def reveal(self) -> str: ...


class _BearerAuth(httpx.Auth):
    """Adds the key to each request as it is sent, so it lives in no defaults."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key}"
        yield request

    def scrub(self, text: str) -> str:
        """``text`` with the key masked, for quoting what a server sent back."""
        return text.replace(self._key, "SG.<hidden>") if text else text


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _origin(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}"


def _check_url(raw: str) -> httpx.URL:
    """Only https, or http to this machine: the key must never cross a network in clear."""
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"not a URL: {raw!r} ({exc})") from None
    if url.scheme == "https" and url.host:
        return url
    if url.scheme == "http" and _is_loopback(url.host):
        return url
    raise InsecureURL(_origin(url) if url.host else raw)


def _reveal(api_key: str | SecretLike) -> str:
    key = api_key if isinstance(api_key, str) else api_key.reveal()
    return key.strip()


def _key_problem(key: str) -> str | None:
    """Why ``key`` cannot be an API key, checked before anything is sent: httpx
    would otherwise fail with a message that quotes the header value."""
    if not key:
        return "The API key is empty."
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        return "The API key contains spaces or characters no key has."
    return None


def _sendgrid_errors(body: bytes) -> list[tuple[str | None, str]]:
    """SendGrid's ``errors[]`` as (field, message); raw text when it is not JSON."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        if _looks_like_html(text):
            return [(None, _html_summary(text))]
        return [(None, text[:_QUOTE_LIMIT])] if text else []
    errors = data.get("errors") if isinstance(data, dict) else None
    found: list[tuple[str | None, str]] = []
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict) and item.get("message"):
                field = item.get("field")
                found.append((str(field) if field else None, str(item["message"])))
    elif isinstance(data, dict) and isinstance(data.get("error"), str):
        found.append((None, data["error"]))
    return found


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _looks_like_html(text: str) -> bool:
    start = text[:200].lstrip().lower()
    return start.startswith(("<!doctype html", "<html", "<head", "<body", "<title"))


def _html_summary(text: str) -> str:
    """An HTML page comes from a proxy or gateway, not from SendGrid: name it by
    its title instead of quoting markup."""
    match = _TITLE.search(text[: _QUOTE_LIMIT * 4])
    title = " ".join(html.unescape(match[1]).split())[:100] if match else ""
    page = f"an HTML page titled {title!r}" if title else "an HTML page"
    return f"{page} (not SendGrid's JSON: likely from a proxy or gateway on the way)"


class _Fields:
    """Typed reads from one JSON object in an answer.

    A field that is missing when required, or of the wrong type, becomes an
    ``UnexpectedAnswer`` naming the call and the field, so a strange answer
    (a ``{}`` to a PUT, ``results: []``) never surfaces as a KeyError or
    AttributeError from deep inside the client. Optional fields that are
    absent or null read as empty.
    """

    __slots__ = ("_data", "_endpoint", "_where")

    def __init__(self, data: Mapping[str, Any], endpoint: str, where: str = "") -> None:
        self._data = data
        self._endpoint = endpoint
        self._where = where

    def _bad(self, key: str, problem: str) -> UnexpectedAnswer:
        # repr(): names come from the server, and must not carry control codes
        # to a terminal; a runaway name is cut short.
        return UnexpectedAnswer(self._endpoint, f"{(self._where + key)[:120]!r} {problem}")

    def _get(self, key: str, required: bool) -> Any:
        value = self._data.get(key)
        if value is None and required:
            raise self._bad(key, "is missing")
        return value

    def text(self, key: str) -> str:
        """A required non-empty string (a number is accepted: ids have been both)."""
        value = self._get(key, True)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise self._bad(key, f"is {_kind(value)}, not an id or name")
        return str(value)

    def opt_text(self, key: str) -> str | None:
        value = self._get(key, False)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self._bad(key, f"is {_kind(value)}, not text")
        return value

    def count(self, key: str) -> int | None:
        """A count: None when absent; a non-number (or nan/inf) is an error."""
        value = self._get(key, False)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise self._bad(key, f"is {_kind(value)}, not a count")
        return int(value)

    def obj(self, key: str, *, required: bool = False) -> _Fields:
        value = self._get(key, required)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self._bad(key, f"is {_kind(value)}, not an object")
        return _Fields(value, self._endpoint, f"{self._where}{key}.")

    def array(self, key: str) -> list[Any]:
        value = self._get(key, False)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._bad(key, f"is {_kind(value)}, not an array")
        return value

    def objects(self, key: str) -> list[_Fields]:
        found = []
        for n, item in enumerate(self.array(key)):
            if not isinstance(item, dict):
                raise self._bad(f"{key}[{n}]", f"is {_kind(item)}, not an object")
            found.append(_Fields(item, self._endpoint, f"{self._where}{key}[{n}]."))
        return found

    def entries(self) -> list[tuple[str, _Fields]]:
        """The object's own members, each required to be an object."""
        found = []
        for key, value in self._data.items():
            if not isinstance(value, dict):
                raise self._bad(str(key), f"is {_kind(value)}, not an object")
            found.append((str(key), _Fields(value, self._endpoint, f"{self._where}{key}.")))
        return found

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def has(self, key: str) -> bool:
        return self._data.get(key) is not None


def _kind(value: Any) -> str:
    """How an unexpected value is named in a message (never the value itself:
    it could be huge, or hold text that should not reach a terminal)."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "empty text" if not value else "text"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _contact_list(data: _Fields) -> ContactList:
    return ContactList(data.text("id"), data.opt_text("name") or "", data.count("contact_count"))


def _fields(items: list[_Fields]) -> list[CustomField]:
    """Field definitions; entries without an id or name are skipped (reserved
    fields have been seen in several shapes, and none of them is needed)."""
    return [
        CustomField(str(f.text("id")), str(f.text("name")), f.opt_text("field_type") or "")
        for f in items
        if f.has("id") and f.has("name")
    ]


JOB_STATUSES = frozenset({"pending", "completed", "errored", "failed"})


def _import_job(data: _Fields, job_id: str) -> ImportJob:
    """A job status answer. An unknown or missing status is an error rather than
    "pending": polling a status that never turns terminal would hang a run."""
    status = data.text("status")
    if status not in JOB_STATUSES:
        raise UnexpectedAnswer(
            data.endpoint, f"the job status {status[:40]!r} is none of {sorted(JOB_STATUSES)}"
        )
    results = data.obj("results")
    return ImportJob(
        id=data.opt_text("id") or job_id,
        status=status,
        requested=results.count("requested_count"),
        created=results.count("created_count"),
        updated=results.count("updated_count"),
        deleted=results.count("deleted_count"),
        errored=results.count("errored_count"),
        errors_url=results.opt_text("errors_url"),
        job_type=data.opt_text("job_type"),
    )


def parse_errors_file(content: bytes) -> list[tuple[str, str]]:
    """``(email, reason)`` rows from a job's errors file.

    The format is unconfirmed (see the API notes), so: JSON (a list of objects
    or an object holding one) or CSV with a header; the email and the reason
    columns are found by name; a headerless CSV is read as email, reason.
    """
    text = content.decode("utf-8-sig", "replace").strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            return _rows_from_json(orjson.loads(text))
        except orjson.JSONDecodeError:
            pass
    rows = [r for r in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in r)]
    if not rows:
        return []
    first = rows[0]
    at = next((i for i, cell in enumerate(first) if "@" in cell), None)
    email_col: int | None
    if at is not None:  # no header: the first row is already data
        email_col, body = at, rows
        reason_col = next((i for i in range(len(first)) if i != at and first[i].strip()), None)
    else:
        header = [cell.strip().lower() for cell in first]
        email_col = _find_column(header, ("email", "identifier", "contact"))
        reason_col = _find_column(header, ("error", "reason", "message", "detail"))
        if email_col is None:
            return []
        body = rows[1:]
    found = []
    for row in body:
        if email_col >= len(row) or not row[email_col].strip():
            continue
        reason = row[reason_col].strip() if reason_col is not None and reason_col < len(row) else ""
        found.append((row[email_col].strip(), reason or "rejected by SendGrid (no reason given)"))
    return found


def _find_column(header: Sequence[str], words: Iterable[str]) -> int | None:
    for word in words:
        for i, name in enumerate(header):
            if word in name:
                return i
    return None


def _rows_from_json(data: Any) -> list[tuple[str, str]]:
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), [])
    found = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict):
            continue
        keys = [k.lower() for k in item]
        email_i = _find_column(keys, ("email", "identifier", "contact"))
        reason_i = _find_column(keys, ("error", "reason", "message", "detail"))
        values = list(item.values())
        if email_i is None or not values[email_i]:
            continue
        reason = values[reason_i] if reason_i is not None else ""
        found.append(
            (str(values[email_i]), str(reason or "rejected by SendGrid (no reason given)"))
        )
    return found


@dataclass(slots=True)
class _Reply:
    """What an attempt got back: plain values only (httpx's response keeps its
    request, whose headers hold the key)."""

    status: int
    headers: httpx.Headers
    body: bytes


@dataclass(slots=True, eq=False)
class _Call:
    """One public call across its attempts: names it in errors and notices,
    counts what reached the wire, and is the rate gate's owner token."""

    endpoint: str
    sent: int = 0
    # Its last 429 met a wait already begun (another request's 429): not told again.
    quiet: bool = False


class SendGridClient:
    """The SendGrid calls segsync makes. Use as ``async with SendGridClient(key) as c``.

    ``api_key`` is a string or anything with ``.reveal()`` (``store.secrets.Secret``).
    ``base_url`` is ``GLOBAL_URL``, ``EU_URL`` or a loopback URL (the emulator).
    ``on_retry`` hears about every wait before it starts. ``sleep`` and
    ``max_rate_limit_wait`` exist so tests and demos need not wait for real.

    ``request_deadline`` bounds one attempt from connect to the last byte of the
    answer (httpx's own timeouts are per read, so a server trickling a byte at a
    time could hold a request forever). Answers are read up to
    ``max_response_bytes`` (``max_errors_file_bytes`` for job errors files),
    then reading stops with ``ResponseTooLarge``.

    ``cancel`` (or ``cancel()``) stops the client: every retry and rate-limit
    wait in progress ends at once with ``RequestCancelled``, and no new request
    is sent; requests already on the wire finish and return normally.
    """

    def __init__(
        self,
        api_key: str | SecretLike,
        base_url: str = GLOBAL_URL,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = 8,
        max_total_wait: float = 300.0,
        on_retry: Callable[[RetryNotice], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 10,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_rate_limit_wait: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        request_deadline: float = DEFAULT_DEADLINE,
        max_response_bytes: int = MAX_JSON_BYTES,
        max_errors_file_bytes: int = MAX_ERRORS_FILE_BYTES,
        cancel: asyncio.Event | None = None,
    ) -> None:
        if request_deadline <= 0 or max_response_bytes < 1 or max_errors_file_bytes < 1:
            raise ValueError("request_deadline and the response caps must be positive")
        self._base = _check_url(base_url.rstrip("/"))
        self._host = self._base.host
        self._policy = RetryPolicy(
            max_attempts=max_attempts,
            max_total_wait=max_total_wait,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            max_rate_limit_wait=max_rate_limit_wait,
        )
        self._on_retry = on_retry
        self._sleep = sleep
        self._deadline = request_deadline
        self._max_json = max_response_bytes
        self._max_errors_file = max_errors_file_bytes
        self._cancel = cancel if cancel is not None else asyncio.Event()
        self._gate = RateGate()
        self._slots = asyncio.Semaphore(max_connections)
        self._in_flight = 0
        key = _reveal(api_key)
        problem = _key_problem(key)
        if problem:
            del key, api_key  # a traceback printed with locals must not show it
            raise BadApiKey(problem=problem)
        # The key lives only inside the auth hook, whose repr hides it.
        self._auth = _BearerAuth(key)
        del key
        self._http = httpx.AsyncClient(
            base_url=self._base,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            mounts=_no_proxy_mounts(self._base),
            headers={"Accept": "application/json", "User-Agent": "segsync"},
            follow_redirects=False,  # a redirect must not carry the key elsewhere
        )

    def __repr__(self) -> str:
        return f"SendGridClient({_origin(self._base)!r})"

    @property
    def base_url(self) -> str:
        return _origin(self._base)

    async def __aenter__(self) -> SendGridClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def cancel(self) -> None:
        """Stop this client: waits end now with ``RequestCancelled``, nothing new is
        sent. Requests on the wire finish. Cannot be undone (use a new client)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def rate_limited_for(self) -> float:
        """Seconds until the shared rate-limit gate opens (0 when it is open)."""
        return self._gate.closed_for

    # -- the calls ----------------------------------------------------------

    async def validate_key(self, required: Sequence[str] = READ_SCOPES) -> list[str]:
        """The key's scopes; ``MissingScope`` naming any of ``required`` it lacks."""
        data = await self._json("GET", "/v3/scopes", action="read the key's own permissions")
        scopes = data.array("scopes")
        if not all(isinstance(s, str) for s in scopes):
            raise UnexpectedAnswer("GET /v3/scopes", "'scopes' holds something other than text")
        missing = [s for s in required if s not in scopes]
        if missing:
            raise MissingScope(missing, action="export contacts to lists", status=None)
        return list(scopes)

    async def lists(self, page_size: int = LIST_PAGE_SIZE) -> list[ContactList]:
        """Every list in the account, following ``_metadata.next`` to the last page."""
        found: list[ContactList] = []
        params: dict[str, str] = {"page_size": str(page_size)}
        seen_tokens: set[str] = set()
        while True:
            data = await self._json("GET", "/v3/marketing/lists", params=params)
            found.extend(_contact_list(item) for item in data.objects("result"))
            next_url = data.obj("_metadata").opt_text("next")
            # Only the page token is taken from `next`: the request itself goes to
            # our own host, so a surprising `next` URL never receives the key.
            token = (
                parse_qs(urlsplit(next_url).query).get("page_token", [""])[0] if next_url else ""
            )
            if not token or token in seen_tokens:
                return found
            seen_tokens.add(token)
            params = {"page_size": str(page_size), "page_token": token}

    async def get_list(self, list_id: str) -> ContactList:
        data = await self._json(
            "GET", f"/v3/marketing/lists/{quote(list_id, safe='')}", list_id=list_id
        )
        return _contact_list(data)

    async def create_list(self, name: str) -> ContactList:
        data = await self._json("POST", "/v3/marketing/lists", body={"name": name})
        return _contact_list(data)

    async def list_contact_count(self, list_id: str) -> int:
        path = f"/v3/marketing/lists/{quote(list_id, safe='')}/contacts/count"
        data = await self._json("GET", path, list_id=list_id)
        return data.count("contact_count") or 0

    async def field_definitions(self) -> tuple[list[CustomField], list[CustomField]]:
        """``(custom, reserved)`` field definitions; custom ids differ per account."""
        data = await self._json("GET", "/v3/marketing/field_definitions")
        return _fields(data.objects("custom_fields")), _fields(data.objects("reserved_fields"))

    async def create_field(self, name: str, field_type: str) -> CustomField:
        body = {"name": name, "field_type": field_type}
        data = await self._json("POST", "/v3/marketing/field_definitions", body=body)
        return CustomField(
            data.text("id"),
            data.opt_text("name") or name,
            data.opt_text("field_type") or field_type,
        )

    async def upsert_contacts(
        self, list_ids: Sequence[str], contacts: Sequence[Mapping[str, Any]]
    ) -> str:
        """Add or update contacts and put them on the lists; returns the import job id."""
        return await self.upsert_body(
            orjson.dumps({"list_ids": list(list_ids), "contacts": list(contacts)})
        )

    async def upsert_body(self, body: bytes) -> str:
        """PUT a body built by ``connector.batching`` as is; returns the import job id.

        A 202 means queued, not done: poll ``import_status``. If the connection
        drops after SendGrid read the body, the retry sends it again; that is
        safe because an upsert is keyed by email, so a second copy only updates
        the same contacts to the same values. A 202 without a job id is an
        ``UnexpectedAnswer``: the batch may be queued, but it cannot be confirmed.
        """
        data = await self._json("PUT", "/v3/marketing/contacts", content=body)
        return data.text("job_id")

    async def import_status(self, job_id: str) -> ImportJob:
        """An upsert or removal ("delete") job's status and counts."""
        path = f"/v3/marketing/contacts/imports/{quote(job_id, safe='')}"
        return _import_job(await self._json("GET", path), job_id)

    async def download_errors(self, url: str) -> list[tuple[str, str]]:
        """``(email, reason)`` for each row of a job's errors file."""
        target = _check_url(url)
        # The key goes to our API host and SendGrid's own hosts only; an errors
        # file elsewhere (a signed storage URL) is fetched without it.
        host = target.host.lower()
        same_origin = _origin(target) == _origin(self._base)
        send_key = same_origin or host == "sendgrid.com" or host.endswith(".sendgrid.com")
        endpoint = "GET errors file"
        _status, content = await self._request(
            "GET", str(target), endpoint=endpoint, authenticated=send_key, cap=self._max_errors_file
        )
        try:
            return parse_errors_file(content)
        except csv.Error as exc:
            problem = f"the errors file could not be read as CSV ({exc})"
        raise UnexpectedAnswer(endpoint, problem)

    async def search_emails(self, emails: Iterable[str]) -> dict[str, str]:
        """``{lower-cased email: contact id}`` for the emails SendGrid knows."""
        return {email: contact.text("id") async for email, contact in self._contacts(emails)}

    async def memberships(self, emails: Iterable[str]) -> dict[str, Membership]:
        """``{lower-cased email: (contact id, list ids)}`` for the emails SendGrid knows,
        read now: the way to confirm a removal (or an upsert) really changed a list.

        An email SendGrid does not know is absent (it is on no list). A contact
        shown without ``list_ids`` is an ``UnexpectedAnswer``: reading it as "on
        no list" would confirm removals that never happened.
        """
        found: dict[str, Membership] = {}
        async for email, contact in self._contacts(emails):
            if not contact.has("list_ids"):
                raise UnexpectedAnswer(
                    SEARCH_ENDPOINT,
                    "a contact came without 'list_ids', so its lists cannot be confirmed",
                )
            list_ids = contact.array("list_ids")
            if not all(isinstance(i, str) for i in list_ids):
                raise UnexpectedAnswer(SEARCH_ENDPOINT, "'list_ids' holds something other than ids")
            found[email] = Membership(contact.text("id"), frozenset(list_ids))
        return found

    async def _contacts(self, emails: Iterable[str]) -> AsyncIterator[tuple[str, _Fields]]:
        """``(lower-cased email, contact)`` for each known email, searched 100 at a time."""
        unique = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        for start in range(0, len(unique), SEARCH_CHUNK):
            chunk = unique[start : start + SEARCH_CHUNK]
            data = await self._json(
                "POST",
                "/v3/marketing/contacts/search/emails",
                body={"emails": chunk},
                none_found_ok=True,
                searched=chunk,
            )
            for email, entry in data.obj("result").entries():
                if entry.has("contact"):
                    yield email.lower(), entry.obj("contact")

    async def remove_from_list(self, list_id: str, contact_ids: Sequence[str]) -> list[str]:
        """Take contacts off a list (they stay in the account); returns job ids.

        Kept as it was for existing callers: any 404 (unknown list, or any one
        unknown contact id) is ``ListNotFound``. ``remove_members`` copes with
        ids that are gone and says per DELETE what happened.
        """
        path = f"/v3/marketing/lists/{quote(list_id, safe='')}/contacts"
        jobs = []
        for start in range(0, len(contact_ids), REMOVE_CHUNK):
            chunk = contact_ids[start : start + REMOVE_CHUNK]
            params = {"contact_ids": ",".join(chunk)}
            data = await self._json("DELETE", path, params=params, list_id=list_id)
            jobs.append(data.opt_text("job_id") or "")
        return [j for j in jobs if j]

    async def remove_members(self, list_id: str, contact_ids: Sequence[str]) -> list[Removal]:
        """Take contacts off a list (they stay in the account), 100 ids per DELETE.

        SendGrid answers 404 when the list or *any* of the ids does not exist.
        So on a 404 the list is checked (``ListNotFound`` if it is gone), then
        the chunk is split in halves until the ids that exist are removed and
        each id that does not is reported in ``already_gone`` (a contact that no
        longer exists is on no list). Returns one ``Removal`` per DELETE that
        was accepted, plus one per chunk for the ids found gone.
        """
        path = f"/v3/marketing/lists/{quote(list_id, safe='')}/contacts"
        unique = list(dict.fromkeys(i for i in contact_ids if i))
        done: list[Removal] = []
        list_checked = False
        for start in range(0, len(unique), REMOVE_CHUNK):
            chunk = unique[start : start + REMOVE_CHUNK]
            gone: list[str] = []
            pending = [chunk]
            while pending:
                ids = pending.pop(0)
                gone_here, job_id = await self._delete_members(path, ids)
                if not gone_here:
                    done.append(Removal(tuple(ids), job_id))
                    continue
                if not list_checked:
                    await self.get_list(list_id)  # ListNotFound if the list is what is gone
                    list_checked = True
                if len(ids) == 1:
                    gone.append(ids[0])
                else:
                    half = len(ids) // 2
                    pending[:0] = [ids[:half], ids[half:]]
            if gone:
                done.append(Removal(tuple(gone), None, tuple(gone)))
        return done

    async def _delete_members(self, path: str, ids: Sequence[str]) -> tuple[bool, str | None]:
        """One DELETE: ``(False, job id)`` (None if the 202 named none), or
        ``(True, None)`` for a 404 (some id in it, or the list, does not exist)."""
        status, raw = await self._request(
            "DELETE",
            path,
            params={"contact_ids": ",".join(ids)},
            endpoint=f"DELETE {path}",
            none_found_ok=True,
        )
        if status == 404:
            return True, None
        return False, self._parse(raw, status, f"DELETE {path}").opt_text("job_id")

    async def contact_count(self) -> int:
        data = await self._json("GET", "/v3/marketing/contacts/count")
        return data.count("contact_count") or 0

    # -- plumbing -----------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content: bytes | None = None,
        list_id: str | None = None,
        action: str = "",
        none_found_ok: bool = False,
        searched: Sequence[str] = (),
    ) -> _Fields:
        """One API call answered with a JSON object (``{}`` for an empty answer)."""
        if body is not None:
            content = orjson.dumps(body)
        endpoint = f"{method} {path}"
        status, raw = await self._request(
            method,
            path,
            params=params,
            content=content,
            endpoint=endpoint,
            list_id=list_id,
            action=action,
            none_found_ok=none_found_ok,
            searched=searched,
        )
        if status == 404 and none_found_ok:
            return _Fields({}, endpoint)
        return self._parse(raw, status, endpoint)

    @staticmethod
    def _parse(raw: bytes, status: int, endpoint: str) -> _Fields:
        if not raw.strip():
            return _Fields({}, endpoint)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise UnexpectedAnswer(endpoint, "it was not the JSON object expected", status=status)
        return _Fields(data, endpoint)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        authenticated: bool = True,
        list_id: str | None = None,
        action: str = "",
        none_found_ok: bool = False,
        searched: Sequence[str] = (),
        cap: int | None = None,
    ) -> tuple[int, bytes]:
        """Send with retries; ``(status, body)`` of a 2xx answer, else a SendGridError
        (or ``RequestCancelled``)."""
        target = httpx.URL(url)
        host = target.host or self._host
        # Only our API host's answers speak for its rate limits.
        gated = not target.host or _origin(target) == _origin(self._base)
        send = _Send(
            method,
            url,
            params,
            content,
            {"Content-Type": "application/json"} if content is not None else None,
            self._auth if authenticated else None,
            cap or self._max_json,
        )
        call = _Call(endpoint)

        async def attempt() -> tuple[int, bytes]:
            outcome = await self._attempt(call, send, host, gated)
            if isinstance(outcome, BaseException):
                raise outcome  # built from plain values, raised outside any except
            status = outcome.status
            if 200 <= status < 300 or (status == 404 and none_found_ok):
                return status, outcome.body
            error = self._error(
                status, outcome.headers, outcome.body, endpoint, host, list_id, action, searched
            )
            if isinstance(error, Retryable) and error.kind == "rate_limit":
                error.announce = not call.quiet
            # Dropped before raising: a server may echo the key in its body, and a
            # traceback printed with locals would show it.
            del outcome
            raise error

        return await call_with_retries(
            attempt,
            self._policy,
            on_retry=self._on_retry,
            sleep=lambda seconds: self._wait(seconds, call),
        )

    async def _attempt(
        self, call: _Call, send: _Send, host: str, gated: bool
    ) -> _Reply | BaseException:
        """One attempt: a connection slot, then the gate, then the exchange.

        The gate is checked after the slot is taken, right before sending, so a
        request queued for a connection cannot slip out while the gate is closed.
        """
        await self._take_slot(call)
        try:
            if gated:
                await self._gate.wait_open(
                    call, lambda seconds: self._wait(seconds, call), self._gate_notice(call)
                )
            self._stop_if_cancelled(call)
            call.sent += 1
            self._in_flight += 1
            try:
                outcome = await self._exchange(send, call.endpoint, host)
            finally:
                self._in_flight -= 1
            if gated and isinstance(outcome, _Reply):
                self._note_rate_limit(outcome, call)
            return outcome
        finally:
            self._slots.release()

    async def _exchange(self, send: _Send, endpoint: str, host: str) -> _Reply | BaseException:
        """Send once and read the answer within the deadline and the cap.

        Every failure is returned as a plain exception, never raised from here:
        httpx's exceptions carry the request (and its Authorization header), so
        none of them may become the context of what the caller sees.
        """
        status: int | None = None
        try:
            async with asyncio.timeout(self._deadline):
                async with self._http.stream(
                    send.method,
                    send.url,
                    params=send.params,
                    content=send.content,
                    headers=send.headers,
                    auth=send.auth,
                ) as response:
                    status = response.status_code
                    body = await _read_capped(response, send.cap)
                    if body is None:
                        return ResponseTooLarge(endpoint, send.cap, status=status)
                    return _Reply(status, response.headers, body)
        except TimeoutError:
            reason = f"no complete answer within {self._deadline:g} s"
        except httpx.TimeoutException as exc:
            reason = f"timed out ({type(exc).__name__})"
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
            reason = self._auth.scrub(str(exc) or type(exc).__name__)
        except httpx.DecodingError as exc:
            detail = self._auth.scrub(str(exc) or type(exc).__name__)
            return UnexpectedAnswer(
                endpoint,
                f"its body did not match its Content-Encoding header ({detail})",
                status=status,
            )
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
            detail = self._auth.scrub(str(exc) or type(exc).__name__)
            return SendGridError(f"Could not send {endpoint}: {type(exc).__name__}: {detail}.")
        return Retryable("transient", reason, endpoint=endpoint, host=host)

    def _note_rate_limit(self, reply: _Reply, call: _Call) -> None:
        """Close the shared gate when SendGrid says wait: a 429, or a window whose
        remaining requests the others already in flight could use up."""
        if reply.status == 429:
            seconds = self._policy.rate_limit_delay(rate_limit_wait(reply.headers))
            # Announced by the retry notice of the call whose 429 began the wait.
            call.quiet = self._gate.close_for(self._gate_span(seconds), call, announced=True)
            return
        remaining = rate_limit_remaining(reply.headers)
        if remaining is None or remaining > self._in_flight:
            return
        reset = rate_limit_wait(reply.headers)
        if reset is not None:
            seconds = self._policy.rate_limit_delay(reset)
            self._gate.close_for(self._gate_span(seconds), None, announced=False)

    def _gate_span(self, seconds: float) -> float:
        """A closing never outlasts the wait budget (a far-off reset must not park
        every request of the client for hours)."""
        return min(seconds, self._policy.max_total_wait)

    def _gate_notice(self, call: _Call) -> Callable[[float], None]:
        def announce(seconds: float) -> None:
            if self._on_retry is not None:
                reason = "waiting for SendGrid's rate-limit window to reset"
                self._on_retry(RetryNotice("rate_limit", seconds, call.endpoint, call.sent, reason))

        return announce

    def _stop_if_cancelled(self, call: _Call) -> None:
        if self._cancel.is_set():
            raise RequestCancelled(call.endpoint, call.sent)

    async def _take_slot(self, call: _Call) -> None:
        """A connection slot; waiting for one ends at once on cancel."""
        self._stop_if_cancelled(call)
        if not self._slots.locked():
            await self._slots.acquire()
            return
        acquire = asyncio.ensure_future(self._slots.acquire())
        got = False
        try:
            got = await self._until_cancelled(acquire) and not self._cancel.is_set()
        finally:
            # Taken just as the wait ended (cancel, or this task cancelled): give it back.
            if not got and acquire.done() and not acquire.cancelled():
                self._slots.release()
        if not got:
            raise RequestCancelled(call.endpoint, call.sent)

    async def _wait(self, seconds: float, call: _Call) -> None:
        """Every wait of the client (retry backoff, rate limits, the gate): ends at
        once with ``RequestCancelled`` when the client is cancelled."""
        self._stop_if_cancelled(call)
        if not await self._until_cancelled(self._sleep(seconds)):
            raise RequestCancelled(call.endpoint, call.sent)

    async def _until_cancelled(self, work: Awaitable[Any]) -> bool:
        """Await ``work`` unless the cancel event comes first; True if it finished."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._cancel.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            task.result()  # its own exception, if any
            return True
        return False

    def _error(
        self,
        status: int,
        headers: httpx.Headers,
        body: bytes,
        endpoint: str,
        host: str,
        list_id: str | None,
        action: str,
        searched: Sequence[str],
    ) -> Exception:
        """The exception for a non-2xx answer: Retryable for 429/5xx, else final."""
        errors = [(f, self._auth.scrub(m)) for f, m in _sendgrid_errors(body)]
        quoted = "; ".join(m for _f, m in errors) or None
        if status == 429:
            return Retryable(
                "rate_limit",
                "rate limited (429)",
                endpoint=endpoint,
                host=host,
                status=status,
                sendgrid_message=quoted,
                wait_hint=rate_limit_wait(headers),
            )
        if status >= 500:
            return Retryable(
                "transient",
                f"server error {status}",
                endpoint=endpoint,
                host=host,
                status=status,
                sendgrid_message=quoted,
            )
        if status == 401:
            return BadApiKey(quoted)
        if status == 403:
            return MissingScope(action=action or f"call {endpoint}", sendgrid_message=quoted)
        if status == 404 and list_id is not None:
            return ListNotFound(list_id, quoted)
        hint = ""
        if searched and status == 400:
            named = [e for e in searched if quoted and e in quoted.lower()]
            hint = (
                f"Invalid address: {', '.join(named)}."
                if named
                else f"One of the {len(searched)} addresses searched is invalid"
                f" (the first is {searched[0]!r})."
            )
        elif 300 <= status < 400:
            hint = f"It answered with a redirect to {headers.get('location', '?')!r}, not followed."
        return RequestRejected(status, endpoint, errors, hint=hint)


@dataclass(frozen=True, slots=True)
class _Send:
    """What one call sends, the same on every attempt."""

    method: str
    url: str
    params: Mapping[str, str] | None
    content: bytes | None
    headers: Mapping[str, str] | None
    auth: httpx.Auth | None
    cap: int


SEARCH_ENDPOINT = "POST /v3/marketing/contacts/search/emails"


async def _read_capped(response: httpx.Response, cap: int) -> bytes | None:
    """The decoded body, or None as soon as it is known to exceed ``cap`` bytes
    (a declared Content-Length over the cap is refused before reading)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return None
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > cap:
            return None
    return bytes(body)


def _no_proxy_mounts(base: httpx.URL) -> dict[str, httpx.AsyncBaseTransport | None]:
    """Targets that never go through a proxy from the environment.

    Plain http is only ever allowed to this machine (``_check_url``), and a
    plain-http proxy would read the Authorization header in clear; a loopback
    target through a proxy makes no sense either. https targets elsewhere still
    use the environment's proxy, through a CONNECT tunnel (the key stays
    inside TLS). ``None`` tells httpx to connect directly.
    """
    hosts = {"localhost", "127.0.0.1", "[::1]"}
    if _is_loopback(base.host):
        hosts.add(f"[{base.host}]" if ":" in base.host else base.host)
    return {"http://": None, **{f"all://{host}": None for host in sorted(hosts)}}
