"""Export: live progress of a run, from the engine's events."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from connector.events import (
    BatchSent,
    BatchSkipped,
    ContactsRemoved,
    JobFinished,
    PhaseStarted,
    PlanReady,
    RateLimitWait,
    RetryScheduled,
    RowsRejected,
    RunFinished,
    RunStarted,
)
from connector.events import Warning as EngineWarning
from tui.backend import ExportSettings
from tui.messages import (
    EngineEvent,
    ExportEnded,
    ExportProgress,
    ExportStateChanged,
)
from tui.relay import ExportRunner
from tui.screens.base import SegsyncScreen
from tui.screens.confirm import ConfirmScreen
from tui.widgets.event_log import EventLog
from tui.widgets.export_progress import ExportProgress as ProgressPanel
from tui.widgets.formatting import duration, safe
from tui.widgets.row_table import Column, Row, RowTable

_JOB_STYLE = {
    "completed": "green",
    "errored": "yellow",
    "failed": "bold red",
    "pending": "cyan",
    "skipped": "dim",
}
_RUN_STYLE = {
    "succeeded": "bold green",
    "partial": "bold yellow",
    "failed": "bold red",
    "cancelled": "bold yellow",
    "interrupted": "bold red",
    "refused": "bold red",
    "dry_run": "bold cyan",
}
_NEXT_STEPS = {
    "succeeded": "All contacts are on the list. h opens this run in history.",
    "partial": "Some rows were rejected or some removals were not confirmed: h opens "
    "the run, where its people and rejected rows can be read and exported to CSV.",
    "refused": "Nothing was sent: a guardrail stopped the run before its first request.",
    "failed": "Nothing more was sent. Read the error above, fix it, then resume "
    "the run from history (h, then u).",
    "cancelled": "Batches already sent stay on the list. Resume from history (h, then u).",
    "interrupted": "Resume from history (h, then u): confirmed batches are not resent.",
}


BATCH_COLUMNS = (
    Column("#", "seq", 4),
    Column("Contacts", "contacts", 9),
    Column("Job id", "job", 16, grow=1),  # whole when there is room: support asks for it
    Column("Status", "status", 12),
    Column("Created", "created", 7),
    Column("Updated", "updated", 7),
    Column("Errored", "errored", 7),
)


class ExportScreen(SegsyncScreen):
    """Phase, progress, batches with their job status, and a log of waits,
    retries, warnings and errors as they happen; a summary at the end."""

    MODE = "export"
    PURPOSE = (
        "The export as it runs: phase, progress, each batch with its SendGrid job, and a log "
        "of waits, retries and rejections. At the end a summary says what happened and what "
        "to do next."
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "c",
            "cancel",
            "Cancel export",
            tooltip="stop after the requests in flight; the run can be resumed",
        ),
        Binding("h", "history", "Open in history", tooltip="this run's batches and rejected rows"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.batches: dict[int, dict[str, str | Text]] = {}  # seq -> column key -> cell
        self.runner: ExportRunner | None = None
        self.run_id: int | None = None
        self.finished: RunFinished | None = None
        self.settings: ExportSettings | None = None
        self.plan_id: int | None = None  # the plan this export applies (from PlanReady)
        self.cancel_question: ConfirmScreen | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(
            Text("No export running. Preview (4) shows the plan; x there exports."),
            id="run-line",
            classes="status",
        )
        yield ProgressPanel()
        yield RowTable(id="batches", cursor_type="row", zebra_stripes=True)
        yield EventLog(id="export-log")
        yield Static("", id="summary", classes="summary")

    def on_mount(self) -> None:
        self.query_one("#batches", RowTable).show_rows(BATCH_COLUMNS, [])

    @property
    def running(self) -> bool:
        return self.runner is not None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.running
        if action == "history":
            return self.run_id is not None
        return True

    # -- starting ----------------------------------------------------------------

    def start(self, settings: ExportSettings) -> None:
        """Run `settings`; refuses while another export runs on this screen."""
        if self.running:
            self.notify(
                "An export is already running; wait for it or cancel it (c).", severity="warning"
            )
            return
        self.run_id = None
        self.finished = None
        self.settings = settings
        self.plan_id = settings.plan_id
        self.batches = {}
        self._show_batches()
        self.query_one(EventLog).clear()
        self.query_one("#summary", Static).update("")
        self.query_one(ProgressPanel).set_phase("planning", None)
        verb = "Resuming run" if settings.resume_run else "Starting export"
        self.query_one("#run-line", Static).update(
            safe(f"{verb} of {', '.join(settings.segments)}…")
        )
        self.runner = ExportRunner(
            lambda cancel: self.backend.export(settings, cancel),
            self.post_message,
            self.segsync.clock,
        )
        self._run(self.runner)
        self.post_message(ExportStateChanged(self.runner))  # bubbles to the app
        self.refresh_bindings()

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="export",
        description="run the export",
    )
    def _run(self, runner: ExportRunner) -> None:
        runner.run()

    # -- events ------------------------------------------------------------------

    def _log(self, text: Text) -> None:
        self.query_one(EventLog).write(text)

    def on_engine_event(self, message: EngineEvent) -> None:
        message.stop()
        event = message.event
        if isinstance(event, RunStarted):
            self.run_id = event.run_id
            what = event.mode if event.undo_of is None else f"undo of run {event.undo_of}"
            text = Text.assemble(
                (f"Run {event.run_id}", "bold"),
                safe(f" · {event.destination} · {', '.join(event.segments)} · {what}"),
                " · resumed" if event.resumed else "",
            )
            self.query_one("#run-line", Static).update(text)
            self.refresh_bindings()
        elif isinstance(event, PhaseStarted):
            self.query_one(ProgressPanel).set_phase(event.phase, event.total)
        elif isinstance(event, PlanReady):
            counts = event.counts
            self.plan_id = event.plan_id or self.plan_id
            requests = f" in at least {event.batches:,} request(s)" if event.batches else ""
            removals = f", remove {counts['to_remove']:,}" if counts.get("to_remove") else ""
            self._log(
                Text(
                    f"Plan {event.plan_id}: add {counts.get('to_add', 0):,}, update "
                    f"{counts.get('to_update', 0):,}{removals}; {counts.get('to_send', 0):,} "
                    f"to send{requests}, {counts.get('selected', 0):,} selected"
                )
            )
        elif isinstance(event, BatchSent):
            self._batch_row(
                event.seq,
                contacts=f"{event.contacts:,}",
                job=safe(event.job_id),
                status=Text("pending", style=_JOB_STYLE["pending"]),
            )
            table = self.query_one("#batches", RowTable)
            table.move_cursor(row=table.row_count - 1)
        elif isinstance(event, BatchSkipped):
            # a resume first confirms the old run's pending jobs (JobFinished
            # adds their rows), then lists every confirmed batch as skipped
            if not self._has_batch(event.seq):
                self._batch_row(
                    event.seq,
                    contacts=f"{event.contacts:,}",
                    status=Text("already sent", style=_JOB_STYLE["skipped"]),
                )
        elif isinstance(event, JobFinished):
            self._job_finished(event)
        elif isinstance(event, RateLimitWait):
            self._log(
                safe(
                    f"Waiting {event.seconds:.0f} s for SendGrid's rate limit ({event.endpoint})",
                    "yellow",
                )
            )
        elif isinstance(event, RetryScheduled):
            self._log(
                safe(f"Retry {event.attempt} in {event.seconds:.1f} s: {event.reason}", "yellow")
            )
        elif isinstance(event, ContactsRemoved):
            failed = f", {event.failed:,} not confirmed" if event.failed else ""
            self._log(
                Text(
                    f"Removed {event.removed:,} of {event.total:,} from the list "
                    f"(read back from SendGrid){failed}",
                    style="yellow" if event.failed else "",
                )
            )
        elif isinstance(event, RowsRejected):
            first = f" (first: {event.rows[0][0]}: {event.rows[0][1]})" if event.rows else ""
            self._log(
                safe(f"Batch {event.seq}: SendGrid rejected {len(event.rows):,} rows{first}", "red")
            )
        elif isinstance(event, EngineWarning):
            self._log(safe(event.message, "yellow", multiline=True))
        elif isinstance(event, RunFinished):
            self.finished = event
            self._summarise(event)
            self._offer_allowance(event)

    def _job_finished(self, event: JobFinished) -> None:
        self._batch_row(
            event.seq,
            job=safe(event.job_id),
            status=safe(event.status, _JOB_STYLE.get(event.status, "")),
            created=f"{event.created:,}",
            updated=f"{event.updated:,}",
            errored=f"{event.errored:,}",
        )

    def _has_batch(self, seq: int) -> bool:
        return seq in self.batches

    def _batch_row(self, seq: int, **cells: str | Text) -> None:
        """Set some cells of batch `seq`'s row, adding the row if it is new.
        Events about one batch can come in any order (a resume confirms jobs
        sent before it stopped, then lists them as skipped), so rows are kept
        by seq, never added twice."""
        row = self.batches.setdefault(seq, {"seq": str(seq)})
        row.update(cells)
        self._show_batches()

    def _show_batches(self) -> None:
        """The batches table, laid out for the width (a run has tens of
        batches, so redrawing it whole on each event is cheap)."""
        rows: list[Row] = [
            (str(seq), tuple(cells.get(c.key, "") for c in BATCH_COLUMNS))
            for seq, cells in self.batches.items()
        ]
        self.query_one("#batches", RowTable).show_rows(BATCH_COLUMNS, rows)

    def on_export_progress(self, message: ExportProgress) -> None:
        message.stop()
        self.query_one(ProgressPanel).set_progress(message.done, message.total, message.at)

    def _offer_allowance(self, event: RunFinished) -> None:
        """A removal guardrail refused the run before any request: show the plan
        again with the reason; a yes applies it allowing exactly its removals."""
        if event.status != "refused" or self.settings is None or self.plan_id is None:
            return
        if "would remove" in event.message:
            self.segsync.offer_removal_allowance(self.settings, self.plan_id, event.message)

    def on_export_ended(self, message: ExportEnded) -> None:
        message.stop()
        question, self.cancel_question = self.cancel_question, None
        if question is not None and self.app.screen is question:
            question.dismiss(False)  # still open over the result: it no longer applies
        self.runner = None
        self.post_message(ExportStateChanged(None))
        self.refresh_bindings()
        if self.finished is not None:
            return
        if message.error:
            self._log(safe(f"Export stopped: {message.error}", "bold red", multiline=True))
            self.notify(
                message.error, title="Export failed", severity="error", markup=False, timeout=10
            )
            self._summarise(RunFinished(self.run_id or 0, "failed", message=message.error))
        elif message.cancelled:
            self._summarise(RunFinished(self.run_id or 0, "cancelled", message="Cancelled by you."))

    def _summarise(self, event: RunFinished) -> None:
        self.query_one(ProgressPanel).set_phase("done", None)
        text = Text()
        text.append(event.status.replace("_", " ").upper(), style=_RUN_STYLE.get(event.status, ""))
        if event.seconds:
            text.append(f" in {duration(event.seconds)}")
        counts = event.counts
        if counts:
            shown = [
                f"{k.replace('_', ' ')} {counts[k]:,}"
                for k in ("sent", "created", "updated", "errored", "removed", "remove_failed")
                if k in counts
            ]
            if shown:
                text.append(" · " + " · ".join(shown))
        if event.message:
            text.append("\n")
            text.append(safe(event.message, multiline=True))
        next_step = _NEXT_STEPS.get(event.status)
        if next_step:
            text.append("\n")
            text.append(next_step, style="italic")
        self.query_one("#summary", Static).update(text)

    # -- actions -----------------------------------------------------------------

    def action_cancel(self) -> None:
        runner = self.runner
        if runner is None:
            return

        def answered(yes: bool | None) -> None:
            if yes and self.runner is runner:
                self._log(Text("Cancelling: waiting for requests in flight…", style="yellow"))
                self._cancel(runner)

        self.cancel_question = ConfirmScreen(
            "Cancel this export? Batches already sent stay on the list; the run is "
            "recorded as cancelled and can be resumed from history.",
            yes="Cancel export",
            no="Keep going",
        )
        self.app.push_screen(self.cancel_question, answered)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="export-cancel",
        description="cancel the export",
    )
    def _cancel(self, runner: ExportRunner) -> None:
        runner.cancel()

    async def action_history(self) -> None:
        if self.run_id is not None:
            await self.segsync.open_run(self.run_id)
