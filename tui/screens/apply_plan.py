"""The question before a plan is applied: what it will add, update and remove.

Removing people is what hurts when it is wrong, so the dialog names up to ten
of those the plan would take off the list, and says so when the run goes past
the destination's guardrail (the user's yes is then the explicit allowance the
engine asks for). Everything shown comes from the plan (a `PlanReview`): counts
are the plan's, not a guess, and names are data made safe.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.backend import PlanReview
from tui.widgets.formatting import safe

REMOVALS_SHOWN = 10


def plan_summary(review: PlanReview, target: str) -> Text:
    """The plan in words: where, what, and some of who would be removed."""
    plan = review.plan
    c = plan.counts
    text = Text()
    undo = plan.kind == "undo"
    text.append(f"Undo run {plan.undo_of} on " if undo else f"Apply plan {plan.id} to ")
    text.append_text(safe(target, "bold"))
    text.append("\n\n")
    rows = [
        ("add", c.get("to_add", 0), "green"),
        ("update", c.get("to_update", 0), ""),
        ("remove", c.get("to_remove", 0), "bold red" if c.get("to_remove") else ""),
        ("unchanged", c.get("unchanged", 0), "dim"),
    ]
    for label, value, style in rows:
        text.append(f"  {label:<10}{value:>10,}\n", style=style)
    if plan.kind == "undo" and c.get("updated_not_restored"):
        text.append(
            f"\n{c['updated_not_restored']:,} field updates of that run are not restored "
            "(SendGrid keeps no history of them).\n",
            style="dim",
        )
    if review.removals_sample:
        shown = review.removals_sample[:REMOVALS_SHOWN]
        more = c.get("to_remove", len(shown)) - len(shown)
        text.append("\nTo be taken off the list:\n", style="bold")
        for email in shown:
            text.append("  ")
            text.append_text(safe(email))
            text.append("\n")
        if more > 0:
            text.append(f"  … and {more:,} more\n", style="dim")
    if review.touched_later:
        text.append(
            f"\n{len(review.touched_later):,} of them were changed again by later runs: "
            "undoing undoes that too.\n",
            style="yellow",
        )
    return text


class ApplyPlanScreen(ModalScreen[bool]):
    """Dismisses with True only on an explicit yes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Apply"),
        Binding("n,escape", "answer(False)", "Not now"),
    ]

    def __init__(self, review: PlanReview, target: str, guardrail: str = "") -> None:
        """``target``: the destination and list, as the user knows them;
        ``guardrail``: why the engine refused this run (its yes allows it)."""
        super().__init__()
        self.review = review
        self.target = target
        self.guardrail = guardrail

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog apply-plan"):
            yield Static(plan_summary(self.review, self.target), classes="question")
            if self.guardrail:
                note = Text("Over the guardrail: ", style="bold red")
                note.append_text(safe(self.guardrail))
                note.append("\nApply allows exactly these removals for this run only.")
                yield Static(note, classes="question guardrail")
            with Horizontal(classes="buttons"):
                label = "Allow and apply (y)" if self.guardrail else "Apply (y)"
                yield Button(label, id="yes", variant="error", compact=True)
                yield Button("Not now (n)", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
