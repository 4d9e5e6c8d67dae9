"""`?` / F1: what the current screen is for and every key it answers to."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

GLOBAL_KEYS: tuple[tuple[str, str], ...] = (
    ("1-7", "switch screen (the numbered tabs at the top)"),
    ("ctrl+p", "command palette: every action by name"),
    ("? / F1", "this help"),
    ("w", "switch workspace (one this state folder knows, or a folder you type)"),
    ("k", "dismiss the banner of failed syncs (acknowledges the failures)"),
    ("q / ctrl+q", "quit (asks first while an export runs)"),
)
"""Keys that work on every main screen, whatever it binds itself."""


def screen_keys(screen: Screen[object]) -> list[tuple[str, str]]:
    """(key as shown, what it does) for every binding the screen declares:
    hidden ones and those unavailable right now included (the footer has no
    room for all of them at 80 columns, and c cancels an export even before
    one runs is worth knowing)."""
    keys: dict[tuple[str, str], list[str]] = {}  # (action, what it does) -> keys
    for binding in Binding.make_bindings(screen.BINDINGS):
        if binding.description:
            # the footer's word, then the tooltip's sentence that explains it
            what = binding.description
            if binding.tooltip:
                what += f": {binding.tooltip}"
            shown = keys.setdefault((binding.action, what), [])
            shown.append(screen.app.get_key_display(binding))
    return [("/".join(shown), what) for (_action, what), shown in keys.items()]


def _keys_table(keys: list[tuple[str, str]]) -> Table:
    """Keys in one column, what they do beside them, wrapped under itself."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, what in keys:
        table.add_row(key, what)
    return table


class HelpScreen(ModalScreen[None]):
    """Shown over a screen; Escape, q, ? or F1 closes it. Everything in it is
    a constant of the app (purpose, binding texts), never data."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "close", "Close", key_display="esc"),
    ]

    def __init__(self, for_screen: Screen[object], title: str, purpose: str) -> None:
        super().__init__()
        self.title_text = title
        self.purpose = purpose
        self.keys = screen_keys(for_screen) or [("-", "no keys of its own")]
        self.everywhere = [] if isinstance(for_screen, ModalScreen) else list(GLOBAL_KEYS)

    @property
    def help_text(self) -> str:
        """The help as plain text (what a test or a search reads)."""
        lines = [self.title_text, self.purpose, "", "This screen"]
        lines += [f"  {key:<12}{what}" for key, what in self.keys]
        if self.everywhere:
            lines += ["", "Everywhere"]
            lines += [f"  {key:<12}{what}" for key, what in self.everywhere]
        return "\n".join(lines)

    def compose(self) -> ComposeResult:
        parts: list[RenderableType] = [
            Text(self.title_text, style="bold"),
            Text(self.purpose),
            Text("\nThis screen", style="bold"),
            _keys_table(self.keys),
        ]
        if self.everywhere:
            parts += [Text("\nEverywhere", style="bold"), _keys_table(self.everywhere)]
        with Vertical(classes="dialog help"):
            with VerticalScroll():
                yield Static(Group(*parts), id="help-text")
            yield Static(Text("Escape closes this help."), classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
