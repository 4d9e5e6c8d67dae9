"""Pass/fail lines of "test connection", with SendGrid's own words."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from tui.widgets.formatting import safe

if TYPE_CHECKING:
    from connector.models import Check


def render_checks(checks: list[Check]) -> Text:
    """Plain Text, never markup: SendGrid's messages may contain brackets
    (and controls, made visible)."""
    text = Text()
    for check in checks:
        mark, style = ("PASS", "bold green") if check.ok else ("FAIL", "bold red")
        text.append(f"{mark} ", style=style)
        text.append(safe(f"{check.name:8} ", "bold"))
        text.append(safe(check.detail))
        text.append("\n")
    text.rstrip()
    return text


class CheckLines(Static):
    """Shows the outcome of the latest connection test, or what is running."""

    DEFAULT_CSS = "CheckLines { height: auto; min-height: 1; }"

    def show_running(self) -> None:
        self.update(Text("Testing connection…", style="italic"))

    def show(self, checks: list[Check]) -> None:
        self.update(render_checks(checks))
