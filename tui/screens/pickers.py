"""Small pickers: a column for a SendGrid field, a file path to write."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tui.widgets.formatting import safe

NOT_MAPPED = "\x00not-mapped"
"""Option id for "leave this field empty" (cannot clash with a column name)."""


class ColumnPicker(ModalScreen[str | None]):
    """Choose the profile column for one field. Dismisses with the column name,
    `NOT_MAPPED`, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        field: str,
        columns: list[tuple[str, str]],
        current: str | None,
        required: bool = False,
        none_label: str = "(not mapped)",
    ) -> None:
        super().__init__()
        self.field = field
        self.columns = columns
        self.current = current
        self.required = required
        self.none_label = none_label

    def compose(self) -> ComposeResult:
        options = (
            [] if self.required else [Option(Text(self.none_label, style="italic"), id=NOT_MAPPED)]
        )
        options += [
            Option(Text.assemble(safe(name, "bold"), safe(f"  {type_}")), id=name)
            for name, type_ in self.columns
        ]
        with Vertical(classes="dialog picker"):
            yield Static(safe(f"Column for {self.field}", "bold"))
            yield OptionList(*options, id="columns")

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        if self.current is not None:
            try:
                option_list.highlighted = option_list.get_option_index(self.current)
            except Exception:  # the saved column no longer exists
                option_list.highlighted = 0
        option_list.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PathPrompt(ModalScreen[str | None]):
    """Ask for a file path, or another one-line value (Enter accepts, Escape cancels)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, title: str, default: str, hint: str = "Enter to write, Escape to cancel"
    ) -> None:
        super().__init__()
        self.title_text = title
        self.default = default
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(safe(self.title_text, "bold"))
            yield Input(self.default, id="path", compact=True)
            yield Static(Text(self.hint), classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        self.dismiss(value or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
