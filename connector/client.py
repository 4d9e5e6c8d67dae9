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
import io
import ipaddress
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import orjson

from connector.errors import (
    BadApiKey,
    InsecureURL,
    ListNotFound,
    MissingScope,
    RequestRejected,
    SendGridError,
)
from connector.hosts import EU_URL, GLOBAL_URL
from connector.models import ContactList, CustomField, ImportJob
from connector.retry import Retryable, RetryNotice, RetryPolicy, call_with_retries, rate_limit_wait

__all__ = [
    "EU_URL",
    "GLOBAL_URL",
    "READ_SCOPES",
    "ContactList",
    "CustomField",
    "ImportJob",
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


def _as_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _contact_list(data: Mapping[str, Any]) -> ContactList:
    return ContactList(
        str(data["id"]), str(data.get("name", "")), _as_int(data.get("contact_count"))
    )


def _fields(items: Any) -> list[CustomField]:
    return [
        CustomField(str(f["id"]), str(f["name"]), str(f.get("field_type", "")))
        for f in items or []
        if isinstance(f, dict) and "id" in f and "name" in f
    ]


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


class SendGridClient:
    """The SendGrid calls segsync makes. Use as ``async with SendGridClient(key) as c``.

    ``api_key`` is a string or anything with ``.reveal()`` (``store.secrets.Secret``).
    ``base_url`` is ``GLOBAL_URL``, ``EU_URL`` or a loopback URL (the emulator).
    ``on_retry`` hears about every wait before it starts. ``sleep`` and
    ``max_rate_limit_wait`` exist so tests and demos need not wait for real.
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
    ) -> None:
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

    # -- the calls ----------------------------------------------------------

    async def validate_key(self, required: Sequence[str] = READ_SCOPES) -> list[str]:
        """The key's scopes; ``MissingScope`` naming any of ``required`` it lacks."""
        data = await self._json("GET", "/v3/scopes", action="read the key's own permissions")
        scopes = [str(s) for s in data.get("scopes") or []]
        missing = [s for s in required if s not in scopes]
        if missing:
            raise MissingScope(missing, action="export contacts to lists", status=None)
        return scopes

    async def lists(self, page_size: int = LIST_PAGE_SIZE) -> list[ContactList]:
        """Every list in the account, following ``_metadata.next`` to the last page."""
        found: list[ContactList] = []
        params: dict[str, str] = {"page_size": str(page_size)}
        seen_tokens: set[str] = set()
        while True:
            data = await self._json("GET", "/v3/marketing/lists", params=params)
            found.extend(_contact_list(item) for item in data.get("result") or [])
            next_url = (data.get("_metadata") or {}).get("next")
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
        return int(data.get("contact_count") or 0)

    async def field_definitions(self) -> tuple[list[CustomField], list[CustomField]]:
        """``(custom, reserved)`` field definitions; custom ids differ per account."""
        data = await self._json("GET", "/v3/marketing/field_definitions")
        return _fields(data.get("custom_fields")), _fields(data.get("reserved_fields"))

    async def create_field(self, name: str, field_type: str) -> CustomField:
        body = {"name": name, "field_type": field_type}
        data = await self._json("POST", "/v3/marketing/field_definitions", body=body)
        return CustomField(
            str(data["id"]), str(data.get("name", name)), str(data.get("field_type", field_type))
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
        the same contacts to the same values.
        """
        data = await self._json("PUT", "/v3/marketing/contacts", content=body)
        return str(data["job_id"])

    async def import_status(self, job_id: str) -> ImportJob:
        path = f"/v3/marketing/contacts/imports/{quote(job_id, safe='')}"
        data = await self._json("GET", path)
        results = data.get("results") or {}
        return ImportJob(
            id=str(data.get("id", job_id)),
            status=str(data.get("status", "pending")),
            requested=_as_int(results.get("requested_count")),
            created=_as_int(results.get("created_count")),
            updated=_as_int(results.get("updated_count")),
            deleted=_as_int(results.get("deleted_count")),
            errored=_as_int(results.get("errored_count")),
            errors_url=results.get("errors_url") or None,
        )

    async def download_errors(self, url: str) -> list[tuple[str, str]]:
        """``(email, reason)`` for each row of a job's errors file."""
        target = _check_url(url)
        # The key goes to our API host and SendGrid's own hosts only; an errors
        # file elsewhere (a signed storage URL) is fetched without it.
        host = target.host.lower()
        same_origin = _origin(target) == _origin(self._base)
        send_key = same_origin or host == "sendgrid.com" or host.endswith(".sendgrid.com")
        _status, content = await self._request(
            "GET", str(target), endpoint="GET errors file", authenticated=send_key
        )
        return parse_errors_file(content)

    async def search_emails(self, emails: Iterable[str]) -> dict[str, str]:
        """``{lower-cased email: contact id}`` for the emails SendGrid knows."""
        unique = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        found: dict[str, str] = {}
        for start in range(0, len(unique), SEARCH_CHUNK):
            chunk = unique[start : start + SEARCH_CHUNK]
            data = await self._json(
                "POST",
                "/v3/marketing/contacts/search/emails",
                body={"emails": chunk},
                none_found_ok=True,
                searched=chunk,
            )
            for email, entry in (data.get("result") or {}).items():
                contact = entry.get("contact") if isinstance(entry, dict) else None
                if isinstance(contact, dict) and contact.get("id"):
                    found[str(email).lower()] = str(contact["id"])
        return found

    async def remove_from_list(self, list_id: str, contact_ids: Sequence[str]) -> list[str]:
        """Take contacts off a list (they stay in the account); returns job ids."""
        path = f"/v3/marketing/lists/{quote(list_id, safe='')}/contacts"
        jobs = []
        for start in range(0, len(contact_ids), REMOVE_CHUNK):
            chunk = contact_ids[start : start + REMOVE_CHUNK]
            params = {"contact_ids": ",".join(chunk)}
            data = await self._json("DELETE", path, params=params, list_id=list_id)
            jobs.append(str(data.get("job_id", "")))
        return [j for j in jobs if j]

    async def contact_count(self) -> int:
        data = await self._json("GET", "/v3/marketing/contacts/count")
        return int(data.get("contact_count") or 0)

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
    ) -> dict[str, Any]:
        """One API call answered with a JSON object (``{}`` for an empty answer)."""
        if body is not None:
            content = orjson.dumps(body)
        status, raw = await self._request(
            method,
            path,
            params=params,
            content=content,
            endpoint=f"{method} {path}",
            list_id=list_id,
            action=action,
            none_found_ok=none_found_ok,
            searched=searched,
        )
        if status == 404 and none_found_ok:
            return {}
        if not raw.strip():
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise SendGridError(
                f"SendGrid's answer to {method} {path} ({status}) was not the JSON object"
                " expected; if a proxy sits in between, check that it passes SendGrid's"
                " answers through unchanged.",
                status=status,
            )
        return data

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
    ) -> tuple[int, bytes]:
        """Send with retries; ``(status, body)`` of a 2xx answer, else a SendGridError."""
        headers = {"Content-Type": "application/json"} if content is not None else None
        auth = self._auth if authenticated else None
        host = httpx.URL(url).host or self._host

        async def attempt() -> tuple[int, bytes]:
            failure: Retryable | None = None
            try:
                response = await self._http.request(
                    method, url, params=params, content=content, headers=headers, auth=auth
                )
            except httpx.TimeoutException as exc:
                failure = self._network_failure(f"timed out ({type(exc).__name__})", endpoint, host)
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                reason = self._auth.scrub(str(exc) or type(exc).__name__)
                failure = self._network_failure(reason, endpoint, host)
            if failure is not None:
                raise failure  # outside the except block: no chain to httpx's request
            status, body = response.status_code, response.content
            if 200 <= status < 300 or (status == 404 and none_found_ok):
                return status, body
            error = self._error(
                status, response.headers, body, endpoint, host, list_id, action, searched
            )
            # Drop the answer before raising: its request carries the key, and a
            # traceback printed with locals would show both.
            del response, body
            raise error

        return await call_with_retries(
            attempt, self._policy, on_retry=self._on_retry, sleep=self._sleep
        )

    @staticmethod
    def _network_failure(reason: str, endpoint: str, host: str) -> Retryable:
        return Retryable("transient", reason, endpoint=endpoint, host=host)

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
