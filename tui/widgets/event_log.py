"""The export's running log: waits, retries, rejections, warnings, errors."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

MAX_LINES = 500


class EventLog(VerticalScroll):
    """Plain Text lines (never markup: SendGrid's messages may hold brackets),
    newest at the bottom and kept in view, bounded to MAX_LINES."""

    DEFAULT_CSS = "EventLog { height: 5; } EventLog > Static { width: 1fr; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[Text] = []

    def compose(self) -> ComposeResult:
        yield Static("")

    def write(self, line: Text) -> None:
        self.lines = [*self.lines[-(MAX_LINES - 1) :], line]
        self.query_one(Static).update(Text("\n").join(self.lines))
        self.scroll_end(animate=False)

    def clear(self) -> None:
        self.lines = []
        self.query_one(Static).update("")

    @property
    def plain(self) -> str:
        return "\n".join(line.plain for line in self.lines)
