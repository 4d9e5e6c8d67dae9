"""What a preflight found: one problem (or warning) an export would meet.

Kept free of heavy imports, like `connector.consent`, so the TUI renders the
same record the connector computes (`connector.preflight.export_findings`)
without loading DuckDB, SQLAlchemy or httpx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FindingKind = Literal[
    "mapping",  # no saved mapping, or a mapped column missing from the profiles
    "consent_choice",  # no consent column and no recorded choice to send without one
    "no_consent_filter",  # warning: the recorded choice to send everyone selected
    "segments",  # none picked, unknown, or a predicate that fails
    "privacy",  # the destination's data-privacy acknowledgment is not recorded
    "destination",  # the key, its scopes or the list, as SendGrid answered
    "unreachable",  # SendGrid could not be asked (network, outage)
    "custom_fields",  # mapped custom fields missing on the account
    "field_types",  # warning: a column whose values a custom field's type rejects
    "cap",  # the destination's volume cap
    "max_adds",  # the destination's most adds per run
    "removals",  # the removal guardrail (mirror mode)
    "drift",  # what the plan was computed from changed since: apply would refuse it
]


@dataclass(frozen=True)
class Finding:
    """``title``: one short line (what the TUI lists); ``message``: the whole
    explanation with the command line's fix. ``blocking``: the export would be
    refused before its first request; otherwise a warning it would go on with.
    ``names``: what the finding is about (missing custom fields, ...);
    ``amount``: the number a fix needs (contacts to send, people to remove)."""

    kind: FindingKind
    title: str
    message: str
    blocking: bool = True
    names: tuple[str, ...] = ()
    amount: int | None = None
