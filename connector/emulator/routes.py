"""SendGrid's routes in the emulator: one small function per endpoint.

Each handler turns a parsed `Request` into `(status, json)` using the account
in `emu.state`; SendGrid's refusals are `ApiError`s raised by the state and
turned into SendGrid's error bodies by the server. Response shapes follow
real responses (sendgrid-api.md) and are checked against SendGrid's OpenAPI
documents by tests/conformance.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from connector.emulator.rules import (
    MAX_BODY_BYTES,
    READ_SCOPE,
    RESERVED_FIELDS,
    WRITE_SCOPE,
    ApiError,
    decode_page_token,
    encode_page_token,
)

if TYPE_CHECKING:
    from connector.emulator.server import Emulator


@dataclass(frozen=True)
class Request:
    """What a route handler needs to know about one request."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    params: dict[str, str]
    size: int  # declared body size (a huge body is not read, but still counts)
    scopes: tuple[str, ...] = ()

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "The JSON you have submitted cannot be parsed.") from exc

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


Handler = Callable[["Emulator", Request], tuple[int, Any]]


@dataclass(frozen=True)
class Route:
    """One SendGrid endpoint: its path template exactly as the OpenAPI documents
    spell it (the conformance tests look operations up by it) and the scope it needs."""

    method: str
    template: str
    scope: str | None
    handler: Handler
    pattern: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))


# --------------------------------------------------------------------- views
_CONTACT_DEFAULTS = {
    name: ""
    for name in (
        "address_line_1",
        "address_line_2",
        "city",
        "country",
        "email",
        "first_name",
        "last_name",
        "postal_code",
        "state_province_region",
        "phone_number",
        "whatsapp",
        "line",
        "facebook",
        "unique_name",
    )
}


def contact_view(emu: Emulator, record: dict[str, Any]) -> dict[str, Any]:
    """A contact as SendGrid returns it: every reserved field, custom fields by NAME."""
    names = {f["id"]: f["name"] for f in emu.state.fields}
    view: dict[str, Any] = dict(_CONTACT_DEFAULTS)
    view.update({k: v for k, v in record.items() if k != "custom_fields"})
    view.setdefault("alternate_emails", [])
    view["segment_ids"] = []
    view["custom_fields"] = {
        names.get(fid, fid): value for fid, value in (record.get("custom_fields") or {}).items()
    }
    view["_metadata"] = {"self": f"{emu.url}/v3/marketing/contacts/{record['id']}"}
    return view


def list_view(emu: Emulator, lst: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": lst["id"],
        "name": lst["name"],
        "contact_count": lst["contact_count"],
        "_metadata": {"self": f"{emu.url}/v3/marketing/lists/{lst['id']}"},
    }


# -------------------------------------------------------------------- routes
def get_scopes(emu: Emulator, req: Request) -> tuple[int, Any]:
    return 200, {"scopes": list(req.scopes)}


def get_lists(emu: Emulator, req: Request) -> tuple[int, Any]:
    raw_size = req.arg("page_size") or "100"
    try:
        page_size = int(raw_size)
    except ValueError:
        page_size = 0
    if not 1 <= page_size <= 1000:
        raise ApiError(400, "page_size must be between 1 and 1000", "page_size")
    token = req.arg("page_token")
    offset = decode_page_token(token) if token else 0
    lists = emu.state.all_lists()
    page = lists[offset : offset + page_size]
    base = f"{emu.url}/v3/marketing/lists?page_size={page_size}"
    meta: dict[str, Any] = {"self": f"{base}&page_token={quote(token or '')}", "count": len(lists)}
    if offset + page_size < len(lists):
        meta["next"] = f"{base}&page_token={encode_page_token(offset + page_size)}"
    if offset > 0:
        meta["prev"] = f"{base}&page_token={encode_page_token(max(0, offset - page_size))}"
    return 200, {"result": [list_view(emu, lst) for lst in page], "_metadata": meta}


def post_list(emu: Emulator, req: Request) -> tuple[int, Any]:
    payload = req.json()
    name = payload.get("name") if isinstance(payload, dict) else None
    lst = emu.state.create_list(name)
    return 201, list_view(emu, lst | {"contact_count": 0})


def get_list(emu: Emulator, req: Request) -> tuple[int, Any]:
    lst = emu.state.get_list(req.params["id"])
    view = list_view(emu, lst)
    if req.arg("contact_sample") == "true":
        # Real responses carry an array of up to 50 contacts; the lists
        # document describes a single object (see ALLOWED_DEVIATIONS).
        view["contact_sample"] = [
            contact_view(emu, c) for c in emu.state.list_sample(req.params["id"])
        ]
    return 200, view


