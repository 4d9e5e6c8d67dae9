"""SendGrid's field length limits and the default export cap, light enough for the TUI.

The plan checks rows against them in SQL; the mapping screen highlights values
that would be cut. One table, so the two can never disagree.
"""

EMAIL_MAX_LENGTH = 254

# The default cap of contacts one export may send, until the user raises it.
DEFAULT_CAP = 100_000

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
}
"""Longest value SendGrid keeps per reserved field (None: no stated limit)."""
