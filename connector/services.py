"""The actions the command line and the TUI both offer, written once.

`cli/` and `tui/local_backend.py` used to orchestrate each action twice
(adding a destination, saving a mapping and creating its fields, what an
export needs before it may send, the JSON of destinations) and the
two copies drifted: the CLI's `--suggest` mapped no custom fields while the
TUI's mapped three. Both now call these functions and only translate the
result into their own words (a printed line, a dialog).

Every function blocks (SQLite, DuckDB, keyring, HTTP on a private event loop)
and takes an optional ``on_retry`` so the caller can say, live, what is being
retried. Errors the user can fix are `ServiceError` (or SendGrid's own
`SendGridError`), whose message names the problem and the fix in the
command line's words; the TUI shows the same message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from connector.client import GLOBAL_URL, RetryNotice, SendGridClient
from connector.consent import CONSENT_STATEMENT, consent_filter_refusal
from connector.destinations import verify_destination
from connector.errors import SendGridError
from connector.models import ContactList
from store.plan import RESERVED_FIELD_LIMITS, MappingError, validate_mapping
from store.records import FieldMapping

__all__ = [
    "CONSENT_STATEMENT",
    "MissingCustomFields",
    "OnRetry",
    "SavedMapping",
    "ServiceError",
    "account_custom_fields",
    "account_lists",
    "consent_filter_refusal",
    "field_type_for",
    "merge_mapping",
    "save_destination",
    "save_mapping",
    "suggest_mapping_for",
]

T = TypeVar("T")
OnRetry = Callable[[RetryNotice], None]

# A question asked by a person waits for this long at most on retries (the
# engine's uploads keep the client's longer default).
INTERACTIVE_MAX_WAIT = 30.0


class ServiceError(Exception):
    """A problem the user can fix; the message says what and how."""


class MissingCustomFields(ServiceError):
    """The mapping names custom fields the SendGrid account does not have."""

    def __init__(self, destination: str, missing: Sequence[str]) -> None:
        self.missing = tuple(missing)
        names = ", ".join(repr(m) for m in self.missing)
        super().__init__(
            f"custom field(s) {names} do not exist on the SendGrid account of "
            f"{destination!r}: create them (`segsync map {destination} ... --create-fields`, "
            "or in SendGrid), or map other fields"
        )


def _call(
    key: Any,
    base_url: str,
    call: Callable[[SendGridClient], Awaitable[T]],
    on_retry: OnRetry | None,
) -> T:
    """One client session on a private event loop (callers are synchronous)."""

    async def main() -> T:
        async with SendGridClient(
            key, base_url, on_retry=on_retry, max_total_wait=INTERACTIVE_MAX_WAIT
        ) as client:
            return await call(client)

    return asyncio.run(main())


# -- destinations ---------------------------------------------------------------


def account_lists(
    key: Any, base_url: str = GLOBAL_URL, on_retry: OnRetry | None = None
) -> list[ContactList]:
    """The account's contact lists (id, name, contacts), to find a list id."""
    lists = _call(key, base_url, lambda c: c.lists(), on_retry)
    return sorted(lists, key=lambda x: (x.name.lower(), x.id))


