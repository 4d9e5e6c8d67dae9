"""Setting up destinations: verify a key and list, record consent, test a connection.

Shared by the command line and the TUI so both check a destination the same
way before anything is saved (the consent wording is in connector/consent.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.client import GLOBAL_URL, RetryNotice, SendGridClient
from connector.errors import MissingScope, SendGridError
from connector.models import Check, ContactList

# A person waits for these answers: give up on retries after this long.
INTERACTIVE_MAX_WAIT = 30.0


async def verify_destination(
    key: Any,
    base_url: str = GLOBAL_URL,
    *,
    list_id: str | None = None,
    create_list: str | None = None,
    on_retry: Callable[[RetryNotice], None] | None = None,
) -> ContactList:
    """Check the key and the list (or create it) before a destination is saved.

    Raises a SendGridError subclass whose message names the problem.
    ``on_retry`` hears of every retry wait, so the caller can say what is
    going on instead of a minute of silence on a refused connection.
    """
    async with SendGridClient(
        key, base_url, on_retry=on_retry, max_total_wait=INTERACTIVE_MAX_WAIT
    ) as client:
        await client.validate_key()
        if create_list:
            for existing in await client.lists():
                if existing.name == create_list:
                    return ContactList(existing.id, existing.name, existing.contact_count)
            created = await client.create_list(create_list)
            return ContactList(created.id, created.name, created.contact_count)
        if not list_id:
            raise ValueError("give a list id or a name for a new list")
        found = await client.get_list(list_id)
        return ContactList(found.id, found.name, found.contact_count)


async def test_connection(
    key: Any,
    base_url: str,
    list_id: str | None,
    on_retry: Callable[[RetryNotice], None] | None = None,
) -> list[Check]:
    """Key, scopes and list, each as a pass/fail line quoting SendGrid's message."""
    checks: list[Check] = []
    try:
        client = SendGridClient(
            key, base_url, on_retry=on_retry, max_total_wait=INTERACTIVE_MAX_WAIT
        )
    except SendGridError as exc:
        return [Check("address", False, str(exc))]
    async with client:
        try:
            scopes = await client.validate_key()
            checks.append(Check("API key", True, "accepted by SendGrid"))
            checks.append(Check("scopes", True, f"{len(scopes)} scopes, marketing access present"))
        except SendGridError as exc:
            name = "scopes" if isinstance(exc, MissingScope) else "API key"
            checks.append(Check(name, False, str(exc)))
            return checks
        if list_id:
            try:
                found = await client.get_list(list_id)
                checks.append(
                    Check(
                        "list", True, f"{found.name!r} with {found.contact_count or 0:,} contacts"
                    )
                )
            except SendGridError as exc:
                checks.append(Check("list", False, str(exc)))
    return checks
