"""A plan's or run's counts per category, in the order users read them."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from tui.widgets.formatting import safe

ORDER: tuple[tuple[str, str], ...] = (
    ("forgotten", "Forgotten"),
    ("selected", "Selected"),
    ("no_consent", "No consent"),
    ("no_email", "No email"),
    ("invalid_email", "Invalid email"),
    ("too_long", "Too long"),
    ("duplicate", "Duplicate"),
    ("unchanged", "Unchanged"),
    ("skipped", "Already sent"),
    ("to_send", "To send"),
    ("to_add", "  new"),
    ("to_update", "  updates"),
    ("to_remove", "To remove"),
    ("sent", "Sent"),
    ("created", "Created"),
    ("updated", "Updated"),
    ("errored", "Errored"),
    ("removed", "Removed"),
    ("remove_failed", "Not removed"),
    ("unconfirmed", "Unconfirmed"),
    ("updated_not_restored", "Not restored"),
)
_EXCLUDED = {
    "no_consent", "no_email", "invalid_email", "too_long", "duplicate", "errored", "forgotten",
    "remove_failed",
}  # fmt: skip


class CountsTable(DataTable[Text]):
    """Known categories first, in ORDER; anything else the engine reports after."""

    DEFAULT_CSS = "CountsTable { width: 28; height: 1fr; }"

    def on_mount(self) -> None:
        self.cursor_type = "none"
        self.add_column("Category", width=14)
        self.add_column("Rows", width=10)

    def show(self, counts: dict[str, int]) -> None:
        self.clear()
        labels = dict(ORDER)
        keys = [k for k, _ in ORDER if k in counts] + [k for k in counts if k not in labels]
        for key in keys:
            value = counts[key]
            style = (
                "bold"
                if key in ("to_send", "sent")
                else ("yellow" if key in _EXCLUDED and value else "")
            )
            self.add_row(
                safe(labels.get(key, key.replace("_", " ")), style),
                Text(f"{value:,}", justify="right", style=style),
                key=key,  # a screen that lets a category be picked reads it back
            )
