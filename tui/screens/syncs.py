"""Syncs: saved exports that run on a schedule, with their last and next run.

The schedule itself is run by `segsync syncs run-due` under a timer; this
screen shows what it did and will do, adds a sync from the app's current
choices, pauses and resumes one, and runs one now.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Static

from connector.models import SyncStatus
from tui.messages import BackendFailed, SyncRunsChanged
from tui.screens.base import SegsyncScreen, describe_error
from tui.screens.sync_form import SyncFormScreen
from tui.widgets import formatting
from tui.widgets.formatting import safe
from tui.widgets.row_table import Column, RowTable

COLUMNS = (
    Column("Name", "name", 10, grow=1),
    Column("Destination", "destination", 11, grow=2),
    Column("Trigger", "trigger", 12, grow=1),
    Column("Last result", "result", 11),
    Column("Run", "run", 4),
    Column("Next run", "next", 11, grow=2),
    Column("Paused", "paused", 6),
)

FAILED = ("failed", "refused", "rejected")
"""Results that count as a failure of a sync (and raise an alert)."""

RESULT_STYLE = {
    **formatting.RUN_STATUS_STYLE,
    "refused": "red",
    "rejected": "red",
    "skipped": "yellow",
    "running": "cyan",
}
"""A sync's last result in colour: a run's status in the run-status colours,
and the outcomes only a sync has (refused by a guardrail, too many rows
rejected by SendGrid, skipped while the destination was busy) beside them."""

ADD_BY_CLI = "segsync syncs add NAME --destination DEST --segment SEG --every 6h"


def local(value: datetime) -> datetime:
    """The time on this machine's clock: the backend records UTC."""
    return value.astimezone() if value.tzinfo is not None else value


def short_when(value: datetime) -> str:
    """Month, day and time ("11-29 02:00"): the year left out, as in the history table."""
    return formatting.when(local(value))[5:]


def result_text(result: str | None) -> Text:
    if result is None:
        return Text("never", style="dim")
    return safe(result.replace("_", " "), RESULT_STYLE.get(result, ""))


class SyncsLoaded(Message):
    def __init__(self, syncs: list[SyncStatus]) -> None:
        super().__init__()
        self.syncs = syncs


class SyncPaused(Message):
    """A sync was paused or resumed; `syncs` is the list read after it."""

    def __init__(self, name: str, paused: bool, syncs: list[SyncStatus]) -> None:
        super().__init__()
        self.name = name
        self.paused = paused
        self.syncs = syncs


class SyncRan(Message):
    """A run-now ended: the backend's result line (or why it could not run)
    and the list read after it, whose row says how it went."""

    def __init__(
        self, sync_id: int, name: str, line: str, error: str | None, syncs: list[SyncStatus]
    ) -> None:
        super().__init__()
        self.sync_id = sync_id
        self.name = name
        self.line = line
        self.error = error
        self.syncs = syncs


