"""Destinations: each SendGrid list segsync sends to, with its state."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static

from connector.consent import CONSENT_STATEMENT
from tui.messages import (
    BackendFailed,
    ConsentRecorded,
    DestinationRemoved,
    DestinationsLoaded,
    ListCountLoaded,
)
from tui.screens.base import SegsyncScreen, describe_error
from tui.screens.confirm import ConfirmScreen
from tui.screens.consent import ConsentScreen
from tui.screens.destination_form import DestinationFormScreen
from tui.widgets import formatting
from tui.widgets.formatting import safe
from tui.widgets.row_table import Column, RowTable

if TYPE_CHECKING:
    from store.records import Destination
    from tui.backend import DestinationRow

COLUMNS = (
    Column("Name", "name", 14, grow=1),
    Column("List", "list", 14, grow=1),
    Column("Contacts", "contacts", 9),
    Column("Last run", "last", 11),
    Column("Status", "status", 11),
    Column("Consent", "consent", 7),
)


class DestinationsScreen(SegsyncScreen):
    """Lists destinations; contact counts are fetched from SendGrid in a worker
    and fill in as they arrive, so the table is usable at once."""

    MODE = "destinations"
    PURPOSE = (
        "Each SendGrid list segsync sends to: its list, how many contacts SendGrid holds, the "
        "last run and whether consent is recorded. Enter (or u) makes the highlighted one the "
        "destination every other screen works on."
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "u",
            "use",
            "Use",
            tooltip="make the highlighted destination the one every screen works on (also Enter)",
        ),
        Binding("a", "add", "Add", tooltip="a new destination with its API key, list and cap"),
        Binding(
            "e",
            "edit",
            "Edit",
            tooltip="change the highlighted destination (an empty key keeps the stored one)",
        ),
        Binding(
            "c", "consent", "Consent", tooltip="record the data-privacy statement an export needs"
        ),
        Binding(
            "delete,d",
            "remove",
            "Remove",
            tooltip="remove the destination and forget its key; its runs stay in history",
        ),
        Binding(
            "r",
            "refresh",
            "Refresh",
            tooltip="reload destinations and their contact counts on SendGrid",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[DestinationRow] = []
        self.counts: dict[int, str] = {}
        self._errors: dict[int, str] = {}  # destination id -> why its count failed

    def compose_body(self) -> ComposeResult:
        yield RowTable(id="destinations", cursor_type="row", zebra_stripes=True)
        yield Static("", id="destination-detail", classes="detail")

    def on_mount(self) -> None:
        table = self.query_one(RowTable)
        table.show_rows(COLUMNS, [])
        table.loading = True
        # after the first paint: opening history imports SQLModel (~0.4 s) in the
        # worker thread, which would otherwise compete with drawing the screen
        self.call_after_refresh(self.action_refresh)

    def on_screen_resume(self) -> None:
        """Coming back (after an export, say): last run and status may have changed."""
        if self.rows:
            self.action_refresh()

    # -- loading ---------------------------------------------------------------

    def action_refresh(self) -> None:
        self._load()

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="destinations",
        description="load destinations",
    )
    def _load(self) -> None:
        destinations = self.call_backend("load destinations", self.backend.destinations)
        self.post_message(DestinationsLoaded(destinations or []))

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="list-counts",
        description="count contacts on SendGrid",
    )
    def _count(self, destinations: list[Destination]) -> None:
        for destination in destinations:
            try:
                count = self.backend.list_contact_count(destination.id)
            except Exception as error:
                self.post_message(ListCountLoaded(destination.id, None, describe_error(error)))
            else:
                self.post_message(ListCountLoaded(destination.id, count, None))

    def on_destinations_loaded(self, message: DestinationsLoaded) -> None:
        self.rows = message.destinations
        destinations = [row.destination for row in self.rows]
        self.counts = {d.id: self.counts.get(d.id, "…") for d in destinations}
        self.segsync.set_destinations(destinations)
        self._fill()
        if destinations:
            self._count(destinations)

    def on_list_count_loaded(self, message: ListCountLoaded) -> None:
        self.counts[message.destination_id] = (
            formatting.count(message.count) if message.error is None else "error"
        )
        if message.error:
            self._errors[message.destination_id] = message.error
        # redrawn whole (a few rows): the table keeps every cell for a resize
        self._fill()

    def _fill(self) -> None:
        """(Re)draw the table for the current width; the cursor keeps its row."""
        table = self.query_one(RowTable)
        table.loading = False
        current = self.segsync.destination
        rows = []
        for row in self.rows:
            d, last = row.destination, row.last_run
            marker = "▶ " if current is not None and current.id == d.id else "  "
            cells = (
                safe(marker + d.name, no_wrap=True, overflow="ellipsis"),
                safe(d.list_name or d.list_id or "", no_wrap=True, overflow="ellipsis"),
                Text(self.counts.get(d.id, "…"), justify="right"),
                Text(formatting.when(last.started_at)[5:] if last else "never"),
                formatting.run_status(last.status if last else "-"),
                Text("yes" if d.consented else "no", style="" if d.consented else "bold red"),
            )
            rows.append((str(d.id), cells))
        table.show_rows(COLUMNS, rows)
        if not self.rows:
            self.query_one("#destination-detail", Static).update(
                Text("No destination yet. Press a to add one (a SendGrid key and a list).")
            )
        self._show_detail()

    def _highlighted_row(self) -> DestinationRow | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0:
            return None
        row_key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return next((r for r in self.rows if str(r.destination.id) == row_key), None)

    def _highlighted(self) -> Destination | None:
        row = self._highlighted_row()
        return None if row is None else row.destination

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_use()

    def _show_detail(self) -> None:
        row = self._highlighted_row()
        if row is None:
            return
        d = row.destination
        text = Text()
        text.append(safe(d.name, "bold"))
        text.append(safe(f"  list {d.list_id}  key {row.key_hint}  cap {d.cap:,}"))
        text.append("\n")
        text.append(safe(d.base_url))
        text.append("\n")
        if d.consent_at is not None:
            text.append(safe(f"Consent given by {d.consent_by} on {formatting.when(d.consent_at)}"))
        else:
            text.append("No consent yet: press c before the first export.", style="bold red")
        if d.id in self._errors:
            text.append("\nSendGrid: ", style="bold red")
            text.append(safe(self._errors[d.id], multiline=True))
        self.query_one("#destination-detail", Static).update(text)

    # -- actions ---------------------------------------------------------------

    def action_use(self) -> None:
        destination = self._highlighted()
        if destination is not None:
            self.segsync.use_destination(destination)
            self._fill()
            self.notify(f"Using {destination.name}. Press 2 to pick segments.", markup=False)

    def action_add(self) -> None:
        self.app.push_screen(DestinationFormScreen(self.backend), self._saved)

    def action_edit(self) -> None:
        row = self._highlighted_row()
        if row is not None:
            self.app.push_screen(DestinationFormScreen(self.backend, row), self._saved)

    def _saved(self, row: DestinationRow | None) -> None:
        if row is None:
            return
        destination = row.destination
        self.notify(f"Saved {destination.name}.", markup=False)
        if self.segsync.destination is None or self.segsync.destination.id == destination.id:
            self.segsync.use_destination(destination)
        self.action_refresh()
        if not destination.consented:
            self._ask_consent(destination)

    def action_consent(self) -> None:
        destination = self._highlighted()
        if destination is not None:
            self._ask_consent(destination)

    def _ask_consent(self, destination: Destination) -> None:
        def answered(agreed: bool | None) -> None:
            if agreed:
                self._record_consent(destination.id)

        self.app.push_screen(ConsentScreen(destination.name), answered)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="consent",
        description="record consent",
    )
    def _record_consent(self, destination_id: int) -> None:
        destination = self.call_backend(
            "record consent", lambda: self.backend.record_consent(destination_id, CONSENT_STATEMENT)
        )
        if destination is not None:
            self.post_message(ConsentRecorded(destination))

    def on_consent_recorded(self, message: ConsentRecorded) -> None:
        self.notify(f"Consent recorded for {message.destination.consent_by}.", markup=False)
        self.action_refresh()

    def action_remove(self) -> None:
        destination = self._highlighted()
        if destination is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._remove(destination.id)

        self.app.push_screen(
            ConfirmScreen(
                f"Remove {destination.name}? Its API key is forgotten; its run history is kept.",
                yes="Remove",
            ),
            answered,
        )

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="remove",
        description="remove destination",
    )
    def _remove(self, destination_id: int) -> None:
        try:
            self.backend.remove_destination(destination_id)
        except Exception as error:
            self.post_message(BackendFailed("remove the destination", describe_error(error)))
        else:
            self.post_message(DestinationRemoved(destination_id))

    def on_destination_removed(self, message: DestinationRemoved) -> None:
        self.segsync.forget_destination(message.destination_id)
        self.action_refresh()
