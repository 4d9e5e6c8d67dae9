"""`?` / F1: what the current screen is for and every key it answers to."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

GLOBAL_KEYS: tuple[tuple[str, str], ...] = (
    ("1-6", "switch screen (the numbered tabs at the top)"),
    ("ctrl+p", "command palette: every action by name"),
    ("? / F1", "this help"),
    ("q / ctrl+q", "quit (asks first while an export runs)"),
)
"""Keys that work on every main screen, whatever it binds itself."""


def screen_keys(screen: Screen[object]) -> list[tuple[str, str]]:
    """(key as shown, what it does) for every binding the screen declares:
    hidden ones and those unavailable right now included (the footer has no
    room for all of them at 80 columns, and c cancels an export even before
    one runs is worth knowing)."""
    keys: dict[tuple[str, str], list[str]] = {}  # (action, description) -> keys
    for binding in Binding.make_bindings(screen.BINDINGS):
        if binding.description:
            shown = keys.setdefault((binding.action, binding.description), [])
            shown.append(screen.app.get_key_display(binding))
    return [("/".join(shown), description) for (_action, description), shown in keys.items()]


def render_help(title: str, purpose: str, keys: list[tuple[str, str]], everywhere: bool) -> Text:
    """The help text: purpose, the screen's keys, then the global ones.
    Everything here is a constant of the app, never data."""
    text = Text()
    text.append(title, style="bold")
    text.append("\n")
    text.append(purpose)
    text.append("\n\nThis screen\n", style="bold")
    for key, description in keys or [("-", "no keys of its own")]:
        text.append(f"  {key:<12}", style="bold")
        text.append(f"{description}\n")
    if everywhere:
        text.append("\nEverywhere\n", style="bold")
        for key, description in GLOBAL_KEYS:
            text.append(f"  {key:<12}", style="bold")
            text.append(f"{description}\n")
    text.rstrip()
    return text


class HelpScreen(ModalScreen[None]):
    """Shown over a screen; Escape, q, ? or F1 closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "close", "Close", key_display="esc"),
    ]

    def __init__(self, for_screen: Screen[object], title: str, purpose: str) -> None:
        super().__init__()
        self.help_text = render_help(
            title,
            purpose,
            screen_keys(for_screen),
            everywhere=not isinstance(for_screen, ModalScreen),
        )

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help"):
            with VerticalScroll():
                yield Static(self.help_text, id="help-text")
            yield Static(Text("Escape closes this help."), classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
