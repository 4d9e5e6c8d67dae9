"""Large dirty workspaces whose right answer is computed here, not by segsync.

The rows are a pure function of the row number, built as plain Python lists
(column by column, no per-row dicts) and written with pyarrow, so 75,000
profiles take a fraction of a second. `intended_emails` applies the rules a
user reads in the product documentation (segment membership, consent, a
usable email, SendGrid's field limits, one contact per address) in plain
Python: if the engine's SQL and this code disagree, a test fails.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEGMENTS_TOML = """
[profiles]
path = "profiles.parquet"
key = "customer_id"

[segments.germany]
description = "Customers in Germany"
where = "country = 'DE'"

[segments.big_spenders]
description = "Lifetime value of 500 or more"
where = "lifetime_value >= 500"

[segments.everyone]
where = "TRUE"
"""

SEGMENT_RULES: dict[str, Callable[[str, float], bool]] = {
    "germany": lambda country, value: country == "DE",
    "big_spenders": lambda country, value: value >= 500,
    "everyone": lambda country, value: True,
}

COUNTRIES = ("DE", "FR", "US")


def make_columns(n: int, salt: int = 0) -> dict[str, list]:
    """Profiles with known dirt at fixed strides: invalid, missing and blank
    emails, no consent, names over SendGrid's 50 characters, and duplicates
    that differ only in case and surrounding spaces (in the same segments).
    `salt` changes the addresses so two workspaces do not share contacts."""
    ids = list(range(n))
    emails: list[str | None] = []
    first: list[str] = []
    country: list[str] = []
    value: list[float] = []
    for i in ids:
        email: str | None = f"user{i}.s{salt}@example.com"
        c, v = COUNTRIES[i % 3], float((i * 37) % 1000)
        if i % 53 == 7:
            email = f"user{i}.s{salt}.example.com"
        elif i % 61 == 11:
            email = f"  USER{i - 1}.S{salt}@Example.COM "
            c, v = country[i - 1], value[i - 1]
        elif i % 97 == 13:
            email = None
        elif i % 89 == 17:
            email = "   "
        emails.append(email)
        country.append(c)
        value.append(v)
        first.append("X" * 60 if i % 73 == 5 else f"First{i}")
    return {
        "customer_id": ids,
        "email": emails,
        "first_name": first,
        "last_name": [f"Last{i}" for i in ids],
        "country": country,
        "city": ["Berlin" if c == "DE" else "Elsewhere" for c in country],
        "lifetime_value": value,
        "email_opt_in": [i % 41 != 3 for i in ids],
    }


def write_workspace(folder: Path, columns: dict[str, list], toml: str = SEGMENTS_TOML) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / "profiles.parquet")
    (folder / "segments.toml").write_text(toml)
    return folder


def _rows(columns: dict[str, list]):
    return zip(
        columns["email"],
        columns["first_name"],
        columns["last_name"],
        columns["country"],
        columns["lifetime_value"],
        columns["email_opt_in"],
        strict=True,
    )


def selected_count(columns: dict[str, list], segments: list[str]) -> int:
    """Rows in the union of the segments (what the plan calls `selected`)."""
    return sum(
        any(SEGMENT_RULES[s](c, v) for s in segments) for _e, _f, _l, c, v, _o in _rows(columns)
    )


def intended_emails(columns: dict[str, list], segments: list[str]) -> set[str]:
    """The addresses that must end on the list, by the documented rules."""
    out: set[str] = set()
    for email, first, last, c, v, opt_in in _rows(columns):
        if not any(SEGMENT_RULES[s](c, v) for s in segments) or not opt_in:
            continue
        address = (email or "").strip().lower()
        if "@" not in address or len(address) > 254:
            continue
        if len(first) > 50 or len(last) > 50:
            continue
        out.add(address)
    return out


def no_consent_emails(columns: dict[str, list]) -> set[str]:
    """Addresses whose every row lacks consent: none of them may ever be sent."""
    consenting = {(e or "").strip().lower() for e, *_rest, opt_in in _rows(columns) if opt_in}
    return {
        (e or "").strip().lower()
        for e, *_rest, opt_in in _rows(columns)
        if not opt_in and e and e.strip()
    } - consenting
