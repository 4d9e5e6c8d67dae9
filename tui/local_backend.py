"""The app's backend over store/ and connector/: workspace, history, keys, SendGrid.

Every method blocks (DuckDB, SQLite, keyring, HTTP) and is called from a
thread worker; HTTP calls run on a private event loop with `asyncio.run`.
Heavy modules are imported inside the methods, so importing this module
costs nothing before the first screen is up. Results are the store's and
connector's plain records as they come (`store.records`, `connector.models`);
no ORM object or key reaches a widget.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tui.backend import (
    BackendError,
    DestinationForm,
    DestinationRow,
    ExportSettings,
    PlanReview,
    SyncForm,
    WorkspaceChoice,
)

if TYPE_CHECKING:
    from connector.client import SendGridClient
    from connector.engine import EngineSettings
    from connector.events import Event
    from connector.findings import Finding
    from connector.models import Check, ContactList, SyncStatus
    from connector.preflight import AccountAnswers
    from connector.syncs import SyncRunner
    from store.history import History
    from store.records import (
        Column,
        Destination,
        FieldMapping,
        Person,
        PlanRecord,
        RejectedRecord,
        Run,
        RunDetail,
        Segment,
        SegmentCount,
        SyncAlert,
    )
    from store.remembered import Remembered
    from store.secrets import KeyStore
    from store.workspace import Workspace

T = TypeVar("T")


class LocalBackend:
    """One workspace and one state directory, opened on first use."""

    def __init__(
        self,
        *,
        workspace: Path | None,
        state_dir: Path | None,
        engine_settings: EngineSettings | None = None,
    ) -> None:
        """`engine_settings` (batch size, concurrency, polling) default to the
        engine's production values; tests and benchmarks shrink them."""
        self._engine_settings = engine_settings
        # What SendGrid told the last preview's plan (plan id, answers): the
        # first check of that plan reads it instead of asking again. Taken by
        # that check, and dropped by any change to a destination, its key, its
        # mapping or its fields (they may be what the answers were about).
        self._preview_answers: tuple[int, AccountAnswers] | None = None
        self._workspace_path = workspace
        self._state_dir_arg = state_dir
        self._lock = threading.Lock()
        self._workspace: Workspace | None = None
        self._history: History | None = None
        self._keys: KeyStore | None = None
        self._state: Path | None = None
        self._remembered: Remembered | None = None
        # Syncs run with run_sync_now, still running: cancel_sync_runs stops them.
        self._sync_lock = threading.Lock()
        self._sync_runners: set[SyncRunner] = set()

    @property
    def workspace_label(self) -> str:
        """The folder's name; with a PostgreSQL source, also ``postgres host/db
        table`` (read from segments.toml alone: no connection before first paint)."""
        path = self._root()
        name = path.name or str(path)
        from store.fingerprint import configured_source

        try:
            source = configured_source(path)
        except Exception:  # no or broken segments.toml: opening it will say why
            return name
        return name if isinstance(source, Path) else f"{name} · {source.label}"

    # -- lazily opened stores ------------------------------------------------

    def _state_dir(self) -> Path:
        with self._lock:
            if self._state is None:
                from store.paths import state_dir

                self._state = state_dir(self._state_dir_arg)
            return self._state

    def _hist(self) -> History:
        state = self._state_dir()
        with self._lock:
            if self._history is None:
                from store.history import History
                from store.paths import history_path

                self._history = History(history_path(state))
            return self._history

    def _keystore(self) -> KeyStore:
        state = self._state_dir()
        with self._lock:
            if self._keys is None:
                from store.secrets import KeyStore

                self._keys = KeyStore(state)
            return self._keys

    def _root(self) -> Path:
        """The workspace folder: the one asked for; else the current folder when
        it is a workspace; else the one used last from this state folder."""
        with self._lock:
            if self._workspace_path is None:
                here = Path.cwd()
                last = None if (here / "segments.toml").is_file() else self._memory().workspace
                self._workspace_path = Path(last) if last and Path(last).is_dir() else here
            return self._workspace_path

    def _memory(self) -> Remembered:
        """What this state folder remembers (read once; call with the lock held)."""
        if self._remembered is None:
            from store.paths import state_dir
            from store.remembered import load

            try:
                self._remembered = load(state_dir(self._state_dir_arg))
            except Exception:  # an unsafe state folder: opening the history says why
                from store.remembered import Remembered

                self._remembered = Remembered()
        return self._remembered

    def _ws(self) -> Workspace:
        root = self._root()
        with self._lock:
            if self._workspace is None:
                from store.workspace import Workspace, WorkspaceError

                try:
                    self._workspace = Workspace.open(root)
                except WorkspaceError as error:
                    raise BackendError(
                        f"{error} Start segsync with --workspace DIR pointing at a folder "
                        "with segments.toml."
                    ) from None
            return self._workspace

    def _key_for(self, destination_id: int) -> Any:
        dest = self._hist().get_destination(destination_id)
        try:
            return self._keystore().load(dest.id, dest.api_key_env, dest.name)
        except LookupError as error:
            raise BackendError(str(error)) from None

    def _sendgrid(
        self, key: Any, base_url: str, call: Callable[[SendGridClient], Awaitable[T]]
    ) -> T:
        """Run one client call on a private loop; SendGrid's errors become BackendError."""
        from connector.client import SendGridClient
        from connector.errors import SendGridError

        async def main() -> T:
            async with SendGridClient(key, base_url, max_total_wait=30.0) as client:
                return await call(client)

        try:
            return asyncio.run(main())
        except SendGridError as error:
            raise BackendError(str(error)) from None

    # -- destinations ----------------------------------------------------------

    def destinations(self) -> list[DestinationRow]:
        return [self._row(dest) for dest in self._hist().list_destinations()]

    def _row(self, dest: Destination) -> DestinationRow:
        try:
            hint = str(self._keystore().load(dest.id, dest.api_key_env, dest.name))
        except LookupError:
            hint = "no key stored"
        last = self._hist().list_runs(destination=dest.id, limit=1)
        return DestinationRow(dest, hint, last[0] if last else None)

    def list_contact_count(self, destination_id: int) -> int:
        dest = self._hist().get_destination(destination_id)
        list_id = dest.list_id
        if not list_id:
            raise BackendError(f"{dest.name} has no list yet: edit it (e) and pick one.")
        key = self._key_for(destination_id)
        return self._sendgrid(key, dest.base_url, lambda c: c.list_contact_count(list_id))

    def _form_key(self, form: DestinationForm) -> Any:
        if form.api_key:
            from store.secrets import Secret

            return Secret(form.api_key)
        if form.id is not None:
            return self._key_for(form.id)
        raise BackendError("Enter the SendGrid API key first (it starts with SG.).")

    def account_lists(self, form: DestinationForm) -> list[ContactList]:
        """The account's lists, as `segsync lists` shows them (connector.services)."""
        from connector.errors import SendGridError
        from connector.services import account_lists

        try:
            return account_lists(self._form_key(form), form.base_url)
        except SendGridError as error:
            raise BackendError(str(error)) from None

    def test_connection(self, form: DestinationForm) -> list[Check]:
        from connector.destinations import test_connection

        return asyncio.run(test_connection(self._form_key(form), form.base_url, form.list_id))

    def save_destination(self, form: DestinationForm) -> DestinationRow:
        """Verify key and list against SendGrid (creating the list when asked),
        then store the destination and its key; nothing is saved if SendGrid
        says no. The same service `segsync destinations add` calls."""
        from connector.errors import SendGridError
        from connector.services import ServiceError, save_destination
        from store.history_errors import HistoryError

        key = self._form_key(form)
        history = self._hist()
        self._preview_answers = None
        try:
            dest, _found = save_destination(
                history,
                self._keystore(),
                name=form.name,
                key=key,
                base_url=form.base_url,
                list_id=form.list_id,
                create_list=form.new_list_name,
                cap=form.cap,
                store_key=bool(form.api_key),
                destination_id=form.id,
            )
        except (SendGridError, ServiceError, HistoryError) as error:
            raise BackendError(str(error)) from None
        return self._row(dest)

    def record_consent(self, destination_id: int, wording: str) -> Destination:
        from store.operator import current_operator

        return self._hist().record_consent(destination_id, current_operator(), wording)

    def remove_destination(self, destination_id: int) -> None:
        self._preview_answers = None
        self._hist().remove_destination(destination_id)
        self._keystore().forget(destination_id)

    # -- segments --------------------------------------------------------------

    def segments(self) -> list[Segment]:
        return self._ws().segments()

    def segment_counts(self) -> list[SegmentCount]:
        return self._ws().count_segments()

    def union_count(self, names: tuple[str, ...]) -> int:
        from store.workspace import WorkspaceError

        try:
            return self._ws().union_count(names)
        except WorkspaceError as error:
            raise BackendError(str(error)) from None

    def saved_selection(self, destination_id: int) -> tuple[str, ...]:
        root = str(self._root().absolute())
        with self._lock:
            picked = self._memory().selection(root, destination_id)
        if picked is not None:
            return picked
        return tuple(self._hist().get_segments(destination_id))

    # -- remembered between launches (store.remembered) ---------------------------

    def remembered_destination(self) -> int | None:
        self._root()
        with self._lock:
            return self._memory().destination_id

    def remember(self, destination_id: int | None, segments: tuple[str, ...]) -> None:
        """The destination in use and the segments picked for it, in this
        workspace, for the next launch (an owner-only file in the state folder).
        A folder that does not open as a workspace is not listed among the
        recent ones (the destination is still remembered)."""
        from store.remembered import save

        root = str(self._root().absolute())
        state = self._state_dir()
        try:
            self._ws()
            opened = True
        except BackendError:
            opened = False
        with self._lock:
            if opened:
                memory = self._memory().choose(root, destination_id, segments)
            else:
                memory = self._memory()
                if destination_id is not None:
                    memory = replace(memory, destination_id=destination_id)
            if memory != self._remembered:
                save(state, memory)
            self._remembered = memory

    def workspaces(self) -> list[WorkspaceChoice]:
        """This workspace, those used lately, and those runs and syncs used."""
        current = str(self._root().absolute())
        with self._lock:
            recent = list(self._memory().workspaces)
        history = self._hist()
        used = [str(r.config.get("workspace")) for r in history.list_runs(limit=200)]
        used += [s.workspace for s in history.list_syncs()]
        seen: list[str] = []
        for path in [current, *recent, *used]:
            if path and path != "None" and path not in seen:
                seen.append(path)
        return [WorkspaceChoice(p, p == current) for p in seen]

    def switch_workspace(self, path: str) -> str:
        """Open the workspace at ``path`` (refused, with the reason, if it is not
        one) and use it from now on; remembered for the next launch."""
        from store.remembered import save
        from store.workspace import Workspace, WorkspaceError

        try:
            workspace = Workspace.open(Path(path).expanduser().absolute())
        except WorkspaceError as error:
            raise BackendError(str(error)) from None
        state = self._state_dir()
        with self._lock:
            self._workspace = workspace
            self._workspace_path = workspace.root
            memory = self._memory().choose(str(workspace.root.absolute()))
            save(state, memory)
            self._remembered = memory
        return self.workspace_label

    # -- mapping ---------------------------------------------------------------

    def columns(self) -> list[Column]:
        return self._ws().columns()

    def custom_fields(self, destination_id: int) -> list[str]:
        dest = self._hist().get_destination(destination_id)
        custom, _reserved = self._sendgrid(
            self._key_for(destination_id), dest.base_url, lambda c: c.field_definitions()
        )
        return sorted(f.name for f in custom)

    def mapping(
        self, destination_id: int, custom_fields: Sequence[str] | None = None
    ) -> FieldMapping:
        saved = self._hist().get_mapping(destination_id)
        if saved is not None:
            return saved
        return self.suggested_mapping(destination_id, custom_fields)

    def saved_mapping(self, destination_id: int) -> FieldMapping | None:
        return self._hist().get_mapping(destination_id)

    def suggested_mapping(
        self, destination_id: int, custom_fields: Sequence[str] | None = None
    ) -> FieldMapping:
        """Fetches the account's custom fields only when the caller has not (each
        fetch is a SendGrid request, up to its retry limit when offline). The
        same suggestion as `segsync map --suggest` (connector.services)."""
        from connector.services import suggest_mapping_for

        if custom_fields is not None:  # no destination needed, nothing to fetch
            return suggest_mapping_for(self._ws(), custom_fields=custom_fields)
        dest = self._hist().get_destination(destination_id)
        return suggest_mapping_for(self._ws(), self._keystore(), dest)

    def save_mapping(self, destination_id: int, mapping: FieldMapping) -> None:
        """Check the columns and the account's custom fields, then save: the same
        service `segsync map` calls. The mapping keeps its ``no_consent_filter``
        (the explicit choice to send without a consent column) as loaded."""
        from connector.errors import SendGridError
        from connector.services import ServiceError, save_mapping

        if not mapping.email:
            raise BackendError("Map a column to email: it is how SendGrid identifies a contact.")
        history = self._hist()
        self._preview_answers = None
        try:
            save_mapping(
                history,
                self._keystore(),
                self._ws(),
                history.get_destination(destination_id),
                mapping,
            )
        except (ServiceError, SendGridError) as error:
            raise BackendError(str(error)) from None

    def sample_rows(self, columns: tuple[str, ...], limit: int) -> list[dict[str, object]]:
        from store.workspace import quote_ident

        if not columns:
            return []
        select = ", ".join(quote_ident(c) for c in columns)
        con = self._ws().connect(columns=columns)  # a Postgres source copies only these
        try:
            rows = con.execute(f"SELECT {select} FROM profiles LIMIT {int(limit)}").fetchall()
        finally:
            con.close()
        return [dict(zip(columns, row, strict=True)) for row in rows]

    # -- export ----------------------------------------------------------------

    async def export(self, settings: ExportSettings, cancel: asyncio.Event) -> AsyncIterator[Event]:
        from connector.engine import ExportEngine, ExportRefused, ExportRequest
        from connector.events import PreviewReady

        history = await asyncio.to_thread(self._hist)
        workspace = await asyncio.to_thread(self._ws)
        dest = await asyncio.to_thread(history.get_destination, settings.destination_id)
        if settings.resume_run is None and settings.segments:
            await asyncio.to_thread(history.set_segments, dest.id, list(settings.segments))
        no_mapping = await asyncio.to_thread(history.get_mapping, dest.id) is None
        if settings.resume_run is None and settings.plan_id is None and no_mapping:
            # Never a mapping nobody saved: what is sent must be what was reviewed.
            raise BackendError(
                f"{dest.name} has no saved mapping: open Mapping (3), check the "
                "suggested fields and save them (s), then preview again."
            )
        engine = ExportEngine(
            workspace=workspace,
            history=history,
            keys=self._keystore(),
            state_dir=self._state_dir(),
            settings=self._engine_settings,
        )
        request = ExportRequest(
            destination=dest.id,
            segments=() if settings.resume_run or settings.plan_id else settings.segments,
            mode=settings.mode,
            incremental=settings.incremental,
            dry_run=settings.dry_run,
            resume_run=settings.resume_run,
            plan_id=settings.plan_id,
            allow_removals=settings.allow_removals,
        )
        self._preview_answers = None
        try:
            async for event in engine.run(request, cancel):
                if isinstance(event, PreviewReady) and engine.account_answers is not None:
                    self._preview_answers = (event.plan_id, engine.account_answers)
                yield event
        except ExportRefused as error:
            raise BackendError(str(error)) from None

    def preflight(self, settings: ExportSettings) -> list[Finding]:
        """The export's own checks (connector.preflight), run without sending:
        with ``plan_id``, that stored plan's drift, cap and guardrails too, with
        the plan's segments and mode, as `apply` would check them."""
        from connector.engine import ExportRequest
        from connector.preflight import Preflight, run_mode
        from store.history_errors import PlanNotFound

        history = self._hist()
        dest = history.get_destination(settings.destination_id)
        request = ExportRequest(
            destination=dest.id,
            segments=settings.segments,
            mode=settings.mode,
            incremental=settings.incremental,
            allow_removals=settings.allow_removals,
        )
        plan = None
        if settings.plan_id is not None:
            try:
                plan = history.get_plan(settings.plan_id)
            except PlanNotFound as error:
                raise BackendError(str(error)) from None
            request = replace(
                request,
                segments=tuple(plan.segments),
                mode=run_mode(plan.mode),
                incremental=plan.incremental,
            )
        from connector.client import SendGridClient

        checks = Preflight(self._ws(), history, self._keystore(), self._state_dir())
        # someone waits for the answer: retries give up after 30 s, as for other questions
        factory = partial(SendGridClient, max_total_wait=30.0)
        fresh, self._preview_answers = self._preview_answers, None
        answers = fresh[1] if fresh is not None and fresh[0] == settings.plan_id else None
        return asyncio.run(checks.findings(dest, request, plan, factory, answers))

    def create_custom_fields(self, destination_id: int) -> tuple[str, ...]:
        """Create the saved mapping's custom fields the account lacks, typed from
        their columns: `segsync map DEST --create-fields` (connector.services)."""
        from connector.errors import SendGridError
        from connector.services import ServiceError, save_mapping

        history = self._hist()
        dest = history.get_destination(destination_id)
        mapping = history.get_mapping(dest.id)
        if mapping is None:
            raise BackendError(f"{dest.name} has no saved mapping: open Mapping (3) first.")
        self._preview_answers = None
        try:
            saved = save_mapping(
                history, self._keystore(), self._ws(), dest, mapping, create_fields=True
            )
        except (ServiceError, SendGridError) as error:
            raise BackendError(str(error)) from None
        return saved.created

    def set_cap(self, destination_id: int, cap: int) -> Destination:
        """`segsync destinations set-cap`: the most contacts one export may send."""
        if cap < 1:
            raise BackendError("The cap must be at least 1.")
        return self._hist().update_destination(destination_id, cap=cap)

    # -- history ---------------------------------------------------------------

    def runs(self) -> list[Run]:
        return self._hist().list_runs(limit=500)

    def run_detail(self, run_id: int) -> RunDetail:
        from store.history_errors import NotFound

        try:
            return self._hist().get_run(run_id)
        except NotFound:
            raise BackendError(f"There is no run {run_id} in this state directory.") from None

    def rejected_rows(self, run_id: int, limit: int) -> list[RejectedRecord]:
        return list(self._hist().rejected_rows(run_id, limit=limit))

    def write_rejected_csv(self, run_id: int, path: Path) -> int:
        """Same columns as `segsync runs rejected RUN --csv FILE`."""
        from store.rejected_csv import write_rejected_csv

        try:
            written = write_rejected_csv(self._hist().rejected_rows(run_id), path)
        except OSError as error:
            raise BackendError(
                f"Cannot write {path}: {error.strerror}. Pick another path."
            ) from None
        return written

    def run_people(self, run_id: int, ops: tuple[str, ...] = (), limit: int = 500) -> list[Person]:
        """From the run's people record (store.people); empty for runs before it."""
        from store.people import people_file, read_people

        return list(read_people(people_file(self._state_dir(), run_id), ops or None, limit))

    def undo_plan(self, run_id: int) -> PlanReview:
        from connector.engine import ExportEngine, ExportRefused
        from store.history_errors import NotFound

        engine = ExportEngine(
            workspace=None,
            history=self._hist(),
            keys=self._keystore(),
            state_dir=self._state_dir(),
            settings=self._engine_settings,
        )
        try:
            plan, undo = engine.plan_undo(run_id)
        except (NotFound, FileNotFoundError, ExportRefused) as error:
            raise BackendError(str(error)) from None
        return self._review(plan, touched_later=undo.touched_later)

    def plan(self, plan_id: int) -> PlanReview:
        from store.history_errors import PlanNotFound

        try:
            plan = self._hist().get_plan(plan_id)
        except PlanNotFound as error:
            raise BackendError(str(error)) from None
        return self._review(plan)

    def _review(self, plan: PlanRecord, touched_later: tuple[str, ...] = ()) -> PlanReview:
        from store.changeset import Changeset, changeset_file

        removals: list[str] = []
        path = changeset_file(self._state_dir(), plan.id)
        if plan.counts.get("to_remove") and path.is_file():
            with Changeset(path) as changes:
                removals = changes.removals()[:10]
        return PlanReview(plan, tuple(removals), tuple(touched_later))

    def explain(
        self, destination_id: int, email: str | None = None, key: str | None = None
    ) -> dict[str, object]:
        from store.explain import ExplainError, explain

        history = self._hist()
        destination = history.get_destination(destination_id)
        mapping = history.get_mapping(destination.id)
        if mapping is None:
            raise BackendError(f"{destination.name} has no field mapping yet.")
        segments = tuple(history.get_segments(destination.id))
        if not segments:
            last = history.list_runs(destination=destination.id, limit=1)
            segments = tuple(last[0].segments) if last else ()
        try:
            answer = explain(
                self._ws(),
                self._state_dir(),
                destination=destination,
                mapping=mapping,
                segments=segments,
                email=email,
                key=key,
                custom_field_ids=history.latest_custom_field_ids(destination.id),
            )
        except ExplainError as error:
            raise BackendError(str(error)) from None
        return answer.to_json()

    # -- scheduled syncs ----------------------------------------------------------

    def syncs(self) -> list[SyncStatus]:
        from connector.syncs import sync_overview, utc_now

        return sync_overview(self._hist(), utc_now())

    def sync_alerts(self) -> list[SyncAlert]:
        return self._hist().sync_alerts()

    def acknowledge_sync_alerts(self, sync_ids: tuple[int, ...] = ()) -> None:
        from connector.syncs import utc_now

        self._hist().acknowledge_sync_alerts(utc_now(), list(sync_ids) or None)

    def add_sync(self, form: SyncForm) -> SyncStatus:
        from connector.syncs import SyncError, create_sync, utc_now

        history = self._hist()
        try:
            record = create_sync(
                history,
                name=form.name,
                destination=history.get_destination(form.destination_id).name,
                segments=form.segments,
                workspace=self._ws().root,
                now=utc_now(),
                mode=form.mode,
                incremental=form.incremental,
                every=form.every,
                cron=form.cron,
                on_refresh=form.on_refresh,
            )
        except SyncError as error:
            raise BackendError(str(error)) from None
        return next(s for s in self.syncs() if s.id == record.id)

    def pause_sync(self, sync_id: int, paused: bool) -> None:
        from connector.syncs import edit_sync, utc_now

        history = self._hist()
        edit_sync(history, history.get_sync(sync_id), utc_now(), paused=paused)

    def cancel_sync_runs(self) -> None:
        with self._sync_lock:
            runners = list(self._sync_runners)
        for runner in runners:
            runner.cancel()

    def run_sync_now(self, sync_id: int) -> str:
        from connector.syncs import SyncBusy, SyncRunner

        history = self._hist()
        # Someone is at the terminal: the keyring may ask them, unlike under a timer.
        runner = SyncRunner(
            history, self._state_dir(), keys=self._keystore(), settings=self._engine_settings
        )
        with self._sync_lock:
            self._sync_runners.add(runner)
        try:
            attempt = runner.run_now(history.get_sync(sync_id))
        except SyncBusy as error:
            raise BackendError(str(error)) from None
        finally:
            with self._sync_lock:
                self._sync_runners.discard(runner)
        run = f" (run {attempt.run_id})" if attempt.run_id else ""
        return f"{attempt.sync}: {attempt.result}{run}" + (
            f": {attempt.message}" if attempt.message else ""
        )