def get_list_count(emu: Emulator, req: Request) -> tuple[int, Any]:
    count = emu.state.get_list(req.params["id"])["contact_count"]
    return 200, {"contact_count": count, "billable_count": count}


def delete_list_contacts(emu: Emulator, req: Request) -> tuple[int, Any]:
    raw = req.arg("contact_ids") or ""
    ids = [i for i in raw.split(",") if i]
    return 202, {"job_id": emu.state.submit_removal(req.params["id"], ids)}


def put_contacts(emu: Emulator, req: Request) -> tuple[int, Any]:
    if req.size > MAX_BODY_BYTES:
        # Unconfirmed: SendGrid's exact answer to an oversized body.
        raise ApiError(413, f"request body must be at most {MAX_BODY_BYTES} bytes")
    if emu.faults.discard:
        return 202, {"job_id": emu.state.submit_discarded(req.body.count(b'"email"'))}
    list_ids, contacts = emu.state.validate_upsert(req.json())
    return 202, {"job_id": emu.state.submit_upsert(list_ids, contacts)}


def get_import(emu: Emulator, req: Request) -> tuple[int, Any]:
    job = emu.state.job(req.params["id"])
    with emu.state.lock:
        status = job.status()
        results: dict[str, Any] = {"requested_count": job.requested_count}
        if job.processed:
            results |= {
                "created_count": job.created_count,
                "updated_count": job.updated_count,
                "deleted_count": job.deleted_count,
                "errored_count": job.errored_count,
            }
            if job.errored_count and status != "pending":
                results["errors_url"] = f"{emu.url}/_emulator/errors/{job.id}"
        body: dict[str, Any] = {
            "id": job.id,
            "status": status,
            "job_type": job.job_type,
            "results": results,
            "started_at": job.started_at,
        }
        if status != "pending" and job.finished_at:
            body["finished_at"] = job.finished_at
    return 200, body


def search_emails(emu: Emulator, req: Request) -> tuple[int, Any]:
    result = emu.state.search_emails(req.json())
    for entry in result.values():
        if "contact" in entry:
            entry["contact"] = contact_view(emu, entry["contact"])
    return 200, {"result": result}


def get_contact_count(emu: Emulator, req: Request) -> tuple[int, Any]:
    count = emu.state.contact_count()
    return 200, {"contact_count": count, "billable_count": count}


def get_fields(emu: Emulator, req: Request) -> tuple[int, Any]:
    with emu.state.lock:
        custom = [dict(f) for f in emu.state.fields]
    return 200, {
        "custom_fields": custom,
        "reserved_fields": RESERVED_FIELDS,
        "_metadata": {"self": f"{emu.url}/v3/marketing/field_definitions"},
    }


def post_field(emu: Emulator, req: Request) -> tuple[int, Any]:
    payload = req.json()
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object")
    definition = emu.state.create_field(payload.get("name"), payload.get("field_type"))
    meta = {"self": f"{emu.url}/v3/marketing/field_definitions/{definition['id']}"}
    return 200, definition | {"_metadata": meta}


ROUTES = [
    Route("GET", "/v3/scopes", None, get_scopes),
    Route("GET", "/v3/marketing/lists", READ_SCOPE, get_lists),
    Route("POST", "/v3/marketing/lists", WRITE_SCOPE, post_list),
    Route("GET", "/v3/marketing/lists/{id}", READ_SCOPE, get_list),
    Route("GET", "/v3/marketing/lists/{id}/contacts/count", READ_SCOPE, get_list_count),
    Route("DELETE", "/v3/marketing/lists/{id}/contacts", WRITE_SCOPE, delete_list_contacts),
    Route("PUT", "/v3/marketing/contacts", WRITE_SCOPE, put_contacts),
    Route("GET", "/v3/marketing/contacts/count", READ_SCOPE, get_contact_count),
    Route("GET", "/v3/marketing/contacts/imports/{id}", READ_SCOPE, get_import),
    Route("POST", "/v3/marketing/contacts/search/emails", READ_SCOPE, search_emails),
    Route("GET", "/v3/marketing/field_definitions", READ_SCOPE, get_fields),
    Route("POST", "/v3/marketing/field_definitions", WRITE_SCOPE, post_field),
]


def find_route(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """The route for a request, its path parameters, and whether the path exists at all."""
    path_known = False
    for route in ROUTES:
        match = route.pattern.match(path)
        if match:
            path_known = True
            if route.method == method:
                return route, match.groupdict(), True
    return None, {}, path_known
