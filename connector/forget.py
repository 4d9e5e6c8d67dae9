"""`segsync forget`: erase one person from every list segsync manages and every local record.

Order matters, each step for a reason:

1. Every active destination's export lock is taken, so no export adds the
   person back or rewrites a ledger or people record while they are erased
   (an export already running makes forget stop before it does anything).
2. The person's salted digest joins ``store.forgotten`` first: from then on
   every plan leaves them out (counted as ``forgotten``) for as long as the
   profile source holds them, even if a later step fails.
3. Each destination's list: membership is read, the person is taken off the
   list if on it (membership only: deleting a contact is the account owner's
   act in SendGrid), and membership is read back before it counts as done
   (`connector.removals.remove_departed`). A destination that cannot be
   reached is reported and the rest goes on.
4. Plans still waiting to be applied that would touch the person are marked
   superseded (they were reviewed with them in), then every local record is
   redacted (`store.redact`) and the state folder searched for any copy left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.client import SendGridClient
from connector.errors import SendGridError
from connector.removals import RemovalOutcome, RemovalSettings, remove_departed
from store import forgotten
from store.redact import (
    DatabaseReport,
    FileReport,
    Matcher,
    data_files,
    find_traces,
    history_databases,
    plans_naming,
    redact_database,
    redact_file,
    redact_text_files,
    remove_stray_temp_files,
    resumable_plan_files,
    token_for,
)

# Forget talks to each destination briefly: an unreachable one is reported
# after a few tries rather than holding every other erasure for minutes.
CLIENT_OPTIONS: dict[str, Any] = {
    "max_attempts": 4,
    "max_total_wait": 20.0,
    "request_deadline": 30.0,
}
REMOVAL_SETTINGS = RemovalSettings(
    concurrency=1, poll_interval=0.25, poll_max_interval=2.0, job_timeout=120.0
)
# Results that leave the person off the list.
DONE = ("removed", "not_on_list", "no_list")
_NOT_FORGET_FILES = ("forgotten.parquet",)


@dataclass(frozen=True)
class ListOutcome:
    """What happened on one destination's list."""

    destination: str
    list_id: str | None
    result: str  # removed | not_on_list | no_list | not_removed | unreachable
    detail: str = ""

    @property
    def done(self) -> bool:
        return self.result in DONE


@dataclass
class ForgetReport:
    token: str
    lists: list[ListOutcome] = field(default_factory=list)
    databases: list[DatabaseReport] = field(default_factory=list)
    files: list[FileReport] = field(default_factory=list)
    plans_superseded: list[int] = field(default_factory=list)
    temp_files_removed: list[Path] = field(default_factory=list)  # left by a killed writer
    text_files: list[Path] = field(default_factory=list)  # logs and the like, rewritten
    traces: list[Path] = field(default_factory=list)  # files still holding the address

    @property
    def complete(self) -> bool:
        """Off every list and out of every local file."""
        return all(o.done for o in self.lists) and not self.traces


def forget_person(
    state: Path,
    email: str,
    *,
    client_factory: Callable[..., SendGridClient] = SendGridClient,
) -> ForgetReport:
    """Erase ``email`` (steps in the module docstring); returns what was done.

    Raises ``ExportInProgress`` (nothing done) when an export to a destination
    is running, ``RedactionIncomplete`` when another program keeps the history's
    write-ahead log from being emptied (run again once it is closed).
    """
    from store.history import History
    from store.locks import export_lock
    from store.paths import history_path
    from store.secrets import KeyStore

    state = Path(state)
    matcher = Matcher(email)
    digest = forgotten.digest(forgotten.salt(state), matcher.email)
    report = ForgetReport(token=token_for(digest))
    db_path = history_path(state)
    history = History(db_path)
    try:
        destinations = history.list_destinations()
        with contextlib.ExitStack() as locks:
            for dest in destinations:
                locks.enter_context(export_lock(state, dest.id, dest.name))
            forgotten.add(state, [digest])
            report.lists = asyncio.run(
                remove_from_lists(destinations, KeyStore(state), matcher.email, client_factory)
            )
            ready = [p.id for p in history.list_plans(limit=1_000_000) if p.status == "ready"]
            report.plans_superseded = plans_naming(state, ready, matcher)
            for plan_id in report.plans_superseded:
                history.mark_plan(plan_id, "superseded")
            history.close()  # the database is rewritten below, by its file
            resumable = resumable_plan_files(state, db_path)
            for path in data_files(state):
                if path.name in _NOT_FORGET_FILES:
                    continue
                done = redact_file(state, path, matcher, report.token, resumable)
                if done is not None:
                    report.files.append(done)
            report.temp_files_removed = remove_stray_temp_files(state, matcher)
            report.text_files = redact_text_files(state, matcher, report.token)
            for path in history_databases(state):
                report.databases.append(redact_database(path, matcher, report.token))
            report.traces = find_traces(state, matcher.email)
    finally:
        history.close()
    return report


async def remove_from_lists(
    destinations: Sequence[Any],
    keys: Any,
    email: str,
    client_factory: Callable[..., SendGridClient] = SendGridClient,
) -> list[ListOutcome]:
    """Take ``email`` off each destination's list, confirmed; one outcome each.

    Destinations that share a list (same API host and list id) are asked once.
    """
    outcomes: list[ListOutcome] = []
    seen: dict[tuple[str, str], ListOutcome] = {}
    for dest in destinations:
        where = (dest.base_url.rstrip("/"), dest.list_id or "")
        if dest.list_id and where in seen:
            first = seen[where]
            same = f"same list as {first.destination}"
            outcomes.append(ListOutcome(dest.name, dest.list_id, first.result, same))
            continue
        outcome = await _remove_from_list(dest, keys, email, client_factory)
        seen[where] = outcome
        outcomes.append(outcome)
    return outcomes


async def _remove_from_list(
    dest: Any, keys: Any, email: str, client_factory: Callable[..., SendGridClient]
) -> ListOutcome:
    if not dest.list_id:
        return ListOutcome(dest.name, None, "no_list", "the destination has no list yet")
    try:
        key = await asyncio.to_thread(keys.load, dest.id, dest.api_key_env, dest.name)
    except Exception as exc:  # KeyNotFound and whatever the keyring raises
        return ListOutcome(dest.name, dest.list_id, "unreachable", f"no API key: {exc}")
    try:
        async with client_factory(key, dest.base_url, **CLIENT_OPTIONS) as client:
            member = (await client.memberships([email])).get(email)
            if member is None:
                return ListOutcome(
                    dest.name, dest.list_id, "not_on_list", "SendGrid has no contact with it"
                )
            if dest.list_id not in member.list_ids:
                return ListOutcome(dest.name, dest.list_id, "not_on_list", "not on the list")
            outcome = RemovalOutcome()
            await remove_departed(
                client,
                dest.list_id,
                [email],
                run_id=0,
                settings=REMOVAL_SETTINGS,
                cancel=asyncio.Event(),
                emit=lambda _event: None,
                outcome=outcome,
            )
    except (SendGridError, ValueError) as exc:
        return ListOutcome(dest.name, dest.list_id, "unreachable", str(exc))
    except Exception as exc:  # whatever else: this list is not done, the others still are
        what = f"{type(exc).__name__}: {exc}"
        return ListOutcome(dest.name, dest.list_id, "unreachable", what)
    if email in outcome.removed:
        return ListOutcome(
            dest.name,
            dest.list_id,
            "removed",
            "confirmed by reading membership back; the contact stays in the account",
        )
    why = outcome.failed.get(email, "the removal was not attempted")
    return ListOutcome(dest.name, dest.list_id, "not_removed", why)
