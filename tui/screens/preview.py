"""Preview: the dry-run plan, before anything is sent."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from connector.events import PlanReady, PreviewReady, RunFinished
from connector.events import Warning as EngineWarning
from store.records import FieldMapping
from tui.backend import ExportSettings
from tui.messages import EngineEvent, ExportEnded, ExportRunner
from tui.screens.base import SegsyncScreen
from tui.widgets.counts_table import CountsTable
from tui.widgets.formatting import safe
from tui.widgets.row_table import Column, Row, RowTable

_VIEWS = ("sample", "rejected", "body")
EXCLUSIONS = ("no_consent", "no_email", "invalid_email", "too_long", "duplicate")
_CATEGORY_VIEW = {
    **dict.fromkeys(EXCLUSIONS, "rejected"),
    **dict.fromkeys(("to_send", "to_add", "to_update"), "sample"),
    "to_remove": "body",
}
"""Which view shows the rows of a category picked on the left (others: all)."""
REJECTED_COLUMNS = (
    Column("Email", "email", 16, grow=1),
    Column("Reason", "reason", len("invalid_email")),
    Column("Detail", "detail", 0, optional=True),
)
"""Email and reason in full first (at 80 columns too); the detail gets the rest."""


class PreviewScreen(SegsyncScreen):
    """Runs the engine as a dry-run (so the preview is exactly what an export
    would do) whenever destination, segments, mapping or mode changed."""

    MODE = "preview"
    PURPOSE = (
        "A dry run of the export: how many rows are selected, excluded (and why) and sent, a "
        "sample of contacts and rejected rows, and the first request body. Pick a category on "
        "the left to see its rows. Nothing is sent until x, and x asks first."
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "x",
            "export",
            "Apply",
            tooltip="apply this plan: adds, updates and removals (asks first, and for consent)",
        ),
        Binding(
            "o",
            "toggle_mode",
            "Mode",
            tooltip="upsert only, or mirror (also takes off the list who left the segments)",
        ),
        Binding(
            "i",
            "toggle_incremental",
            "Incremental",
            tooltip="send only contacts changed since the last export",
        ),
        Binding(
            "v", "next_view", "View", tooltip="sample, rejected rows or first request, in turn"
        ),
        Binding("r", "refresh", "Refresh", tooltip="plan the dry-run again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.preview: PreviewReady | None = None
        self.category: str | None = None  # the category picked on the left, None: all
        self.previewed: tuple[Any, ...] | None = None
        self.counts: dict[str, int] = {}
        self.running = False
        self.failure: str | None = None  # why the last dry-run failed, if it did
        self.plan_id: int | None = None  # the stored plan on screen: what x applies

    def compose_body(self) -> ComposeResult:
        yield Static("", id="preview-status", classes="status")
        with Horizontal():
            yield CountsTable(id="preview-counts")
            with TabbedContent(id="preview-views"):
                with TabPane("Sample", id="sample"):
                    yield DataTable(id="sample-table", zebra_stripes=True)
                with TabPane("Rejected", id="rejected"):
                    yield RowTable(id="rejected-table", zebra_stripes=True, cursor_type="row")
                with TabPane("Request", id="body"), VerticalScroll():
                    yield Static("", id="first-body")

    def on_mount(self) -> None:
        counts = self.query_one(CountsTable)
        counts.cursor_type = "row"  # a category is picked here to filter the rows
        self.query_one("#rejected-table", RowTable).show_rows(REJECTED_COLUMNS, [])
        self.on_screen_resume()

    def _wanted(self) -> tuple[Any, ...]:
        app = self.segsync
        mapping = app.mapping or FieldMapping(email="")
        return (
            app.destination.id if app.destination else None,
            app.selection,
            repr(mapping),
            app.mode_setting,
            app.incremental,
        )

    def on_screen_resume(self) -> None:
        if self._wanted() != self.previewed:
            self.action_refresh()
        else:
            self._show_status()

    def _show_status(self, note: str = "") -> None:
        app = self.segsync
        text = Text()
        text.append(safe(", ".join(app.selection) or "no segments", "bold"))
        text.append(f" · {app.mode_setting}{' incremental' if app.incremental else ''}")
        if note:
            text.append(f" · {note}")
        self.query_one("#preview-status", Static).update(text)

    # -- running the dry-run -----------------------------------------------------

    def action_refresh(self) -> None:
        settings = self.segsync.export_settings(dry_run=True)
        self.previewed = self._wanted()
        self.plan_id = None
        self.counts = {}
        self.query_one(CountsTable).show({})
        self._clear_views()  # rows of the last plan (another destination, maybe) are stale
        if settings is None:
            self._show_status("nothing to preview")
            return
        self.running = True
        self.failure = None
        self.query_one(CountsTable).loading = True
        self._show_status("planning…")
        self._run(settings)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="preview",
        description="plan the dry-run",
    )
    def _run(self, settings: ExportSettings) -> None:
        ExportRunner(lambda cancel: self.backend.export(settings, cancel), self.post_message).run()

    def on_engine_event(self, message: EngineEvent) -> None:
        message.stop()
        event = message.event
        if isinstance(event, PlanReady):
            self.counts = dict(event.counts)
            self.query_one(CountsTable).show(self.counts)
        elif isinstance(event, PreviewReady):
            self._show_preview(event)
        elif isinstance(event, EngineWarning):
            self.notify(event.message, severity="warning", markup=False)
        elif isinstance(event, RunFinished):
            if event.counts:
                self.counts = dict(event.counts)
                self.query_one(CountsTable).show(self.counts)
            if event.status not in ("dry_run", "succeeded"):
                self.failure = event.message or event.status
                self.notify(
                    event.message or event.status,
                    title="Dry-run failed",
                    severity="error",
                    markup=False,
                    timeout=10,
                )

    def on_export_progress(self, message: Any) -> None:
        message.stop()  # a dry-run has no progress to show

    def on_export_ended(self, message: ExportEnded) -> None:
        message.stop()
        self.running = False
        self.query_one(CountsTable).loading = False
        if self.failure is not None:
            self._show_status("the dry-run failed: fix the problem, then r")
        elif message.error:
            self._show_status("failed")
            self.notify(
                message.error,
                title="Could not plan the export",
                severity="error",
                markup=False,
                timeout=10,
            )
        else:
            c = self.counts
            plan = f"plan {self.plan_id} · " if self.plan_id else ""
            if c.get("to_send") or c.get("to_remove"):
                self._show_status(f"{plan}ready · x applies it")
            else:
                self._show_status(f"{plan}nothing to send or remove")

    def _clear_views(self) -> None:
        self.preview = None
        self.category = None
        self.query_one("#sample-table", DataTable).clear(columns=True)
        self.query_one("#rejected-table", RowTable).show_rows(REJECTED_COLUMNS, [])
        self.query_one("#first-body", Static).update("")

    def _show_preview(self, event: PreviewReady) -> None:
        self.plan_id = event.plan_id or None
        self.counts = dict(event.counts)
        self.query_one(CountsTable).show(self.counts)
        sample = self.query_one("#sample-table", DataTable)
        sample.clear(columns=True)
        fields: list[str] = []
        for contact in event.sample_contacts:
            fields += [k for k in contact if k not in fields]
        sample.add_columns(*(safe(f) for f in fields))
        for contact in event.sample_contacts:
            sample.add_row(*(safe(_plain(contact.get(f)), no_wrap=True) for f in fields))
        self.preview = event
        self._show_rejected()
        body = safe(event.first_body or "(nothing would be sent)", multiline=True)
        if event.removals_sample:
            body.append("\n\nWould remove from the list: ", style="bold")
            body.append(safe(", ".join(event.removals_sample)))
        self.query_one("#first-body", Static).update(body)

    def _show_rejected(self) -> None:
        """The sampled rejected rows, only the picked category's when one is."""
        sampled = self.preview.sample_rejected if self.preview is not None else ()
        rows: list[Row] = [
            (None, (safe(email or "∅"), safe(category, "yellow"), safe(detail)))
            for email, category, detail in sampled
            if self.category is None or category == self.category
        ]
        if not rows and sampled and self.category is not None:
            # the plan samples the first rejected rows, whatever their category
            note = Text(f"(none of the {len(sampled)} sampled)", style="dim")
            rows = [(None, (note, safe(self.category, "dim"), Text("")))]
        self.query_one("#rejected-table", RowTable).show_rows(REJECTED_COLUMNS, rows)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """A category picked on the left shows its rows: an exclusion its
        rejected rows, what is sent the sample, removals the request view."""
        if not isinstance(event.data_table, CountsTable) or event.row_key.value is None:
            return
        key = event.row_key.value
        category = key if key in EXCLUSIONS else None
        if category != self.category:
            self.category = category
            self._show_rejected()
        tab = _CATEGORY_VIEW.get(key)
        if tab is not None:
            self.query_one(TabbedContent).active = tab

    # -- actions -----------------------------------------------------------------

    def action_next_view(self) -> None:
        tabs = self.query_one(TabbedContent)
        current = _VIEWS.index(tabs.active) if tabs.active in _VIEWS else -1
        tabs.active = _VIEWS[(current + 1) % len(_VIEWS)]

    def action_toggle_mode(self) -> None:
        app = self.segsync
        app.mode_setting = "mirror" if app.mode_setting == "upsert" else "upsert"
        self.action_refresh()

    def action_toggle_incremental(self) -> None:
        self.segsync.incremental = not self.segsync.incremental
        self.action_refresh()

    def action_export(self) -> None:
        if self.running:
            self.notify("The dry-run is still planning; export once it is ready.")
            return
        settings = self.segsync.export_settings(dry_run=False)
        if settings is None:
            return
        if self._wanted() != self.previewed or self.failure is not None:
            self.notify("Plan again first (r): the choices changed since this preview.")
            return
        if self.plan_id is None:  # no stored plan to show: plan and apply in one step
            self.segsync.confirm_export(settings, self.counts.get("to_send"))
            return
        # x applies exactly the plan on screen (checked for drift before sending).
        self.segsync.confirm_export(
            replace(settings, plan_id=self.plan_id), self.counts.get("to_send")
        )


def _plain(value: object) -> str:
    if value is None:
        return "∅"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
