"""The data-privacy statement, and the consent-filter rule, of every export.

Kept free of heavy imports so the TUI's consent dialog shows it without
loading httpx; the command line records the same words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the dialog needs only the words, not the records
    from store.records import FieldMapping

CONSENT_STATEMENT = (
    "I confirm that the people in the segments I export to this destination have agreed "
    "to receive email from us, that sending their profile data to Twilio SendGrid is "
    "allowed by our privacy policy and by the law that applies to them (for example the "
    "GDPR), and that I am authorised to make this decision for my organisation."
)


def consent_filter_refusal(mapping: FieldMapping, destination: str) -> str | None:
    """Why an export to ``destination`` may not send with this mapping, or None.

    The one rule, used by the export's preflight, the CLI and the TUI: with no
    consent column every selected profile would be sent, so that must be a
    choice recorded in the mapping (``no_consent_filter``), never a default.
    """
    if mapping.consent_column or mapping.no_consent_filter:
        return None
    return (
        f"{destination!r} has no consent column mapped, so every selected profile would be "
        f"sent. Choose: `segsync map {destination} --consent-column COLUMN` to send only "
        f"those who opted in, or `segsync map {destination} --no-consent-filter` to record "
        "that everyone selected may be sent (a --dry-run is allowed meanwhile)."
    )
