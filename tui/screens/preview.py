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
from connector.findings import Finding
from store.records import EXCLUSIONS
from tui.backend import ExportSettings
from tui.messages import (
    CapRaised,
    CustomFieldsCreated,
    EngineEvent,
    ExportEnded,
    PreflightChecked,
)
from tui.relay import ExportRunner
from tui.screens.base import SegsyncScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.pickers import PathPrompt
from tui.widgets.counts_table import CountsTable
from tui.widgets.formatting import safe
from tui.widgets.preflight_list import MAPPING_KINDS, fix_for, render_findings, stops_x
from tui.widgets.row_table import Column, Row, RowTable

_VIEWS = ("sample", "rejected", "body")
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
    would do) whenever destination, segments, mapping or mode changed, then the
    export's own preflight over that plan: "ready" only when an export would
    start; each problem is listed with the key that fixes it."""

    MODE = "preview"
    PURPOSE = (
        "A dry run of the export: how many rows are selected, excluded (and why) and sent, a "
        "sample of contacts and rejected rows, and the first request body. Pick a category on "
        "the left to see its rows. Above them, everything an export checks before sending "
        "(mapping and consent choice, key, list, custom fields and their types, cap, "
        "guardrails), each with the key that fixes it; ready means x would start the export. "
        "Nothing is sent until x, and x asks first."
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
        # fixes, offered (palette, help) only while their problem is listed;
        # each problem line names its key, the footer has no room at 80 columns
        Binding(
            "m",
            "fix_mapping",
            "Fix the mapping",
            show=False,
            tooltip="open Mapping (offered while a mapping or consent problem is listed)",
        ),
        Binding(
            "f",
            "create_fields",
            "Create missing custom fields",
            show=False,
            tooltip="create the mapped custom fields the account lacks (asks first)",
        ),
        Binding(
            "c",
            "raise_cap",
            "Raise the cap",
            show=False,
            tooltip="the most contacts one export may send (offered while over the cap)",
        ),
        Binding(
            "a",
            "allow_removals",
            "Allow these removals",
            show=False,
            tooltip="apply this plan allowing exactly its removals, this run only (asks first)",
        ),
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
        # what an export of that plan would meet (None: not checked, or the check failed)
        self.findings: list[Finding] | None = None
        self.checking = False
        self.checked_for: tuple[Any, ...] | None = None  # stale answers are dropped

    def compose_body(self) -> ComposeResult:
        yield Static("", id="preview-status", classes="status")
        yield Static("", id="preflight", classes="preflight")
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
        self.query_one("#preflight", Static).display = False
        self.on_screen_resume()

    def _wanted(self) -> tuple[Any, ...]:
        app = self.segsync
        destination = app.destination
        return (
            # what the plan was computed from: the list and its host, not the key or cap
            (destination.id, destination.list_id, destination.base_url) if destination else None,
            app.selection,
            # None: not read on this screen's side yet, so the saved one
            repr(app.mapping) if app.mapping is not None else None,
            app.mode_setting,
            app.incremental,
        )

    def _stale(self) -> bool:
        """Whether the plan on screen was made from other choices than now.

        A plan made before the Mapping screen read the saved mapping was made
        from that saved mapping: reading it later is no change (it planned
        everything twice on a first visit to Mapping). Were it edited and saved
        since, the plan's drift check says so, with r to plan again.
        """
        wanted, previewed = self._wanted(), self.previewed
        if previewed is not None and previewed[2] is None:
            wanted = (*wanted[:2], None, *wanted[3:])
        return wanted != previewed

    def on_screen_resume(self) -> None:
        if self._stale():
            self.action_refresh()
        elif not self.running and not self.checking and self.findings is not None:
            # the plan stands; what it would meet may not (a key, a cap or a
            # field changed on another screen or outside): check again
            self._check()
            self._show_outcome()
        else:
            self._show_outcome()

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
        self._show_findings(None)
        self.query_one(CountsTable).show({})
        self._clear_views()  # rows of the last plan (another destination, maybe) are stale
        if settings is None:
            self._show_outcome()
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
        if message.error:
            self.failure = self.failure or message.error
            self.notify(
                message.error,
                title="Could not plan the export",
                severity="error",
                markup=False,
                timeout=10,
            )
        self._check()  # a failed dry-run too: the checks say what to fix
        self._show_outcome()

    def _show_outcome(self) -> None:
        """The status line: planning, checking, or what x would do now."""
        plan = f"plan {self.plan_id} · " if self.plan_id else ""
        problems = [f for f in self.findings or () if stops_x(f)]
        if self.running:
            self._show_status("planning…")
        elif self.segsync.export_settings(dry_run=True, quiet=True) is None:
            self._show_status("nothing to preview: pick a destination (1) and segments (2)")
        elif problems:
            many = "s" if len(problems) > 1 else ""
            self._show_status(f"{plan}not ready: {len(problems)} problem{many} below")
        elif self.failure is not None:
            self._show_status("the dry-run failed: fix the problem, then r")
        elif self.checking:
            self._show_status(f"{plan}checking what an export would meet…")
        elif self.findings is None:
            self._show_status(f"{plan}not checked: r plans and checks again")
        elif self.counts.get("to_send") or self.counts.get("to_remove"):
            self._show_status(f"{plan}ready · x applies it")
        else:
            self._show_status(f"{plan}nothing to send or remove")

    # -- the export's preflight ----------------------------------------------------

    def _check(self) -> None:
        """Ask the backend what an export of the plan on screen would meet."""
        settings = self.segsync.export_settings(dry_run=False, quiet=True)
        if settings is None:
            return
        settings = replace(settings, plan_id=self.plan_id)
        self.checked_for = (self.previewed, self.plan_id, settings)
        self.checking = True
        self._run_preflight(settings, self.checked_for)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="preflight",
        description="check what the export would meet",
    )
    def _run_preflight(self, settings: ExportSettings, token: tuple[Any, ...]) -> None:
        findings = self.call_backend(
            "check what the export would meet", lambda: self.backend.preflight(settings)
        )
        self.post_message(PreflightChecked(findings, token))

    def on_preflight_checked(self, message: PreflightChecked) -> None:
        if message.token != self.checked_for:
            return  # made for choices since changed
        self.checking = False
        self._show_findings(message.findings)
        self._show_outcome()

    def _show_findings(self, findings: list[Finding] | None) -> None:
        self.findings = findings
        panel = self.query_one("#preflight", Static)
        panel.update(render_findings(findings or ()))
        panel.display = bool(findings)
        self.refresh_bindings()  # the fix keys follow the problems listed

    def _finding(self, *kinds: str) -> Finding | None:
        return next((f for f in self.findings or () if f.kind in kinds), None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "fix_mapping":
            return self._finding(*MAPPING_KINDS) is not None
        if action == "create_fields":
            return self._finding("custom_fields") is not None
        if action == "raise_cap":
            return self._finding("cap") is not None
        if action == "allow_removals":
            return self._finding("removals") is not None and self.plan_id is not None
        return True

    def action_fix_mapping(self) -> None:
        """Open Mapping on the row to fix: the consent row for a consent
        problem, the custom field's row for a type problem."""
        finding = self._finding(*MAPPING_KINDS)
        if finding is not None and finding.kind in ("consent_choice", "no_consent_filter"):
            self.segsync.mapping_row = "consent"
        elif finding is not None and finding.kind == "field_types" and finding.names:
            self.segsync.mapping_row = f"custom:{finding.names[0]}"
        self.segsync.action_goto("mapping")

    def action_create_fields(self) -> None:
        finding = self._finding("custom_fields")
        destination = self.segsync.destination
        if finding is None or destination is None:
            return
        question = (
            f"Create the custom field(s) {', '.join(finding.names)} on the SendGrid account "
            f"of {destination.name}? Each is typed from its column (Number, Date or Text)."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._create_fields(destination.id)

        self.app.push_screen(ConfirmScreen(question, yes="Create", no="Not now"), answered)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="preview-fix",
        description="create the custom fields",
    )
    def _create_fields(self, destination_id: int) -> None:
        created = self.call_backend(
            "create the custom fields", lambda: self.backend.create_custom_fields(destination_id)
        )
        if created is not None:
            self.post_message(CustomFieldsCreated(created))

    def on_custom_fields_created(self, message: CustomFieldsCreated) -> None:
        names = ", ".join(message.names) or "none were missing any more"
        self.notify(f"Custom fields created: {names}. Planning again with their ids.")
        self.action_refresh()  # the plan carries field ids: the old one used names

    def action_raise_cap(self) -> None:
        finding = self._finding("cap")
        destination = self.segsync.destination
        if finding is None or destination is None:
            return

        def entered(value: str | None) -> None:
            if value is None:
                return
            try:
                cap = int(value.replace(",", "").replace("_", ""))
            except ValueError:
                self.notify(f"{value} is not a number of contacts.", severity="error")
                return
            self._set_cap(destination.id, cap)

        self.app.push_screen(
            PathPrompt(
                f"Cap for {destination.name}: the most contacts one export may send "
                f"(now {destination.cap:,})",
                str(finding.amount or destination.cap),
                hint="Enter to save it, Escape to cancel",
            ),
            entered,
        )

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="preview-fix",
        description="raise the cap",
    )
    def _set_cap(self, destination_id: int, cap: int) -> None:
        info = self.call_backend("raise the cap", lambda: self.backend.set_cap(destination_id, cap))
        if info is not None:
            self.post_message(CapRaised(info))

    def on_cap_raised(self, message: CapRaised) -> None:
        app = self.segsync
        info = message.destination
        app.destinations = [info if d.id == info.id else d for d in app.destinations]
        if app.destination is not None and app.destination.id == info.id:
            app.destination = info
        self.notify(f"{info.name} may now send up to {info.cap:,} contacts per export.")
        self._check()  # the plan stands (the cap is not what it was computed from)
        self._show_outcome()

    def action_allow_removals(self) -> None:
        finding = self._finding("removals")
        settings = self.segsync.export_settings(dry_run=False)
        if finding is None or settings is None or self.plan_id is None:
            return
        self.segsync.offer_removal_allowance(
            settings, self.plan_id, finding.message or finding.title
        )

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
        if self.running or self.checking:
            self.notify("The preview is still planning and checking; x once it is ready.")
            return
        settings = self.segsync.export_settings(dry_run=False)
        if settings is None:
            return
        if self._stale() or self.failure is not None:
            self.notify("Plan again first (r): the choices changed since this preview.")
            return
        problems = [f for f in self.findings or () if stops_x(f)]
        if problems:
            first = problems[0]
            self.notify(
                f"{first.title}. {fix_for(first)}.",
                title="Not ready: the export would be refused",
                severity="warning",
                markup=False,
            )
            return
        if self.findings is None:
            self.notify("What the export would meet is not checked yet: r checks again.")
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
