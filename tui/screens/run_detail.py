"""One run: configuration snapshot, batches, rejected rows; resume, re-run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane

from store.records import RunDetail
from tui.backend import Backend, ExportSettings
from tui.messages import (
    BackendFailed,
    PeopleLoaded,
    PlanToConfirm,
    RejectedExported,
    RunDetailLoaded,
)
from tui.screens.base import describe_error
from tui.screens.pickers import PathPrompt
from tui.widgets import formatting
from tui.widgets.counts_table import CountsTable
from tui.widgets.formatting import safe
from tui.widgets.row_table import RowTable

if TYPE_CHECKING:
    from tui.app import SegsyncApp

RESUMABLE = ("interrupted", "cancelled", "failed")
_PEOPLE_STYLE = {
    "added": "green",
    "removed": "yellow",
    "rejected": "dim",
    "rejected_by_sendgrid": "red",
    "remove_failed": "bold red",
    "not_sent": "dim",
}
_VIEWS = ("summary", "batches", "rejected", "people")
PEOPLE_SHOWN = 500
REJECTED_SHOWN = 200
"""Rejected rows the Rejected tab shows; the CSV export (e) writes all of them."""


class RunDetailScreen(Screen[None]):
    """Pushed over History; Escape goes back."""

    HELP_TITLE = "Run detail"
    PURPOSE = (
        "One run: its counts and configuration, the people it touched (added, updated, "
        "removed, rejected, with why), its batches with their SendGrid jobs, and the rows "
        "that were rejected (e writes them all to CSV). Resume (u) continues an "
        "interrupted, cancelled or failed run without resending confirmed batches; undo (z) "
        "takes off the list who it added and puts back who it removed, after a look at the plan."
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", tooltip="back to the list of runs"),
        Binding("v", "next_view", "View", tooltip="summary, batches or rejected rows, in turn"),
        Binding(
            "e",
            "export_csv",
            "Rejected→CSV",
            tooltip="write every rejected row of this run to a CSV file",
        ),
        Binding(
            "u",
            "resume",
            "Resume",
            tooltip="continue this run; confirmed batches are not sent again",
        ),
        Binding(
            "R",
            "rerun",
            "Re-run",
            tooltip="a new run with this run's destination, segments and mode",
        ),
        Binding(
            "z",
            "undo",
            "Undo",
            tooltip="take off the list who this run added, put back who it removed (asks first)",
        ),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.detail: RunDetail | None = None

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield Static(Text(f"Run {self.run_id}: loading…"), id="run-title")
        with TabbedContent(id="run-views"):
            with TabPane("Summary", id="summary"):
                yield CountsTable(id="run-counts")
                with VerticalScroll(id="config-scroll"):
                    yield Static("", id="run-config")
            with TabPane("Batches", id="batches"):
                yield RowTable(id="run-batches", zebra_stripes=True, cursor_type="row")
            with TabPane("Rejected", id="rejected"):
                yield RowTable(id="run-rejected", zebra_stripes=True, cursor_type="row")
            with TabPane("People", id="people"):
                yield RowTable(id="run-people", zebra_stripes=True, cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#run-batches", DataTable).add_columns(
            "#", "Contacts", "Job id", "Status", "Created", "Updated", "Errored"
        )
        self.query_one("#run-rejected", DataTable).add_columns("Key", "Email", "Reason", "Batch")
        self.query_one("#run-people", DataTable).add_columns("What", "Email", "Key", "Why")
        self._load()

    @property
    def segsync(self) -> SegsyncApp:
        return self.app  # type: ignore[return-value]

    @property
    def backend(self) -> Backend:
        return self.segsync.backend

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        detail = self.detail
        if action == "resume":
            return detail is not None and detail.status in RESUMABLE and not detail.dry_run
        if action in ("rerun", "export_csv"):
            return detail is not None
        if action == "undo":
            return detail is not None and not detail.dry_run and detail.status != "running"
        return True

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="run-detail",
        description="read the run",
    )
    def _load(self) -> None:
        try:
            detail = self.backend.run_detail(self.run_id)
            rejected = self.backend.rejected_rows(self.run_id, REJECTED_SHOWN)
            people = self.backend.run_people(self.run_id, limit=PEOPLE_SHOWN)
        except Exception as error:
            self.post_message(BackendFailed("read the run", describe_error(error)))
        else:
            self.post_message(RunDetailLoaded(detail, rejected))
            self.post_message(PeopleLoaded(people))

    def on_run_detail_loaded(self, message: RunDetailLoaded) -> None:
        self.detail = run = message.detail
        title = Text.assemble(
            (f"Run {run.id}", "bold"),
            safe(f" · {run.destination_name} · {', '.join(run.segments)} · "),
            safe("dry-run" if run.dry_run else run.mode),
            " · ",
            safe(run.status.replace("_", " "), "bold"),
            safe(
                f" · {formatting.when(run.started_at)} · {formatting.duration(run.seconds)}"
                f" · {run.operator}" + (f"@{run.host}" if run.host else "")
            ),
        )
        if run.message:
            title.append("\n")
            title.append(safe(run.message, "yellow", multiline=True))
        self.query_one("#run-title", Static).update(title)
        self.query_one("#run-counts", CountsTable).show(run.counts)
        self.query_one("#run-config", Static).update(
            safe(json.dumps(run.config, indent=2, sort_keys=True, default=str), multiline=True)
        )
        batches = self.query_one("#run-batches", DataTable)
        batches.clear()
        for b in run.batches:
            batches.add_row(
                str(b.seq),
                f"{b.contacts:,}",
                safe(b.job_id or ""),
                safe(b.status),
                f"{b.created or 0:,}",
                f"{b.updated or 0:,}",
                f"{b.errored or 0:,}",
            )
        rejected = self.query_one("#run-rejected", DataTable)
        rejected.clear()
        for r in message.rejected:
            rejected.add_row(
                safe(r.key or ""),
                safe(r.email or "∅"),
                safe(r.reason, "yellow"),
                "" if r.seq is None else str(r.seq),
            )
        if run.rejected > len(message.rejected):
            rejected.add_row(
                "",
                Text(
                    f"… {run.rejected - len(message.rejected):,} more: e writes them all to CSV",
                    style="dim",
                ),
                "",
                "",
            )
        self.refresh_bindings()

    def on_people_loaded(self, message: PeopleLoaded) -> None:
        """Who the run touched and how, from its people record (first 500 by kind)."""
        table = self.query_one("#run-people", DataTable)
        table.clear()
        for person in message.people:
            table.add_row(
                safe(person.op.replace("_", " "), _PEOPLE_STYLE.get(person.op, "")),
                safe(person.email or "∅"),
                safe(person.key or ""),
                safe(person.reason or ""),
            )
        if not message.people:
            table.add_row("", Text("no record of the people this run touched", style="dim"), "", "")
        elif len(message.people) >= PEOPLE_SHOWN:
            table.add_row(
                "",
                Text(f"first {PEOPLE_SHOWN}: segsync runs show {self.run_id} --people --csv FILE",
                     style="dim"),
                "",
                "",
            )  # fmt: skip

    # -- actions -----------------------------------------------------------------

    def action_undo(self) -> None:
        self._plan_undo()

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="run-undo",
        description="plan the undo",
    )
    def _plan_undo(self) -> None:
        try:
            review = self.backend.undo_plan(self.run_id)
        except Exception as error:
            self.post_message(BackendFailed("plan the undo", describe_error(error)))
        else:
            plan = review.plan
            settings = ExportSettings(
                destination_id=plan.destination_id, segments=(), plan_id=plan.id
            )
            self.post_message(PlanToConfirm(settings, review))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_next_view(self) -> None:
        tabs = self.query_one(TabbedContent)
        current = _VIEWS.index(tabs.active) if tabs.active in _VIEWS else -1
        tabs.active = _VIEWS[(current + 1) % len(_VIEWS)]

    def action_export_csv(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self._write_csv(Path(path).expanduser())

        self.app.push_screen(
            PathPrompt(
                "Write this run's rejected rows to", f"segsync-run-{self.run_id}-rejected.csv"
            ),
            chosen,
        )

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="run-csv",
        description="write rejected rows",
    )
    def _write_csv(self, path: Path) -> None:
        try:
            rows = self.backend.write_rejected_csv(self.run_id, path)
        except Exception as error:
            self.post_message(BackendFailed("write the CSV", describe_error(error)))
        else:
            self.post_message(RejectedExported(str(path), rows))

    def on_rejected_exported(self, message: RejectedExported) -> None:
        self.notify(f"Wrote {message.rows:,} rejected rows to {message.path}", markup=False)

    def _start(self, resume: bool) -> None:
        run = self.detail
        if run is None:
            return
        settings = ExportSettings(
            destination_id=run.destination_id,
            segments=run.segments,
            mode="mirror" if run.mode == "mirror" else "upsert",
            incremental=bool(run.config.get("incremental", False)),
            dry_run=run.dry_run and not resume,
            resume_run=run.id if resume else None,
        )
        self.app.pop_screen()
        self.segsync.confirm_export(settings, None)

    def action_resume(self) -> None:
        self._start(resume=True)

    def action_rerun(self) -> None:
        self._start(resume=False)
