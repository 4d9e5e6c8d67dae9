"""The one-line strip naming every screen with the key that opens it."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

SCREENS: tuple[tuple[str, str, str], ...] = (
    ("1", "destinations", "Destinations"),
    ("2", "segments", "Segments"),
    ("3", "mapping", "Mapping"),
    ("4", "preview", "Preview"),
    ("5", "export", "Export"),
    ("6", "history", "History"),
)
"""(key, mode name, title) for each main screen, in key order."""


class ScreenTabs(Static):
    """Shows the number keys of the screens, the current one highlighted.

    The footer has no room at 80 columns for six screen keys plus the screen's
    own actions, so the keys live here; each tab is also clickable.
    """

    DEFAULT_CSS = """
    ScreenTabs { height: 1; background: $panel; color: $text-muted; }
    """

    def __init__(self, current: str) -> None:
        super().__init__(self._render_tabs(current))

    @staticmethod
    def _render_tabs(current: str) -> Content:
        parts: list[Content] = []
        for key, mode, title in SCREENS:
            style = "bold reverse" if mode == current else ""
            tab = Content.assemble((f" {key} ", "bold"), (f"{title} ", ""))
            tab = tab.stylize(style) if style else tab
            parts.append(tab.stylize(f"@click=app.goto('{mode}')"))
        return Content(" ").join(parts)
