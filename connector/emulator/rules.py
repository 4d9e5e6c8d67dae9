"""SendGrid's rules for the Marketing Contacts API, as the emulator applies them.

Limits, scopes, reserved fields, what makes a contact or an email valid, and
SendGrid's error type. Facts come from ../shared/docs/sendgrid-api.md and the
OpenAPI documents; a choice no source settles is marked "unconfirmed".
"""

from __future__ import annotations

import base64
import functools
import re
from typing import Any

MAX_CONTACTS_PER_REQUEST = 30_000
MAX_BODY_BYTES = 6_000_000  # SendGrid says "6MB"; the stricter decimal reading is used
MAX_LISTS = 1_000
MAX_CUSTOM_FIELDS = 500
MAX_SEARCH_EMAILS = 100
CONTACT_SAMPLE_SIZE = 50

READ_SCOPE = "marketing.read"
# Which scope gates marketing writes is unconfirmed (see the API notes); the
# emulator uses this one so a read-only key gets SendGrid's 403 on writes.
WRITE_SCOPE = "marketing.write"
FULL_SCOPES = ("marketing.automation.read", READ_SCOPE, WRITE_SCOPE, "scopes.read")
READ_ONLY_SCOPES = (READ_SCOPE, "scopes.read")

RESERVED_FIELD_LIMITS: dict[str, int | None] = {
    "first_name": 50,
    "last_name": 50,
    "address_line_1": 100,
    "address_line_2": 100,
    "city": 60,
    "state_province_region": 50,
    "country": 50,
    "postal_code": None,
    "phone_number": None,
    "email": 254,
    "phone_number_id": None,
    "external_id": 254,
    "anonymous_id": 254,
    "whatsapp": None,
    "line": None,
    "facebook": None,
    "unique_name": None,
}
IDENTIFIERS = ("email", "phone_number_id", "external_id", "anonymous_id")
CONTACT_KEYS = frozenset(RESERVED_FIELD_LIMITS) | {"alternate_emails", "custom_fields"}

# The reserved field definitions SendGrid lists next to the custom ones.
RESERVED_FIELDS: list[dict[str, Any]] = [
    {"id": f"_rf{i}_{t}", "name": name, "field_type": {"T": "Text", "D": "Date"}[t]}
    | ({"read_only": True} if ro else {})
    for i, (name, t, ro) in enumerate(
        [
            ("first_name", "T", False),
            ("last_name", "T", False),
            ("email", "T", False),
            ("alternate_emails", "T", False),
            ("address_line_1", "T", False),
            ("address_line_2", "T", False),
            ("city", "T", False),
            ("state_province_region", "T", False),
            ("postal_code", "T", False),
            ("country", "T", False),
            ("phone_number", "T", False),
            ("whatsapp", "T", False),
            ("line", "T", False),
            ("facebook", "T", False),
            ("unique_name", "T", False),
            ("email_domains", "T", True),
            ("last_clicked", "D", True),
            ("last_opened", "D", True),
            ("last_emailed", "D", True),
            ("singlesend_id", "T", True),
            ("automation_id", "T", True),
            ("created_at", "D", True),
            ("updated_at", "D", True),
            ("contact_id", "T", True),
        ]
    )
]

FIELD_TYPES = {"Text": "T", "Number": "N", "Date": "D"}
FIELD_PREFIX = {"Text": "e", "Number": "w", "Date": "d"}
FIELD_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Deliberately "reasonable", not RFC 5322: what SendGrid rejects in practice
# (no spaces, one @, a dotted domain with a 2+ letter TLD, no empty labels, no
# hyphen at either end of a label). Possessive quantifiers: no part can give
# back what it matched (atoms never contain the separators), so the match never
# backtracks; it runs on every contact of every upsert.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]++"
_LABEL = r"[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+"
EMAIL_RE = re.compile(rf"{_ATOM}(?:\.{_ATOM})*+@(?:{_LABEL}\.)++[A-Za-z]{{2,}}")
_DATE_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?|\d{1,2}/\d{1,2}/\d{4})$"
)


@functools.lru_cache(maxsize=8192)
def _is_date(value: str) -> bool:
    """Cached: a list's date values repeat (signup days), and the regex is half the row's cost."""
    return _DATE_RE.match(value) is not None


