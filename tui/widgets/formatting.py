"""Number, time and duration formats used on every screen, and the one way
untrusted text becomes something a widget may show.

Profile values, segment names and predicates, column and list names, DuckDB
errors and SendGrid messages are data, not markup and not terminal commands.
`safe()` (a Rich `Text`) and `safe_content()` (a Textual `Content`) make
control characters, escape sequences and bidi overrides visible with
`store.safe_text.visible` and never parse markup, so a value can neither drive
the terminal (OSC 52 clipboard writes, window titles, hidden links) nor be
read as `[@click=...]` or crash the app with a MarkupError. Every widget that
shows data builds its text through one of them; plain `str` cells, labels and
options are parsed as markup by Textual, so they are only used for constants.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from rich.style import StyleType
from rich.text import Text
from textual.content import Content

from store.safe_text import visible

# A run's status in colour, the same on every screen that lists runs.
RUN_STATUS_STYLE = {
    "succeeded": "green",
    "partial": "yellow",
    "failed": "red",
    "cancelled": "yellow",
    "interrupted": "red",
    "refused": "red",
    "dry_run": "cyan",
}

Justify = Literal["default", "left", "center", "right", "full"]
Overflow = Literal["fold", "crop", "ellipsis", "ignore"]


def safe(
    value: object,
    style: StyleType = "",
    *,
    multiline: bool = False,
    justify: Justify | None = None,
    no_wrap: bool | None = None,
    overflow: Overflow | None = None,
) -> Text:
    """`value` (anything from data, files or the network) as Text with its
    controls made visible. `multiline` keeps newlines and tabs, for messages
    that are several lines on purpose (a DuckDB error); by default one value
    stays one line, so it cannot forge another row."""
    return Text(
        visible(value, multiline=multiline),
        style=style,
        justify=justify,
        no_wrap=no_wrap,
        overflow=overflow,
    )


def safe_content(value: object, style: str = "") -> Content:
    """`value` as Textual Content (what the command palette and Select take),
    controls made visible, never parsed as markup."""
    content = Content(visible(value))
    return content.stylize(style) if style else content


def run_status(status: str) -> Text:
    """A run's status as the tables show it: words, in its colour."""
    return safe(status.replace("_", " "), RUN_STATUS_STYLE.get(status, ""))


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
