"""Switch workspace: one the state folder knows, or a folder typed in."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tui.messages import BackendFailed, WorkspacesLoaded
from tui.screens.base import describe_error
from tui.widgets.formatting import safe

if TYPE_CHECKING:
    from tui.app import SegsyncApp


class WorkspacePicker(ModalScreen[str | None]):
    """Dismisses with the folder picked or typed, or None when cancelled. The
    list (this workspace, those used lately from this state folder, those of
    runs and syncs) is read in a worker: it opens the history."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog picker"):
            yield Static(Text("Switch workspace", style="bold"))
            yield OptionList(Option(Text("reading…", style="dim"), disabled=True), id="workspaces")
            yield Input(placeholder="or type a folder with segments.toml", id="folder")
            yield Static(
                Text("Enter opens it · Tab moves between list and folder · Escape cancels"),
                classes="hint",
            )

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self._load()

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="workspaces",
        description="list the workspaces",
    )
    def _load(self) -> None:
        app: SegsyncApp = self.app  # type: ignore[assignment]
        try:
            choices = app.backend.workspaces()
        except Exception as error:
            self.post_message(BackendFailed("list the workspaces", describe_error(error)))
            choices = []
        self.post_message(WorkspacesLoaded(choices))

    def on_workspaces_loaded(self, message: WorkspacesLoaded) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        for choice in message.workspaces:
            label = safe(choice.path, "bold" if choice.current else "")
            if choice.current:
                label.append("  (current)", style="dim")
            options.add_option(Option(label, id=choice.path))
        if not message.workspaces:
            options.add_option(Option(Text("none known yet", style="dim"), disabled=True))
        else:
            options.highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.dismiss(event.option.id)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if value:
            self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