class SyncsScreen(SegsyncScreen):
    """Reads the syncs in a worker; a run started here shows "running…" on its
    row until its worker reports the result."""

    MODE = "syncs"
    PURPOSE = (
        "Saved exports that run on a schedule (segsync syncs run-due, under a timer): each "
        "one's last result and run, and its next run or what it waits for. Enter opens a "
        "sync's last run in History."
    )
    AUTO_FOCUS = "#syncs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "a",
            "add",
            "Add",
            tooltip="a sync of the current destination, segments and mode",
        ),
        Binding("p", "pause", "Pause/resume", tooltip="stop or restart the highlighted sync"),
        Binding(
            "r",
            "run_now",
            "Run now",
            tooltip="run the highlighted sync now (its schedule stays as it is)",
        ),
        Binding(
            "o",
            "open",
            "Last run",
            tooltip="open the highlighted sync's last run in History (also Enter)",
        ),
        Binding("f5", "refresh", "Reload", show=False, tooltip="read the syncs again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[SyncStatus] = []
        self.running: dict[int, str] = {}  # id -> name of syncs run from here, until they end
        self.loaded = False

    def compose_body(self) -> ComposeResult:
        yield RowTable(id="syncs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="sync-detail", classes="detail")

    def on_mount(self) -> None:
        table = self.query_one(RowTable)
        table.show_rows(COLUMNS, [])
        table.loading = True
        self.watch(self.app, "acknowledged_syncs", self._acknowledged, init=False)

    def _acknowledged(self) -> None:
        """The banner was dismissed (k) and the backend recorded it: the
        detail must stop listing those failures as not acknowledged."""
        if self.loaded:
            self.action_refresh()

    def on_screen_resume(self) -> None:
        """Each visit reads the syncs again: the timer may have run one since."""
        self.action_refresh()

    # -- loading ---------------------------------------------------------------

    def action_refresh(self) -> None:
        self._load()

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="syncs",
        description="read the syncs",
    )
    def _load(self) -> None:
        syncs = self.call_backend("read the syncs", self.backend.syncs)
        self.post_message(SyncsLoaded(syncs or []))

    def on_syncs_loaded(self, message: SyncsLoaded) -> None:
        self._show(message.syncs)

    def _show(self, syncs: list[SyncStatus]) -> None:
        self.syncs = syncs
        self.loaded = True
        self._fill()

    def _fill(self) -> None:
        """(Re)draw the syncs for the width; the cursor keeps its row."""
        table = self.query_one(RowTable)
        table.loading = False
        rows = []
        for sync in self.syncs:
            running = sync.running or sync.id in self.running
            cells = (
                safe(sync.name, no_wrap=True, overflow="ellipsis"),
                safe(sync.destination, no_wrap=True, overflow="ellipsis"),
                safe(sync.trigger, no_wrap=True, overflow="ellipsis"),
                Text("running…", style="cyan") if running else result_text(sync.last_result),
                Text(str(sync.last_run_id) if sync.last_run_id else "-", justify="right"),
                self._next_run(sync),
                Text("paused", style="yellow") if sync.paused else Text("no", style="dim"),
            )
            rows.append((str(sync.id), cells))
        table.show_rows(COLUMNS, rows)
        self._show_detail()

    @staticmethod
    def _next_run(sync: SyncStatus) -> Text:
        if sync.paused:
            return Text("- (paused)", style="dim")
        if sync.next_run_at is not None:
            return Text(short_when(sync.next_run_at))
        return safe(sync.waiting_for or "-", "dim", no_wrap=True, overflow="ellipsis")

    def _highlighted(self) -> SyncStatus | None:
        table = self.query_one(DataTable)
        if not self.syncs or table.cursor_row < 0:
            return None
        return self.syncs[min(table.cursor_row, len(self.syncs) - 1)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#sync-detail", Static)
        if not self.syncs:
            detail.update(
                Text.assemble(
                    "No syncs yet. Press a to add one from the current destination, "
                    "segments and mode, or on the command line:\n",
                    (ADD_BY_CLI, "bold"),
                )
            )
            return
        sync = self._highlighted()
        if sync is None:
            return
        text = Text()
        text.append(safe(sync.name, "bold"))
        text.append(safe(f" sends {', '.join(sync.segments)} to {sync.destination} ({sync.mode})"))
        text.append("\n")
        if sync.last_attempt_at is None:
            text.append("Not run yet.", style="dim")
        else:
            text.append("Last ")
            text.append(result_text(sync.last_result))
            text.append(f" at {formatting.when(local(sync.last_attempt_at))}")
            if sync.last_run_id:
                text.append(f" (run {sync.last_run_id}: Enter opens it)")
        if sync.last_message:
            text.append("\n")
            text.append(safe(sync.last_message, "yellow", multiline=True))
        if not sync.paused and sync.next_run_at is None and sync.waiting_for:
            text.append("\n")
            text.append(safe(f"Waits for {sync.waiting_for}.", "dim"))
        if sync.alerts:
            failures = f"{sync.alerts} failure{'s' if sync.alerts > 1 else ''}"
            text.append(f"\n{failures} not acknowledged", style="bold red")
        detail.update(text)

    # -- actions ---------------------------------------------------------------

    def action_add(self) -> None:
        """The form takes the app's current choices: a sync is the export the
        user has set up on screens 1 to 4, given a name and a trigger."""
        app = self.segsync
        if app.destination is None:
            self.notify("Pick a destination first (1, then Enter on a row).", severity="warning")
            return
        if not app.selection:
            self.notify("Pick at least one segment first (2, then Space).", severity="warning")
            return
        form = SyncFormScreen(
            self.backend,
            app.destination,
            app.selection,
            "mirror" if app.mode_setting == "mirror" else "upsert",
            app.incremental,
        )
        self.app.push_screen(form, self._added)

    def _added(self, sync: SyncStatus | None) -> None:
        if sync is None:
            return
        when = (
            f"next run {short_when(sync.next_run_at)}"
            if sync.next_run_at is not None
            else f"waits for {sync.waiting_for or 'its trigger'}"
        )
        self.notify(f"Added sync {sync.name}: {sync.trigger}, {when}.")
        self.action_refresh()

    def action_pause(self) -> None:
        sync = self._highlighted()
        if sync is not None:
            self._pause(sync, not sync.paused)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="sync-pause",
        description="pause or resume the sync",
    )
    def _pause(self, sync: SyncStatus, paused: bool) -> None:
        try:
            self.backend.pause_sync(sync.id, paused)
        except Exception as error:
            what = "pause the sync" if paused else "resume the sync"
            self.post_message(BackendFailed(what, describe_error(error)))
            return
        syncs = self.call_backend("read the syncs", self.backend.syncs)
        self.post_message(SyncPaused(sync.name, paused, syncs or []))

    def on_sync_paused(self, message: SyncPaused) -> None:
        if message.paused:
            self.notify(f"Paused {message.name}: it will not run until resumed (p).")
        else:
            self.notify(f"Resumed {message.name}.")
        self._show(message.syncs)

    def action_run_now(self) -> None:
        sync = self._highlighted()
        if sync is None:
            return
        if sync.running or sync.id in self.running:
            self.notify(f"{sync.name} is running already.", severity="warning")
            return
        self.running[sync.id] = sync.name
        self.post_message(SyncRunsChanged(tuple(self.running.values())))  # bubbles to the app
        self._fill()
        self._run_now(sync)

    @work(
        thread=True,
        exclusive=False,  # one worker per sync: running one does not stop another
        exit_on_error=False,
        group="sync-run",
        description="run the sync",
    )
    def _run_now(self, sync: SyncStatus) -> None:
        try:
            line, error = self.backend.run_sync_now(sync.id), None
        except Exception as failure:
            line, error = "", describe_error(failure)
        syncs = self.call_backend("read the syncs", self.backend.syncs)
        self.post_message(SyncRan(sync.id, sync.name, line, error, syncs or self.syncs))

    def on_sync_ran(self, message: SyncRan) -> None:
        self.running.pop(message.sync_id, None)
        self.post_message(SyncRunsChanged(tuple(self.running.values())))
        if message.error is not None:
            self.notify(
                message.error,
                title=f"Could not run {message.name}",
                severity="error",
                timeout=10,
            )
        else:
            now = next((s for s in message.syncs if s.id == message.sync_id), None)
            failed = now is not None and now.last_result in FAILED
            self.notify(
                message.line,
                title=f"Sync {message.name}",
                severity="error" if failed else "information",
                timeout=10 if failed else None,
            )
        self._show(message.syncs)

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        await self.action_open()

    async def action_open(self) -> None:
        sync = self._highlighted()
        if sync is None:
            return
        if sync.last_run_id is None:
            self.notify(f"{sync.name} has no run yet: r runs it now.")
            return
        await self.segsync.open_run(sync.last_run_id)
