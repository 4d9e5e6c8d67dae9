"""The data-privacy statement a destination needs before it may export."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from connector.consent import CONSENT_STATEMENT
from tui.widgets.formatting import safe


class ConsentScreen(ModalScreen[bool]):
    """Shows the wording; only "I agree" (button or `a`) dismisses with True.

    Who and when are recorded by the caller through the backend, with this
    exact wording, so history shows what was agreed to.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "agree", "I agree"),
        Binding("escape", "decline", "Not now"),
    ]

    def __init__(self, destination_name: str, wording: str = CONSENT_STATEMENT) -> None:
        super().__init__()
        self.destination_name = destination_name
        self.wording = wording

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(safe(f"Consent for {self.destination_name}", "bold"))
            yield Static(Text(self.wording), classes="question")
            yield Static(
                Text("Nothing is sent to SendGrid until you agree. Dry runs stay allowed."),
                classes="hint",
            )
            with Horizontal(classes="buttons"):
                yield Button("I agree (a)", id="agree", variant="success", compact=True)
                yield Button("Not now (esc)", id="decline", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "agree")

    def action_agree(self) -> None:
        self.dismiss(True)

    def action_decline(self) -> None:
        self.dismiss(False)
