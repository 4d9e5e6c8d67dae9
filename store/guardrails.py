"""Guardrails: the most a single run may change on a list, checked before any request.

Removing people is the act that hurts most when it is wrong (a segment's
predicate typo, a half-loaded profile file), so it is bounded by default:
a run may remove at most 10 % of the list or 1,000 people, whichever is
smaller, unless the destination sets its own limits or the operator allows
more for this one run (``--allow-removals N``, or an explicit confirmation
in the TUI). Adds are unbounded unless the destination sets ``max_adds``
(the volume cap bounds what a run sends in all).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_REMOVALS = 1_000
DEFAULT_MAX_REMOVAL_SHARE = 0.10


@dataclass(frozen=True)
class Guardrails:
    """A destination's limits; None means the default rule (removals) or no limit (adds)."""

    max_removals: int | None = None
    max_removal_share: float | None = None
    max_adds: int | None = None

    def removal_limit(self, list_contacts: int | None) -> int:
        """The most removals one run may make on a list of ``list_contacts``.

        With no size known (a preview without a key) only the count limit applies.
        """
        count = self.max_removals if self.max_removals is not None else DEFAULT_MAX_REMOVALS
        share = (
            self.max_removal_share
            if self.max_removal_share is not None
            else DEFAULT_MAX_REMOVAL_SHARE
        )
        if list_contacts is None:
            return count
        return min(count, int(list_contacts * share))

    def describe(self) -> str:
        """One line for `destinations show` and the TUI."""
        count = self.max_removals if self.max_removals is not None else DEFAULT_MAX_REMOVALS
        share = (
            self.max_removal_share
            if self.max_removal_share is not None
            else DEFAULT_MAX_REMOVAL_SHARE
        )
        adds = f"{self.max_adds:,}" if self.max_adds is not None else "no limit"
        return f"removals: at most {count:,} or {share:.0%} of the list; adds: {adds}"


@dataclass(frozen=True)
class Violation:
    """Which limit a run would break (``max_adds`` or ``removals``), the most
    it allows, and why, in words."""

    kind: str
    limit: int
    message: str


def violation(
    rails: Guardrails,
    *,
    to_add: int,
    to_remove: int,
    list_contacts: int | None,
    allow_removals: int | None = None,
) -> Violation | None:
    """The limit this run would break, or None. ``allow_removals`` lifts the
    removal limit to that many for this run only (the operator saw the number)."""
    if rails.max_adds is not None and to_add > rails.max_adds:
        return Violation(
            "max_adds",
            rails.max_adds,
            f"this run would add {to_add:,} people, over the destination's limit of "
            f"{rails.max_adds:,} adds per run",
        )
    limit = rails.removal_limit(list_contacts)
    if allow_removals is not None:
        limit = max(limit, allow_removals)
    if to_remove > limit:
        size = f" of {list_contacts:,} on the list" if list_contacts is not None else ""
        return Violation(
            "removals",
            limit,
            f"this run would remove {to_remove:,} people{size}, over the limit of {limit:,} "
            f"per run ({rails.describe()}); check the plan, then allow it with "
            f"--allow-removals {to_remove} (or raise the destination's guardrails)",
        )
    return None


def check(
    rails: Guardrails,
    *,
    to_add: int,
    to_remove: int,
    list_contacts: int | None,
    allow_removals: int | None = None,
) -> str | None:
    """Why this run must not start, or None (`violation`'s words)."""
    found = violation(
        rails,
        to_add=to_add,
        to_remove=to_remove,
        list_contacts=list_contacts,
        allow_removals=allow_removals,
    )
    return found.message if found is not None else None
