"""History: past runs, newest first, filtered by destination and status."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Label, Select, Static

from store.records import Run
from tui.messages import RunsLoaded
from tui.screens.base import SegsyncScreen
from tui.screens.run_detail import RunDetailScreen
from tui.widgets import formatting
from tui.widgets.formatting import safe
from tui.widgets.row_table import Column, RowTable

STATUSES = tuple(formatting.RUN_STATUS_STYLE)


COLUMNS = (
    Column("#", "id", 3),
    Column("Started", "started", 11),
    Column("Destination", "destination", 11, grow=2),
    Column("Segments", "segments", 12, grow=1),
    Column("Mode", "mode", 7),
    Column("Status", "status", 11),
    Column("Sent", "sent", 7),
)


class HistoryScreen(SegsyncScreen):
    """Enter opens a run: its configuration, batches and rejected rows, with
    resume and re-run from there."""

    MODE = "history"
    PURPOSE = (
        "Every run, newest first, filtered by destination and status. Enter opens a run: its "
        "settings, batches, the people it touched and rejected rows, with resume, re-run and "
        "undo. / explains one person: why they were or were not sent."
    )
    AUTO_FOCUS = "#runs"  # the runs, not the filters: keys act on the list at once
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "o",
            "open",
            "Open run",
            tooltip="the highlighted run's settings, batches and rejected rows (also Enter)",
        ),
        Binding(
            "f", "filter_destination", "Destination", tooltip="show the runs of one destination"
        ),
        Binding("s", "filter_status", "Status", tooltip="show the runs of one status"),
        Binding("r", "refresh", "Refresh", tooltip="read the history again"),
        Binding(
            "slash",
            "explain",
            "Explain",
            key_display="/",
            tooltip="why a person was or was not sent, and what each run did to them",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[Run] = []
        self.shown: list[Run] = []

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="filters"):
            yield Label("Destination")
            yield Select[str]([], prompt="all", id="filter-destination", compact=True)
            yield Label("Status")
            yield Select[str](
                [(s.replace("_", " "), s) for s in STATUSES],
                prompt="all",
                id="filter-status",
                compact=True,
            )
        yield RowTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="run-summary", classes="detail")

    def on_mount(self) -> None:
        table = self.query_one("#runs", RowTable)
        table.show_rows(COLUMNS, [])
        table.loading = True

    def on_screen_resume(self) -> None:
        """Coming back after an export: its run must be listed."""
        if self.is_mounted:
            self.action_refresh()

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="runs",
        description="read the run history",
    )
    def _load(self) -> None:
        runs = self.call_backend("read the run history", self.backend.runs)
        self.post_message(RunsLoaded(runs or []))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self.runs = sorted(message.runs, key=lambda r: (r.started_at, r.id), reverse=True)
        select = self.query_one("#filter-destination", Select)
        current = select.value
        names = sorted({r.destination_name for r in self.runs})
        select.set_options([(safe(n), n) for n in names])
        if isinstance(current, str) and current in names:
            select.value = current
        self._fill()

    @on(Select.Changed)
    def _filter_changed(self, event: Select.Changed) -> None:
        self._fill()

    def _fill(self) -> None:
        """(Re)draw the runs for the filters and the width; the cursor keeps its row."""
        table = self.query_one("#runs", RowTable)
        table.loading = False
        destination = self.query_one("#filter-destination", Select).value
        status = self.query_one("#filter-status", Select).value
        self.shown = [
            r
            for r in self.runs
            if (not isinstance(destination, str) or r.destination_name == destination)
            and (not isinstance(status, str) or r.status == status)
        ]
        rows: list[tuple[str | None, tuple[object, ...]]] = []
        for run in self.shown:
            # what SendGrid confirmed; never the plan's figure (a run that stopped
            # before sending shows 0, and runs from before outcomes were kept "-")
            sent = run.counts.get("sent")
            mode = "undo" if run.kind == "undo" else run.mode + ("+inc" if run.incremental else "")
            cells = (
                Text(str(run.id)),
                Text(formatting.when(run.started_at)[5:]),
                safe(run.destination_name, no_wrap=True, overflow="ellipsis"),
                safe(", ".join(run.segments), no_wrap=True, overflow="ellipsis"),
                safe("dry-run" if run.dry_run else mode),
                formatting.run_status(run.status),
                Text(formatting.count(sent) if sent is not None else "-", justify="right"),
            )
            rows.append((str(run.id), cells))
        table.show_rows(COLUMNS, rows)
        if not self.runs:
            self.query_one("#run-summary", Static).update(
                Text("No runs yet: preview (4) and export (x) to make one.", style="dim")
            )
            return
        self._show_detail()

    def _highlighted(self) -> Run | None:
        table = self.query_one("#runs", DataTable)
        if not self.shown or table.cursor_row < 0:
            return None
        return self.shown[min(table.cursor_row, len(self.shown) - 1)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        run = self._highlighted()
        text = Text()
        if run is not None:
            text.append(f"Run {run.id}", style="bold")
            text.append(
                safe(
                    f" by {run.operator} · {formatting.when(run.started_at)}"
                    f" · took {formatting.duration(run.seconds)}"
                )
            )
            text.append("\n")
            text.append(
                safe(" · ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in run.counts.items()))
            )
            if run.message:
                text.append("\n")
                text.append(safe(run.message, "yellow", multiline=True))
            else:
                text.append("\nEnter opens it: configuration, batches, rejected rows.", style="dim")
        self.query_one("#run-summary", Static).update(text)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        run = self._highlighted()
        if run is not None:
            self.open_run(run.id)

    def open_run(self, run_id: int) -> None:
        """Show one run's detail (also used by the export screen's h key)."""
        self.app.push_screen(RunDetailScreen(run_id))

    def action_filter_destination(self) -> None:
        self.query_one("#filter-destination", Select).focus()

    def action_filter_status(self) -> None:
        self.query_one("#filter-status", Select).focus()

    def action_explain(self) -> None:
        """Search one person (email or key) for the current destination."""
        from tui.screens.explain import ExplainScreen

        destination = self.segsync.destination
        if destination is None:
            self.notify("Pick a destination first (1, then Enter on a row).", severity="warning")
            return
        self.app.push_screen(ExplainScreen(self.backend, destination.id, destination.name))

    def action_refresh(self) -> None:
        self._load()