def save_destination(
    history: Any,
    keys: Any,
    *,
    name: str,
    key: Any,
    base_url: str = GLOBAL_URL,
    list_id: str | None = None,
    create_list: str | None = None,
    cap: int | None = None,
    api_key_env: str | None = None,
    store_key: bool = True,
    destination_id: int | None = None,
    agreed_by: str | None = None,
    on_retry: OnRetry | None = None,
) -> tuple[Any, ContactList]:
    """Verify key and list with SendGrid (creating the list when asked), then
    save the destination; nothing is saved if SendGrid says no.

    ``api_key_env``: the key is read from that variable at every run and not
    stored. ``store_key``: keep ``key`` in the keyring (or the 0600 key file).
    ``destination_id``: update that destination instead of adding one.
    ``agreed_by``: record the data-privacy statement as agreed by this operator.
    Returns the saved destination and the list SendGrid confirmed.
    """
    if cap is not None and cap < 1:
        raise ServiceError("the cap must be at least 1")
    if not list_id and not create_list:
        raise ServiceError("give a list id (`segsync lists` shows them) or a name for a new list")
    found = asyncio.run(
        verify_destination(
            key, base_url, list_id=list_id, create_list=create_list, on_retry=on_retry
        )
    )
    values: dict[str, Any] = {
        "name": name,
        "list_id": found.id,
        "list_name": found.name,
        "base_url": base_url,
    }
    if cap is not None:
        values["cap"] = cap
    if destination_id is None:
        dest = history.add_destination(
            api_key_env=api_key_env,
            key_storage="env" if api_key_env and not store_key else "pending",
            **values,
        )
    else:
        dest = history.update_destination(destination_id, **values)
    if store_key and api_key_env is None:
        storage = keys.save(dest.id, key)
        dest = history.update_destination(dest.id, key_storage=storage, api_key_env=None)
    if agreed_by is not None:
        dest = history.record_consent(dest.id, agreed_by, CONSENT_STATEMENT)
    return dest, found


# -- mapping ----------------------------------------------------------------------


def account_custom_fields(
    key: Any, base_url: str, on_retry: OnRetry | None = None
) -> list[tuple[str, str]]:
    """The account's custom fields as (name, type), sorted by name."""
    custom, _reserved = _call(key, base_url, lambda c: c.field_definitions(), on_retry)
    return sorted(((f.name, f.field_type) for f in custom), key=lambda x: x[0].lower())


def _key(keys: Any, dest: Any) -> Any:
    return keys.load(dest.id, dest.api_key_env, dest.name)


def suggest_mapping_for(
    workspace: Any,
    keys: Any | None = None,
    dest: Any | None = None,
    custom_fields: Iterable[str] | None = None,
    on_retry: OnRetry | None = None,
) -> FieldMapping:
    """The one suggestion both the CLI's `--suggest` and the TUI's `u` make:
    reserved fields and consent by column name, and the account's custom fields
    that have a column of the same name. The custom fields are fetched when the
    caller has not (offline, or without a key, the suggestion has none)."""
    from store.plan import suggest_mapping

    if custom_fields is None and keys is not None and dest is not None:
        try:
            fields = account_custom_fields(_key(keys, dest), dest.base_url, on_retry)
            custom_fields = [name for name, _type in fields]
        except (SendGridError, LookupError):
            custom_fields = []
    return suggest_mapping(workspace.columns(), custom_fields or ())


def merge_mapping(
    current: FieldMapping | None,
    pairs: Mapping[str, str] | None = None,
    *,
    unset: Iterable[str] = (),
    consent_column: str | None = None,
    no_consent_filter: bool | None = None,
    replace_all: bool = False,
    suggested: FieldMapping | None = None,
) -> FieldMapping:
    """A new mapping from the saved one and a change to it.

    ``pairs`` (FIELD -> COLUMN) are added to or replace what is saved; nothing
    else is dropped unless ``replace_all`` (start over) or named in ``unset``
    (fields, or ``consent`` for the consent column). ``suggested`` fills only
    fields still unmapped. Naming a consent column ends a recorded
    ``no_consent_filter``; asking for ``no_consent_filter`` drops the column.
    """
    base = None if replace_all else current
    if suggested is not None:
        base = base.filled_from(suggested) if base is not None else suggested
    email = base.email if base is not None else ""
    reserved = dict(base.reserved) if base is not None else {}
    custom = dict(base.custom) if base is not None else {}
    consent = base.consent_column if base is not None else None
    waived = base.no_consent_filter if base is not None else False
    for fld in unset:
        name = fld.strip()
        if name == "email":
            raise ServiceError("email cannot be unset: it is how SendGrid identifies a contact")
        if name in ("consent", "consent_column"):
            consent = None
            continue
        if name not in reserved and name not in custom:
            raise ServiceError(f"{name!r} is not mapped, so it cannot be unset")
        reserved.pop(name, None)
        custom.pop(name, None)
    for fld, col in (pairs or {}).items():
        if fld == "email":
            email = col
        elif fld in RESERVED_FIELD_LIMITS:
            reserved[fld] = col
        else:
            custom[fld] = col
    if consent_column is not None:
        consent, waived = consent_column, False
    if no_consent_filter is not None:
        waived = no_consent_filter
        if waived:
            consent = None
    return FieldMapping(
        email=email,
        reserved=reserved,
        custom=custom,
        consent_column=consent,
        no_consent_filter=waived,
    )


