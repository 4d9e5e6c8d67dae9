"""Number, time and duration formats used on every screen."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

# A run's status in colour, the same on every screen that lists runs.
RUN_STATUS_STYLE = {
    "succeeded": "green",
    "partial": "yellow",
    "failed": "red",
    "cancelled": "yellow",
    "interrupted": "red",
    "dry_run": "cyan",
}


def run_status(status: str) -> Text:
    """A run's status as the tables show it: words, in its colour."""
    return Text(status.replace("_", " "), style=RUN_STATUS_STYLE.get(status, ""))


def count(value: int | None) -> str:
    return "…" if value is None else f"{value:,}"


def when(value: datetime | None) -> str:
    return "never" if value is None else value.strftime("%Y-%m-%d %H:%M")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
