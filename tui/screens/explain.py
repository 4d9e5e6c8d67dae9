"""Explain one person: why they were or were not sent, and what each run did to them.

Opened with `/` from History. The answer is the backend's `explain()` (the
same as `segsync explain --json`): the planner's own verdict on the person's
rows, the ledger, and every run's record. The search runs in a worker, so a
million-profile workspace never blocks the screen.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tui.backend import Backend
from tui.widgets.formatting import safe


def render_answer(answer: dict[str, Any]) -> Text:
    """The answer as text; every value from data made safe."""
    text = Text()
    text.append_text(safe(answer.get("email") or "-", "bold"))
    text.append(": ")
    text.append_text(safe(answer.get("verdict", "")))
    text.append("\n")
    segments: dict[str, str] = answer.get("segments") or {}
    consent_column = answer.get("consent_column")
    for row in answer.get("rows") or []:
        text.append(f"\nrow {row['row']}", style="bold")
        if row.get("key") is not None:
            text.append(" key ")
            text.append_text(safe(row["key"]))
        text.append("\n  email    ")
        text.append_text(safe(row.get("source_email")))
        text.append(f" ({row.get('email_verdict')})\n")
        if consent_column:
            text.append("  consent  ")
            text.append_text(safe(f"{consent_column} = {row.get('consent_value')}"))
            ok = row.get("consent_ok")
            text.append(": yes\n" if ok else ": no\n", style="" if ok else "red")
        for name, member in (row.get("segments") or {}).items():
            chosen = name in segments
            text.append(
                "  segment  " + ("in  " if member else "out "), style="" if member else "dim"
            )
            text.append_text(safe(name, "bold" if chosen else ""))
            where = segments.get(name)
            if where:
                text.append(": ")
                text.append_text(safe(where, "dim"))
            text.append("\n")
        for f in row.get("fields") or []:
            if f.get("too_long"):
                text.append(
                    f"  field    {f['field']} has {f['length']} characters (max {f['limit']})\n",
                    style="red",
                )
        if row.get("status"):
            text.append("  plan     ")
            text.append_text(
                safe(row["status"] + (f" ({row['detail']})" if row.get("detail") else ""))
            )
            text.append("\n")
    on_list = "on the list" if answer.get("on_list") else "not on the list"
    since = f", since run {answer['since_run']}" if answer.get("since_run") else ""
    text.append(f"\nledger: {on_list} as far as segsync knows{since}\n")
    runs = answer.get("runs") or []
    if not runs:
        text.append("no run touched this address\n", style="dim")
    for run in runs:
        text.append(f"  run {run['run']:>5}  {run['op']}")
        if run.get("reason"):
            text.append(": ")
            text.append_text(safe(run["reason"]))
        text.append("\n")
    return text


class Explained(Message):
    """The worker's answer (or the error), ready to show."""

    def __init__(self, text: Text) -> None:
        super().__init__()
        self.text = text


class ExplainScreen(ModalScreen[None]):
    """Type an email (or `key:VALUE`), Enter to explain; Escape closes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_screen", "Close")]

    def __init__(self, backend: Backend, destination_id: int, destination: str) -> None:
        super().__init__()
        self.backend = backend
        self.destination_id = destination_id
        self.destination = destination

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog explain"):
            title = Text("Explain a person for ")
            title.append_text(safe(self.destination, "bold"))
            yield Static(title)
            yield Input(placeholder="email address, or key:CUSTOMER_ID", id="who")
            with VerticalScroll():
                yield Static(
                    Text("Enter searches the profiles and every run's record.", style="dim"),
                    id="answer",
                )

    @on(Input.Submitted, "#who")
    def search(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value:
            return
        self.query_one("#answer", Static).update(Text("searching…", style="dim"))
        self._explain(value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="explain", description="explain")
    def _explain(self, value: str) -> None:
        key = value[4:].strip() if value.lower().startswith("key:") else None
        try:
            answer = self.backend.explain(
                self.destination_id, email=None if key else value, key=key
            )
        except Exception as error:  # shown in place: the user can correct the input
            self.post_message(Explained(safe(str(error), "red", multiline=True)))
        else:
            self.post_message(Explained(render_answer(answer)))

    def on_explained(self, message: Explained) -> None:
        self.query_one("#answer", Static).update(message.text)

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)