def field_type_for(column_type: str) -> str:
    """The SendGrid field type for a profile column's DuckDB type."""
    kind = column_type.upper()
    if any(t in kind for t in ("INT", "DOUBLE", "DECIMAL", "FLOAT", "REAL", "NUMERIC")):
        return "Number"
    if "DATE" in kind or "TIMESTAMP" in kind:
        return "Date"
    return "Text"


@dataclass(frozen=True)
class SavedMapping:
    """What `save_mapping` did: the mapping saved, the custom fields it created
    on SendGrid, and whether the custom fields could be checked at all
    (``unchecked``: the reason, e.g. the account could not be reached)."""

    mapping: FieldMapping
    created: tuple[str, ...] = ()
    unchecked: str | None = None


def save_mapping(
    history: Any,
    keys: Any,
    workspace: Any,
    dest: Any,
    mapping: FieldMapping,
    *,
    create_fields: bool = False,
    on_retry: OnRetry | None = None,
) -> SavedMapping:
    """Check a mapping against the profiles and the SendGrid account, then save it.

    Columns must exist in the workspace and custom fields on the account: a
    missing field is refused with `MissingCustomFields` unless
    ``create_fields``, which creates it typed from its column. When the account
    cannot be reached the mapping is still saved and ``unchecked`` says why
    (the export checks again before sending).
    """
    if not mapping.email:
        raise ServiceError(
            "the mapping needs email=COLUMN: the email is how SendGrid identifies a contact"
        )
    columns = workspace.columns()
    try:
        validate_mapping(mapping, columns)
    except MappingError as exc:
        raise ServiceError(str(exc)) from None
    created: tuple[str, ...] = ()
    unchecked: str | None = None
    if mapping.custom:
        types = {c.name: c.type for c in columns}
        try:
            created = _ensure_fields(keys, dest, mapping, types, create_fields, on_retry)
        except LookupError as exc:  # no key stored: cannot ask the account
            if create_fields:
                raise ServiceError(str(exc)) from None
            unchecked = str(exc)
        except SendGridError as exc:
            if create_fields:
                raise
            unchecked = str(exc)
    history.set_mapping(dest.id, mapping)
    return SavedMapping(mapping, created, unchecked)


def _ensure_fields(
    keys: Any,
    dest: Any,
    mapping: FieldMapping,
    column_types: Mapping[str, str],
    create: bool,
    on_retry: OnRetry | None,
) -> tuple[str, ...]:
    async def check(client: SendGridClient) -> tuple[str, ...]:
        custom, _reserved = await client.field_definitions()
        existing = {f.name.lower() for f in custom}
        missing = [n for n in mapping.custom if n.lower() not in existing]
        if missing and not create:
            raise MissingCustomFields(dest.name, missing)
        for name in missing:
            column_type = column_types.get(mapping.custom[name], "")
            await client.create_field(name, field_type_for(column_type))
        return tuple(missing)

    return _call(_key(keys, dest), dest.base_url, check, on_retry)


# -- before an export ------------------------------------------------------------------
