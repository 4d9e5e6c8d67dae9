"""Add a sync: a name and a trigger for the export the app is set up for."""

from __future__ import annotations

from typing import ClassVar, Literal

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from connector.models import SyncStatus
from store.records import Destination
from tui.backend import Backend, SyncForm
from tui.screens.base import describe_error
from tui.widgets.formatting import safe

TRIGGERS: tuple[tuple[str, str, str], ...] = (
    ("every", "every (an interval)", "6h, 30m or 1d"),
    ("cron", "cron (this machine's time zone)", "0 6 * * *  (minute hour day month weekday)"),
    ("refresh", "on refresh (profiles changed)", "nothing to set: runs when the profiles change"),
)
"""(value, what the choice says, the value field's placeholder) per trigger."""


class SyncAdded(Message):
    def __init__(self, sync: SyncStatus) -> None:
        super().__init__()
        self.sync = sync


class SyncRefused(Message):
    """The backend would not save the sync; `error` says why (a name taken,
    an interval or cron expression it cannot read)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class SyncFormScreen(ModalScreen[SyncStatus | None]):
    """Dismisses with the saved sync, or None when cancelled.

    What to send is not asked again: it is the destination, segments and mode
    the app is set up with, named at the top so the user sees what the
    schedule will repeat. The command line edits the rest (guardrails,
    failure hook, time zone).
    """

    HELP_TITLE = "Add a sync"
    PURPOSE = (
        "A sync repeats the export set up now (destination, segments, mode) on a trigger: "
        "every interval, on a cron schedule, or whenever the profiles change. "
        "segsync syncs edit NAME changes its guardrails and failure command."
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", tooltip="save the sync (it runs at its next trigger)"),
        Binding("escape", "cancel", "Cancel", tooltip="close without saving"),
        # a dialog does not see the app's keys; ? would be typed into a field
        Binding("f1", "app.help", "Help", show=False),
    ]

    def __init__(
        self,
        backend: Backend,
        destination: Destination,
        segments: tuple[str, ...],
        mode: Literal["upsert", "mirror"],
        incremental: bool,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.destination = destination
        self.segments = segments
        self.mode: Literal["upsert", "mirror"] = mode
        self.incremental = incremental

    def compose(self) -> ComposeResult:
        d = self.destination
        mode = self.mode + (", incremental" if self.incremental else "")
        what = Text.assemble(
            "Sends ",
            safe(", ".join(self.segments), "bold"),
            " to ",
            safe(d.name, "bold"),
            safe(f" (list {d.list_name or d.list_id}), {mode}: "),
            ("the destination, segments and mode chosen on screens 1, 2 and 4.", "dim"),
        )
        with Vertical(classes="dialog form"):
            yield Static(Text("Add a sync", style="bold"))
            yield Static(what, id="sync-what")
            with Horizontal(classes="field"):
                yield Label("Name")
                yield Input(placeholder="nightly", id="sync-name", compact=True)
            with Horizontal(classes="field"):
                yield Label("Trigger")
                yield Select(
                    [(Text(label), value) for value, label, _hint in TRIGGERS],
                    value="every",
                    allow_blank=False,
                    id="sync-trigger",
                    compact=True,
                )
            with Horizontal(classes="field"):
                yield Label("When")
                yield Input(placeholder=TRIGGERS[0][2], id="sync-when", compact=True)
            yield Static("", id="sync-form-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Save ^s", id="save", variant="primary", compact=True)
                yield Button("Cancel esc", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#sync-name", Input).focus()

    @on(Select.Changed, "#sync-trigger")
    def _trigger_changed(self, event: Select.Changed) -> None:
        """The value field fits the trigger; on refresh has nothing to set."""
        when = self.query_one("#sync-when", Input)
        hint = next((h for value, _label, h in TRIGGERS if value == event.value), "")
        when.placeholder = hint
        when.disabled = event.value == "refresh"
        if when.disabled:
            when.value = ""

    # -- reading the form ------------------------------------------------------

    def read_form(self) -> SyncForm:
        """The form as data; raises ValueError naming the field to fix. The
        interval and cron expression are checked by the backend (one parser,
        the command line's), whose refusal is shown here."""
        name = self.query_one("#sync-name", Input).value.strip()
        if not name:
            raise ValueError("Give the sync a name (the command line uses it: syncs run NAME).")
        trigger = self.query_one("#sync-trigger", Select).value
        when = self.query_one("#sync-when", Input).value.strip()
        if trigger != "refresh" and not when:
            raise ValueError(
                "Say how often: an interval such as 6h."
                if trigger == "every"
                else "Give the cron expression, such as 0 6 * * *."
            )
        return SyncForm(
            name=name,
            destination_id=self.destination.id,
            segments=self.segments,
            mode=self.mode,
            incremental=self.incremental,
            every=when if trigger == "every" else None,
            cron=when if trigger == "cron" else None,
            on_refresh=trigger == "refresh",
        )

    def _show_error(self, text: str) -> None:
        self.query_one("#sync-form-error", Static).update(safe(text, multiline=True))

    # -- actions ---------------------------------------------------------------

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.action_save()

    def action_save(self) -> None:
        try:
            form = self.read_form()
        except ValueError as error:
            self._show_error(str(error))
            return
        self._show_error("")
        self._save(form)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="sync-form-save",
        description="save the sync",
    )
    def _save(self, form: SyncForm) -> None:
        try:
            self.post_message(SyncAdded(self.backend.add_sync(form)))
        except Exception as error:
            self.post_message(SyncRefused(describe_error(error)))

    def on_sync_added(self, message: SyncAdded) -> None:
        self.dismiss(message.sync)

    def on_sync_refused(self, message: SyncRefused) -> None:
        self._show_error(f"Could not save the sync: {message.error}")
