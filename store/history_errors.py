"""The history's errors, and the checks that raise them, with no database code.

Every command raises or catches these, including the ones that read the
history without SQLAlchemy (`store.history_read`), so they live apart from
both readers: `cli.main` classifies them as the user's to fix (exit 2) by
this module, whichever side raised them. `History` raises them with the same
words (the ``*_not_found`` helpers), so a missing run, plan, destination or
sync reads the same from every command.
"""

from __future__ import annotations

import re


class HistoryError(Exception):
    """A history operation was refused; the message says why (``store.history``
    exports it too)."""


class NotFound(HistoryError, LookupError):
    """No destination or run by that name or id."""


class PlanNotFound(LookupError):
    """No plan with that id (pruned, or never made)."""


class SyncError(Exception):
    """A sync operation was refused; the message says why."""


class SyncNotFound(SyncError, LookupError):
    """No active sync by that name or id."""


class SyncExists(SyncError):
    """An active sync already has that name."""


def sync_not_found(name_or_id: str | int) -> SyncNotFound:
    """The error for a sync that is not there (History's wording too)."""
    return SyncNotFound(f"no sync {name_or_id!r} (see `segsync syncs list`)")


# Names end up in banners, log lines and hook environments: keep them plain.
SYNC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_sync_name(name: str) -> str:
    """The name stripped, or SyncError saying what a name may hold."""
    name = name.strip()
    if not SYNC_NAME.fullmatch(name):
        raise SyncError(
            f"sync name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def destination_not_found(name_or_id: str | int) -> NotFound:
    """The error for a destination that is not there (History's wording too)."""
    what = f"id {name_or_id}" if isinstance(name_or_id, int) else repr(name_or_id)
    return NotFound(f"no destination {what}")


def plan_not_found(plan_id: int) -> PlanNotFound:
    return PlanNotFound(f"no plan {plan_id} (see `segsync plans`)")
