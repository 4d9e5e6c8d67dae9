"""The segsync terminal app: seven screens switched by number keys.

Startup is kept light on purpose: this module and the screens import only
Textual and what the first screen draws. DuckDB, SQLModel, pyarrow and httpx
are imported by the backend inside worker threads, after the first paint, and
so are the records (`store.records`, `connector.events`): the modules here
name them for type checking only (see `tui.messages`).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from connector.consent import CONSENT_STATEMENT
from store.safe_text import visible
from tui.backend import (
    Backend,
    ExportSettings,
)
from tui.commands import SegsyncCommands
from tui.messages import (
    BackendFailed,
    ConsentGivenForExport,
    ExportApproved,
    ExportStateChanged,
    PlanToConfirm,
    RememberedLoaded,
    SelectionRestored,
    SyncRunsChanged,
    WorkspaceSwitched,
)
from tui.screens.base import describe_error
from tui.screens.confirm import ConfirmScreen
from tui.screens.consent import ConsentScreen
from tui.screens.destinations import DestinationsScreen
from tui.widgets.formatting import safe_content
from tui.widgets.screen_tabs import SCREENS
from tui.widgets.sync_banner import ACKNOWLEDGE_KEY, SyncAlertsAcknowledged, SyncAlertsLoaded

if TYPE_CHECKING:  # records only arrive from workers, after the first paint
    from store.records import Destination, FieldMapping, SyncAlert
    from tui.relay import ExportRunner


def _lazy_screen(module: str, name: str) -> Callable[[], Screen[Any]]:
    """A factory importing the screen's module on first visit: the widgets
    only other screens use (tabs, logs, progress bars) stay out of start-up."""

    def make() -> Screen[Any]:
        screen: Screen[Any] = getattr(importlib.import_module(f"tui.screens.{module}"), name)()
        return screen

    return make


WORKSPACE_MODES = ("segments", "mapping", "preview")
"""Screens that show the workspace: rebuilt when the workspace is switched."""

QUIT_GRACE_SECONDS = 15.0
"""How long a quit waits for a cancelled export to record itself."""


class SegsyncApp(App[None]):
    """Holds what the screens share (backend, chosen destination, segments,
    mapping) and routes between screens; screens own their own widgets."""

    TITLE = "segsync"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere work
    ENABLE_COMMAND_PALETTE = True
    COMMANDS = App.COMMANDS | {SegsyncCommands}
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        "destinations": DestinationsScreen,
        "segments": _lazy_screen("segments", "SegmentsScreen"),
        "mapping": _lazy_screen("mapping", "MappingScreen"),
        "preview": _lazy_screen("preview", "PreviewScreen"),
        "export": _lazy_screen("export", "ExportScreen"),
        "history": _lazy_screen("history", "HistoryScreen"),
        "syncs": _lazy_screen("syncs", "SyncsScreen"),
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(key, f"goto('{mode}')", title, show=False, id=f"goto-{mode}")
            for key, mode, title in SCREENS
        ),
        Binding("question_mark,f1", "help", "Help", key_display="?", id="help"),
        Binding(
            "w",
            "switch_workspace",
            "Switch workspace",
            show=False,
            id="switch-workspace",
            tooltip="one this state folder knows, or a folder you type",
        ),
        Binding("q", "quit_key", "Quit", show=False, id="quit-q"),
        Binding("ctrl+q", "quit", "Quit", priority=True, id="quit"),
        # the palette's "Keys" panel has no key of its own to close it
        Binding("escape", "hide_keys_panel", "Hide keys", show=False, priority=True),
        # shown by the banner itself, and only while it is
        Binding(
            ACKNOWLEDGE_KEY,
            "acknowledge_sync_alerts",
            "Acknowledge sync failures",
            show=False,
            id="acknowledge-sync-alerts",
        ),
    ]

    sync_alerts: reactive[tuple[SyncAlert, ...]] = reactive(())
    """Failures of scheduled syncs nobody acknowledged; each screen's banner watches it."""
    acknowledged_syncs: reactive[tuple[int, ...]] = reactive((), always_update=True)
    """Syncs whose failures were just recorded as seen; the Syncs screen reloads on it."""

    def __init__(
        self,
        backend: Backend,
        *,
        first_screen: str = "destinations",
        destination: str | None = None,
        demo: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.clock = clock  # timestamps progress (rows/s, ETA); tests pass a fixed one
        if demo:
            self.title = "segsync demo · local emulator"
        self.backend = backend
        self.first_screen = first_screen
        self.wanted_destination = destination
        self.destination: Destination | None = None
        self.destinations: list[Destination] = []
        # remembered for the next launch once what was remembered is read
        self.remember_ready = False
        self.remembered_destination: int | None = None
        self._selection: tuple[str, ...] = ()
        self.mapping: FieldMapping | None = None
        self.mapping_row: str | None = None  # a row Mapping should show first (a fix)
        self.mode_setting: str = "upsert"
        self.incremental: bool = False
        self.export_runner: ExportRunner | None = None  # set while a real export runs
        self.quitting = False  # the user chose to quit: exit once the export ends
        self.quit_question: ConfirmScreen | None = None  # "quit while exporting?" if open
        self.syncs_running: tuple[str, ...] = ()  # run-now syncs in progress (names)

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self._update_subtitle()
        self.switch_mode(self.first_screen)
        # after the first paint: reading them opens the history database
        self.call_after_refresh(self._load_sync_alerts)
        self.call_after_refresh(self._load_remembered)

    # -- remembered between launches ------------------------------------------------

    @property
    def selection(self) -> tuple[str, ...]:
        """The segments picked; every change is remembered for the next launch."""
        return self._selection

    @selection.setter
    def selection(self, names: tuple[str, ...]) -> None:
        changed = tuple(names) != self._selection
        self._selection = tuple(names)
        if changed:
            self._remember_choices()

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="remembered",
        description="read what was used last",
    )
    def _load_remembered(self) -> None:
        try:
            destination_id = self.backend.remembered_destination()
        except Exception:  # a convenience: start with nothing remembered
            destination_id = None
        self.post_message(RememberedLoaded(destination_id))

    def on_remembered_loaded(self, message: RememberedLoaded) -> None:
        self.remembered_destination = message.destination_id
        self.remember_ready = True
        if self.destination is None and self.destinations:
            self._pick_destination()
            self._update_subtitle()

    def _remember_choices(self) -> None:
        if not self.remember_ready:
            return  # never overwrite what was remembered before reading it
        destination = self.destination.id if self.destination is not None else None
        self._remember(destination, self._selection)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="remember",
        description="remember the destination and segments",
    )
    def _remember(self, destination_id: int | None, segments: tuple[str, ...]) -> None:
        try:
            self.backend.remember(destination_id, segments)
        except Exception as error:
            self.post_message(BackendFailed("remember the choices", describe_error(error)))

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="selection",
        description="read the segments picked last",
    )
    def _restore_selection(self, destination_id: int) -> None:
        try:
            names = self.backend.saved_selection(destination_id)
        except Exception as error:
            self.post_message(BackendFailed("read the segments picked last", describe_error(error)))
        else:
            self.post_message(SelectionRestored(destination_id, tuple(names)))

    def on_selection_restored(self, message: SelectionRestored) -> None:
        current = self.destination
        if current is None or current.id != message.destination_id:
            return  # another destination was picked meanwhile
        if not self.selection:
            self._selection = message.segments
        self._remember_choices()  # the destination now in use, with its picks

    # -- workspaces -----------------------------------------------------------------

    def action_switch_workspace(self) -> None:
        from tui.screens.workspace_picker import WorkspacePicker

        if self.export_runner is not None:
            self.notify("An export is running: switch workspace once it has ended.")
            return

        def picked(path: str | None) -> None:
            if path:
                self._switch_workspace(path)

        self.push_screen(WorkspacePicker(), picked)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="workspace",
        description="open the workspace",
    )
    def _switch_workspace(self, path: str) -> None:
        try:
            label = self.backend.switch_workspace(path)
        except Exception as error:
            self.post_message(BackendFailed("open the workspace", describe_error(error)))
        else:
            self.post_message(WorkspaceSwitched(label))

    async def on_workspace_switched(self, message: WorkspaceSwitched) -> None:
        """Segments, mapping and preview describe the old workspace: they are
        built afresh, and the segments picked last here are restored."""
        self.mapping = None
        self._selection = ()
        if self.current_mode in WORKSPACE_MODES:
            await self.switch_mode("destinations")
        for mode in WORKSPACE_MODES:
            await self.remove_mode(mode)
            self.add_mode(mode, self.MODES[mode])
        if self.destination is not None:
            self._restore_selection(self.destination.id)
        self._update_subtitle()
        self.notify(f"Workspace: {message.label}")
        await self.switch_mode("segments")

    # -- failed scheduled syncs --------------------------------------------------

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="sync-alerts",
        description="read the failed syncs",
    )
    def _load_sync_alerts(self) -> None:
        try:
            alerts = self.backend.sync_alerts()
        except Exception as error:
            self.post_message(BackendFailed("read the failed syncs", describe_error(error)))
        else:
            self.post_message(SyncAlertsLoaded(alerts))

    def on_sync_alerts_loaded(self, message: SyncAlertsLoaded) -> None:
        self.sync_alerts = tuple(message.alerts)

    def action_acknowledge_sync_alerts(self) -> None:
        """Hide the banner and record that the failures it named were seen
        (the same as `segsync syncs alerts --ack` for those syncs)."""
        sync_ids = tuple(sorted({alert.sync_id for alert in self.sync_alerts}))
        if not sync_ids:
            return
        self.sync_alerts = ()
        self._acknowledge_sync_alerts(sync_ids)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="sync-alerts-ack",
        description="acknowledge the failed syncs",
    )
    def _acknowledge_sync_alerts(self, sync_ids: tuple[int, ...]) -> None:
        try:
            self.backend.acknowledge_sync_alerts(sync_ids)
        except Exception as error:
            self.post_message(BackendFailed("acknowledge the failed syncs", describe_error(error)))
        else:
            self.post_message(SyncAlertsAcknowledged(sync_ids))

    def on_sync_alerts_acknowledged(self, message: SyncAlertsAcknowledged) -> None:
        self.acknowledged_syncs = message.sync_ids

    # -- showing text ------------------------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification, from any screen or widget, comes through here:
        most carry data (names, DuckDB and SendGrid messages), so none is read
        as markup and controls are made visible. `markup` is accepted for
        Textual's signature and ignored on purpose."""
        super().notify(
            visible(message, multiline=True),
            title=visible(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    def format_title(self, title: str, sub_title: str) -> Content:
        """The header shows the destination's name and the workspace path: data."""
        title_content = safe_content(title)
        if not sub_title:
            return title_content
        return Content.assemble(title_content, (" — ", "dim"), safe_content(sub_title, "dim"))

    # -- shared state ------------------------------------------------------------

    def _update_subtitle(self) -> None:
        name = self.destination.name if self.destination else "no destination"
        self.sub_title = f"{name} · {self.backend.workspace_label}"

    def set_destinations(self, destinations: list[Destination]) -> None:
        """Called when the destinations screen (re)loads; keeps the current one
        fresh and picks the one asked for on the command line, or the only one."""
        self.destinations = destinations
        by_id = {d.id: d for d in destinations}
        if self.destination is not None:
            self.destination = by_id.get(self.destination.id)
        if self.destination is None:
            self._pick_destination()
        self._update_subtitle()

    def _pick_destination(self) -> None:
        """The one named on the command line, else the one used last (once
        that is read), else the only one."""
        wanted = [d for d in self.destinations if d.name == self.wanted_destination]
        if not wanted and self.wanted_destination is None and self.remember_ready:
            wanted = [d for d in self.destinations if d.id == self.remembered_destination]
        if wanted or len(self.destinations) == 1:
            self.use_destination((wanted or self.destinations)[0])

    def use_destination(self, destination: Destination) -> None:
        changed = self.destination is None or self.destination.id != destination.id
        if changed:
            self.mapping = None
            self._selection = ()
        self.destination = destination
        self._update_subtitle()
        if changed:  # remembered once its picks are read back (not as none)
            self._restore_selection(destination.id)

    def forget_destination(self, destination_id: int) -> None:
        if self.destination is not None and self.destination.id == destination_id:
            self.destination = None
            self.mapping = None
            self._selection = ()
            self._remember_choices()
        self._update_subtitle()

    def export_settings(self, dry_run: bool, quiet: bool = False) -> ExportSettings | None:
        """Settings for the current choices, or None (after telling the user
        what is missing, unless `quiet`)."""
        if self.destination is None:
            if not quiet:
                self.notify(
                    "Pick a destination first (1, then Enter on a row).", severity="warning"
                )
            return None
        if not self.selection:
            if not quiet:
                self.notify("Pick at least one segment first (2, then Space).", severity="warning")
            return None
        return ExportSettings(
            destination_id=self.destination.id,
            segments=self.selection,
            mode="mirror" if self.mode_setting == "mirror" else "upsert",
            incremental=self.incremental,
            dry_run=dry_run,
        )

    def confirm_export(self, settings: ExportSettings, to_send: int | None) -> None:
        """Start a real export once consent is recorded and the user said yes;
        dry-runs start at once (they send nothing)."""
        if settings.dry_run:
            self.post_message(ExportApproved(settings))
            return
        destination = next(
            (d for d in self.destinations if d.id == settings.destination_id), self.destination
        )
        if destination is None:
            self.notify("This destination no longer exists.", severity="error")
            return
        if not destination.consented:

            def agreed(yes: bool | None) -> None:
                if yes:
                    self._record_consent(settings, to_send)

            self.push_screen(ConsentScreen(destination.name), agreed)
            return
        if settings.plan_id is not None:  # the plan on screen: its numbers and who goes
            self._read_plan_to_confirm(settings)
            return
        amount = "the planned contacts" if to_send is None else f"{to_send:,} contacts"
        what = "Resume run " + str(settings.resume_run) if settings.resume_run else "Send"
        question = (
            f"{what}: {amount} to list {destination.list_name or destination.list_id} "
            f"of {destination.name} ({settings.mode}"
            f"{', incremental' if settings.incremental else ''})?"
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.post_message(ExportApproved(settings))

        self.push_screen(ConfirmScreen(question, yes="Export", no="Not now"), confirmed)

    def offer_removal_allowance(self, settings: ExportSettings, plan_id: int, reason: str) -> None:
        """A guardrail refused the run: show the plan again, with the reason; a
        yes applies the same plan allowing exactly its removals, this run only."""
        self._read_plan_to_confirm(replace(settings, plan_id=plan_id, resume_run=None), reason)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="plan",
        description="read the plan",
    )
    def _read_plan_to_confirm(self, settings: ExportSettings, guardrail: str = "") -> None:
        assert settings.plan_id is not None
        try:
            plan = self.backend.plan(settings.plan_id)
        except Exception as error:
            self.post_message(BackendFailed("read the plan", describe_error(error)))
        else:
            self.post_message(PlanToConfirm(settings, plan, guardrail))

    def on_plan_to_confirm(self, message: PlanToConfirm) -> None:
        """Ask before applying: adds, updates, removals and up to ten of who goes."""
        from tui.screens.apply_plan import ApplyPlanScreen

        review, settings = message.review, message.settings
        plan = review.plan
        destination = next(
            (d for d in self.destinations if d.id == plan.destination_id), self.destination
        )
        target = plan.destination_name
        if destination is not None:
            target = f"{destination.name} (list {destination.list_name or destination.list_id})"

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            allowed = plan.counts.get("to_remove", 0) if message.guardrail else None
            self.post_message(ExportApproved(replace(settings, allow_removals=allowed)))

        self.push_screen(ApplyPlanScreen(review, target, message.guardrail), answered)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="consent",
        description="record consent",
    )
    def _record_consent(self, settings: ExportSettings, to_send: int | None) -> None:
        try:
            destination = self.backend.record_consent(settings.destination_id, CONSENT_STATEMENT)
        except Exception as error:
            self.post_message(BackendFailed("record consent", describe_error(error)))
        else:
            self.post_message(ConsentGivenForExport(settings, to_send, destination))

    def on_consent_given_for_export(self, message: ConsentGivenForExport) -> None:
        recorded = message.destination
        self.destinations = [recorded if d.id == recorded.id else d for d in self.destinations]
        if self.destination is not None and self.destination.id == recorded.id:
            self.destination = recorded
        self.confirm_export(message.settings, message.to_send)

    async def on_export_approved(self, message: ExportApproved) -> None:
        await self.start_export(message.settings)

    def on_backend_failed(self, message: BackendFailed) -> None:
        self.notify(
            message.error,
            title=f"Could not {message.action}",
            severity="error",
            timeout=10,
            markup=False,
        )

    # -- routing -----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Screen keys (and q) do nothing while a dialog is open: it must be
        answered first. Escape hides the keys panel only when it is shown, so
        otherwise it reaches the screen (back, cancel)."""
        if action in ("goto", "quit_key", "switch_workspace"):
            return not isinstance(self.screen, ModalScreen)
        if action == "help":
            return bool(getattr(self.screen, "PURPOSE", ""))
        if action == "hide_keys_panel":
            return bool(self.screen.query("HelpPanel"))
        if action == "acknowledge_sync_alerts":  # k means something only with the banner
            return bool(self.sync_alerts) and not isinstance(self.screen, ModalScreen)
        return True

    def action_hide_keys_panel(self) -> None:
        self.action_hide_help_panel()

    def action_help(self) -> None:
        """What the current screen is for and all its keys (hidden ones too)."""
        from tui.screens.help import HelpScreen

        screen = self.screen
        mode = getattr(screen, "MODE", None)
        title = next((title for _key, m, title in SCREENS if m == mode), None)
        title = title or str(getattr(screen, "HELP_TITLE", type(screen).__name__))
        self.push_screen(HelpScreen(screen, title, getattr(screen, "PURPOSE", "")))

    # -- quitting ----------------------------------------------------------------

    def on_export_state_changed(self, message: ExportStateChanged) -> None:
        """The export screen says when a real export starts and ends; quitting
        asks first while one runs, and a quit waiting for it happens now."""
        self.export_runner = message.runner
        if message.runner is None and self.quitting:
            self.exit()
        elif message.runner is None and self.quit_question is not None:
            # the question is moot: nothing runs any more, so q quits at once
            self.quit_question.dismiss(None)
            self.notify("The export has ended; q quits now.")

    def on_sync_runs_changed(self, message: SyncRunsChanged) -> None:
        """The Syncs screen says which run-now syncs still run; a quit waiting
        for them happens once none does and no export runs either."""
        self.syncs_running = message.running
        if message.running or self.export_runner is not None:
            return
        if self.quitting:
            self.exit()
        elif self.quit_question is not None:
            self.quit_question.dismiss(None)
            self.notify("The sync has ended; q quits now.")

    async def action_quit_key(self) -> None:
        await self.action_quit()

    async def action_quit(self) -> None:
        """q, ctrl+q and the palette's Quit. While an export runs, ask; on yes
        cancel it the way c does (batches sent stay on the list, the run is
        recorded as cancelled and can be resumed) and exit once it has ended.
        ctrl+q pressed again while waiting exits at once."""
        runner = self.export_runner
        if (runner is None and not self.syncs_running) or self.quitting:
            self.exit()
            return

        def answered(yes: bool | None) -> None:
            self.quit_question = None
            if yes and (self.export_runner is not None or self.syncs_running):
                self.quitting = True
                what = "export" if self.export_runner is not None else "sync"
                self.notify(f"Cancelling the {what}, then quitting…", timeout=30)
                self._cancel_for_quit(self.export_runner)
                # the engine lets requests in flight finish; do not wait forever
                self.set_timer(QUIT_GRACE_SECONDS, self.exit)
            elif yes:
                self.exit()

        if runner is not None:
            question = (
                "An export is running. Quit anyway? It is cancelled first: batches "
                "already sent stay on the list and the run can be resumed from history."
            )
        else:
            question = (
                f"A sync is running ({', '.join(self.syncs_running)}). Quit anyway? It is "
                "cancelled first: batches already sent stay on the list and its next run "
                "resumes it."
            )
        self.quit_question = ConfirmScreen(question, yes="Cancel and quit", no="Keep going")
        self.push_screen(self.quit_question, answered)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="quit",
        description="cancel the export and syncs before quitting",
    )
    def _cancel_for_quit(self, runner: ExportRunner | None) -> None:
        if runner is not None:
            runner.cancel()
        self.backend.cancel_sync_runs()

    def action_goto(self, mode: str) -> None:
        if self.current_mode != mode:
            self.switch_mode(mode)

    async def start_export(self, settings: ExportSettings) -> None:
        """Open the export screen and run `settings` there."""
        await self.switch_mode("export")
        screen = self.screen
        from tui.screens.export import ExportScreen

        if isinstance(screen, ExportScreen):
            screen.start(settings)

    async def open_run(self, run_id: int) -> None:
        await self.switch_mode("history")
        screen = self.screen
        from tui.screens.history import HistoryScreen

        if isinstance(screen, HistoryScreen):
            screen.open_run(run_id)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Last line of defence: a worker that raised shows as a notification."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            what = event.worker.description or "finish a background task"
            self.notify(
                describe_error(event.worker.error),
                title=f"Could not {what}",
                severity="error",
                timeout=10,
                markup=False,
            )


def run_app(
    workspace: Path | None,
    state_dir: Path | None,
    *,
    destination: str | None = None,
    backend: Backend | None = None,
    demo: bool = False,
) -> int:
    """Open the app (what `segsync` and `segsync demo` do). Returns an exit code.

    `backend` lets `segsync demo` and tests pass a ready one; otherwise the
    local backend over `workspace` and `state_dir` is built (lazily imported
    so nothing heavy loads before the first screen).
    """
    if backend is None:
        from tui.local_backend import LocalBackend

        backend = LocalBackend(workspace=workspace, state_dir=state_dir)
    SegsyncApp(backend, destination=destination, demo=demo).run()
    return 0