class ApiError(Exception):
    """A request SendGrid would refuse: status plus SendGrid's error body."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        return {"errors": [{"field": self.field, "message": self.message}]}


def check_contacts(contacts: list[Any], known_fields: set[str]) -> None:
    """Raise SendGrid's 400 for the first malformed contact, or for unknown custom field ids.

    A fast pass over every contact (it runs on each of a million contacts in the
    benchmark); a contact that fails it is explained in detail by `_explain_contact`.
    """
    limits = _STRING_LIMITS
    bad_fields: set[str] = set()
    for n, contact in enumerate(contacts):
        if type(contact) is not dict:
            _explain_contact(n, contact)
        ok = bool(
            contact.get("email")
            or contact.get("phone_number_id")
            or contact.get("external_id")
            or contact.get("anonymous_id")
        )
        for name, value in contact.items():
            limit = limits.get(name)
            if limit is None:
                if name == "custom_fields":
                    if type(value) is not dict:
                        ok = False
                    elif not value.keys() <= known_fields:
                        bad_fields.update(value.keys() - known_fields)
                elif name != "alternate_emails" or not _valid_alternates(value):
                    ok = False
            elif type(value) is not str or len(value) > limit:
                ok = False
        if not ok:
            _explain_contact(n, contact)
    if bad_fields:
        raise ApiError(
            400,
            f"invalid custom field ids supplied - {', '.join(sorted(bad_fields))}",
            "custom_fields",
        )


_STRING_LIMITS = {name: limit or 1 << 62 for name, limit in RESERVED_FIELD_LIMITS.items()}


def _valid_alternates(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= 5
        and all(isinstance(e, str) and len(e) <= 254 for e in value)
    )


def _explain_contact(n: int, contact: Any) -> None:
    """Raise the 400 that says what is wrong with contact number `n`."""
    where = f"contacts[{n}]"
    if not isinstance(contact, dict):
        raise ApiError(400, "each contact must be an object", where)
    unknown = contact.keys() - CONTACT_KEYS
    if unknown:
        name = sorted(unknown)[0]
        raise ApiError(400, f"unknown field '{name}'", f"{where}.{name}")
    if not any(contact.get(i) for i in IDENTIFIERS):
        raise ApiError(
            400,
            "contact must have at least one identifier: "
            "email, phone_number_id, external_id or anonymous_id",
            where,
        )
    for name, value in contact.items():
        if name == "custom_fields":
            if not isinstance(value, dict):
                raise ApiError(400, "custom_fields must be an object", f"{where}.custom_fields")
        elif name == "alternate_emails":
            if not _valid_alternates(value):
                raise ApiError(
                    400, "alternate_emails must be an array of at most 5 emails", f"{where}.{name}"
                )
        elif not isinstance(value, str):
            raise ApiError(400, f"{name} must be a string", f"{where}.{name}")
        elif len(value) > _STRING_LIMITS[name]:
            limit = _STRING_LIMITS[name]
            raise ApiError(400, f"{name} must be at most {limit} characters", f"{where}.{name}")


def custom_value_problem(custom: dict[str, Any], types: dict[str, str]) -> str | None:
    """Why a custom field value does not fit its field's type (a row error), if it does not.

    Empty strings and nulls fit every type; numbers fit Text and Number; text fits
    Text, a Number field if it parses as a number, a Date field if it looks like a
    date. Dispatches on the exact type first: it runs on every contact of an
    upsert, a million times in the benchmark.
    """
    for fid, value in custom.items():
        kind = types.get(fid)
        vtype = type(value)
        if vtype is str:
            if not value or kind is None or kind == "Text":
                continue
            if kind == "Date":
                if not _is_date(value):
                    return f"invalid value for Date field {fid}"
            elif kind == "Number":
                try:
                    float(value)
                except ValueError:
                    return f"invalid value for Number field {fid}"
        elif vtype is float or vtype is int:
            if kind == "Date":
                return f"invalid value for Date field {fid}"
        elif value is not None:  # booleans, arrays, objects
            shown = kind if kind in ("Number", "Date") else "Text"
            return f"invalid value for {shown} field {fid}"
    return None


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = raw.partition(":")
        if prefix != "o":
            raise ValueError(raw)
        return int(number)
    except ValueError as exc:
        raise ApiError(400, "invalid page_token", "page_token") from exc
