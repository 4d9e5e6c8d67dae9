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
    ("7", "syncs", "Syncs"),
)
"""(key, mode name, title) for each main screen, in key order."""


class ScreenTabs(Static):
    """Shows the number keys of the screens, the current one highlighted.

    The footer has no room at 80 columns for seven screen keys plus the screen's
    own actions, so the keys live here; each tab is also clickable.
    """

    DEFAULT_CSS = """
    ScreenTabs { height: 1; background: $panel; color: $text-muted; }
    """

    def __init__(self, current: str) -> None:
        super().__init__(self._render_tabs(current))
        self.current = current

    def on_resize(self) -> None:
        self.update(self._render_tabs(self.current, self.size.width))

    @staticmethod
    def _render_tabs(current: str, width: int | None = None) -> Content:
        """Tabs one cell apart when they fit in `width`; at 80 columns seven
        tabs fit only without that cell (each tab keeps its own spaces)."""
        parts: list[Content] = []
        for key, mode, title in SCREENS:
            style = "bold reverse" if mode == current else ""
            tab = Content.assemble((f" {key} ", "bold"), (f"{title} ", ""))
            tab = tab.stylize(style) if style else tab
            parts.append(tab.stylize(f"@click=app.goto('{mode}')"))
        spaced = Content(" ").join(parts)
        if width is not None and spaced.cell_length > width:
            return Content("").join(parts)
        return spaced
