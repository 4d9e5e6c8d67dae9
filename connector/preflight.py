"""Everything an export checks before it plans or sends, and the plan's basis.

Each check raises `ExportRefused` with a message that names the problem and
the fix; nothing has been sent when one fires. The basis is what a plan was
computed from (profile source fingerprint, mapping, segment predicates, list,
ledger version): `apply` compares it with the present and refuses a plan that
no longer describes what would happen (`basis_changes`).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from connector.at_once import at_once
from connector.client import RetryNotice, SendGridClient
from connector.errors import NetworkError, SendGridError, SendGridUnavailable
from connector.findings import Finding
from connector.models import CustomField
from store.fingerprint import source_fingerprint
from store.history_errors import PlanNotFound
from store.history_read import mapping_json
from store.ledger import LedgerInfo, distrust_reason, ledger_file, legacy_ledger_file
from store.records import Column, FieldMapping

if TYPE_CHECKING:
    from connector.engine import ExportRequest, Mode
    from store.history import History
    from store.records import Destination, PlanRecord, RunDetail
    from store.secrets import KeyStore
    from store.workspace import Workspace


T = TypeVar("T")

NO_SEGMENTS = (
    "No segments selected. Name at least one with --segment (see `segsync segments` for the list)."
)


class ExportRefused(Exception):
    """The export cannot start; nothing was sent. The message says why and what to do."""

    exit_code = 2


def run_mode(value: str) -> Mode:
    """A mode read back from history, as the engine's type (a row of another
    segsync could hold anything)."""
    if value == "upsert":
        return "upsert"
    if value == "mirror":
        return "mirror"
    raise ExportRefused(f"unknown mode {value!r} in history; expected upsert or mirror")


def list_id_of(destination: Destination) -> str:
    """The destination's SendGrid list id; every destination added through
    segsync has one, but the column allows none."""
    if not destination.list_id:
        raise ExportRefused(
            f"Destination {destination.name!r} names no SendGrid list; add it again "
            "with `segsync destinations add ... --list-id ID`."
        )
    return destination.list_id


class Preflight:
    """The checks and look-ups of one export, over the engine's collaborators."""

    def __init__(
        self, workspace: Workspace | None, history: History, keys: KeyStore, state_dir: Path
    ) -> None:
        self.workspace = workspace
        self.history = history
        self.keys = keys
        self.state_dir = Path(state_dir)

    def require_workspace(self) -> Workspace:
        """The workspace; only an undo (planned from a run's record, not from
        profiles) runs without one, and it never asks."""
        if self.workspace is None:
            raise ExportRefused("This export needs a workspace (--workspace FOLDER).")
        return self.workspace

    # -- what to run ----------------------------------------------------------

    def resolve(
        self, request: ExportRequest, destination: Destination
    ) -> tuple[ExportRequest, RunDetail | None, PlanRecord | None]:
        """The request completed from a stored plan, a resumed run or the saved
        segments; returns (request, run being resumed or None, plan or None)."""
        if request.resume_run is not None:
            previous = self._resumable(request.resume_run, destination)
            request = replace(
                request,
                segments=tuple(previous.segments),
                mode=run_mode(previous.mode),
                incremental=previous.incremental,
                dry_run=False,
            )
            stored = self.history.get_plan(previous.plan_id) if previous.plan_id else None
            return request, previous, stored
        if request.plan_id is not None:
            try:
                stored = self.history.get_plan(request.plan_id)
            except PlanNotFound as exc:
                raise ExportRefused(str(exc)) from None
            if stored.destination_id != destination.id:
                raise ExportRefused(
                    f"Plan {stored.id} was made for {stored.destination_name!r}, "
                    f"not {destination.name!r}."
                )
            if stored.status == "applied":
                raise ExportRefused(
                    f"Plan {stored.id} was already applied by run {stored.applied_run_id}; "
                    "make a new plan."
                )
            if stored.status == "superseded":
                raise ExportRefused(f"Plan {stored.id} was superseded; make a new plan.")
            request = replace(
                request,
                segments=tuple(stored.segments),
                mode=run_mode(stored.mode),
                incremental=stored.incremental,
            )
            return request, None, stored
        segments = request.segments or tuple(self.history.get_segments(destination.id))
        return replace(request, segments=tuple(segments)), None, None

    def _resumable(self, run_id: int, destination: Destination) -> RunDetail:
        previous = self.history.get_run(run_id)
        if previous.destination_id != destination.id:
            raise ExportRefused(
                f"Run {previous.id} belongs to destination {previous.destination_name!r}, "
                f"not {destination.name!r}."
            )
        if previous.status not in ("interrupted", "cancelled", "failed", "running"):
            raise ExportRefused(
                f"Run {previous.id} is {previous.status}; only interrupted, cancelled or "
                "failed runs can be resumed. Start a new export instead."
            )
        if previous.dry_run:
            raise ExportRefused(f"Run {previous.id} was a dry-run; there is nothing to resume.")
        return previous

    def mapping(self, destination: Destination, request: ExportRequest) -> FieldMapping:
        mapping = self.history.get_mapping(destination.id)
        if mapping is None:
            raise ExportRefused(
                f"Destination {destination.name!r} has no field mapping yet. "
                f"Run `segsync map {destination.name} email=COLUMN ...` first."
            )
        if not request.segments:
            raise ExportRefused(NO_SEGMENTS)
        if not request.dry_run:
            from connector.consent import consent_filter_refusal

            refusal = consent_filter_refusal(mapping, destination.name)
            if refusal is not None:
                raise ExportRefused(refusal)
        return mapping

    def check_inputs(self, request: ExportRequest, mapping: FieldMapping) -> list[Column]:
        """Segments and mapped columns must exist in the workspace as it is now
        (the profile file may have changed since the mapping was saved);
        returns the profile columns read for it, for checks that need their types."""
        from store.plan import MappingError, validate_mapping
        from store.workspace import WorkspaceError

        workspace = self.require_workspace()
        known = {s.name for s in workspace.segments()}
        unknown = [name for name in request.segments if name not in known]
        if unknown:
            raise ExportRefused(
                f"Unknown segment(s) {', '.join(map(repr, unknown))} in "
                f"{workspace.config_path}. Known segments: {', '.join(sorted(known))}."
            )
        try:
            # One connection for every check; they read no rows (a Postgres
            # source copies only its columns here, its rows once for the plan).
            with workspace.connect(schema_only=True) as con:
                columns = workspace.columns(con)
                validate_mapping(mapping, columns)
                for name in request.segments:
                    workspace.check_segment(con, name)
        except (MappingError, WorkspaceError) as exc:
            raise ExportRefused(str(exc)) from exc
        return columns

    def planning_refusal(self, exc: Exception, request: ExportRequest) -> Exception:
        """A planning failure as the user should read it: a predicate that fails
        at run time names its segment, never the internal SQL."""
        from store.workspace import WorkspaceError

        if isinstance(exc, WorkspaceError):
            return ExportRefused(str(exc))
        return exc

    @staticmethod
    def require_consent(destination: Destination) -> None:
        if not destination.consent_at:
            raise ExportRefused(
                f"Destination {destination.name!r} has no data-privacy acknowledgment. "
                f"Record it with `segsync destinations consent {destination.name}` "
                "(or --agree when adding it) before exporting; a --dry-run is allowed."
            )

    # -- the account ----------------------------------------------------------

    async def open_client(
        self,
        destination: Destination,
        dry_run: bool,
        on_retry: Callable[[RetryNotice], None],
        factory: Callable[..., SendGridClient] = SendGridClient,
    ) -> SendGridClient | None:
        """Open a client with the destination's key (not yet checked: `account`
        asks SendGrid); a dry-run may go on without one."""
        try:
            key = await asyncio.to_thread(  # a keyring may answer slowly
                self.keys.load, destination.id, destination.api_key_env, destination.name
            )
        except Exception as exc:
            if dry_run:
                return None
            raise ExportRefused(str(exc)) from exc
        try:
            return factory(key, destination.base_url, on_retry=on_retry)
        except SendGridError as exc:
            raise ExportRefused(str(exc)) from exc

    async def account(
        self,
        client: SendGridClient | None,
        destination: Destination,
        mapping: FieldMapping | None,
        request: ExportRequest,
    ) -> tuple[int | None, dict[str, str], AccountAnswers | None]:
        """The list's contact count and the mapped custom fields' ids, and
        SendGrid's answers they came from (`ask_account`: the key, list and
        fields asked at once). An export is refused on the first problem in
        the order it checks them: the key, then the list, then the fields; a
        preview sends nothing and goes on without what it could not learn
        (its findings say why, from the same answers)."""
        if client is None:
            return None, {}, None
        answers = await ask_account(client, destination, mapping)
        if not request.dry_run:
            refused = answers.refusal()
            if refused is not None:
                raise refused
        contacts = answers.list_contacts
        if mapping is None or not isinstance(answers.fields, list):
            return contacts, {}, answers
        by_name = {f.name.lower(): f.id for f in answers.fields}
        missing = missing_custom_fields(mapping, by_name)
        if missing and not request.dry_run:
            raise ExportRefused(_missing_fields(missing, destination))
        ids = {name: by_name[name.lower()] for name in mapping.custom if name.lower() in by_name}
        return contacts, ids, answers

    # -- everything at once, for a preview -------------------------------------

    async def findings(
        self,
        destination: Destination,
        request: ExportRequest,
        plan: PlanRecord | None,
        factory: Callable[..., SendGridClient] = SendGridClient,
        answers: AccountAnswers | None = None,
    ) -> list[Finding]:
        """Every check an export of ``request`` makes before its first request,
        as findings instead of the first refusal: the same steps `ExportEngine`
        runs (mapping, consent choice, segments and columns, data-privacy
        acknowledgment, key, list, custom fields; with the stored ``plan`` to
        apply, its drift, cap and guardrails), so a preview can say "ready"
        only when an export would start. Warnings (a recorded no-consent-filter
        choice, a custom field whose type rejects the column's values) are
        findings too, not blocking. Blocking calls run on threads; SendGrid is
        asked as an export asks it, unless ``answers`` (what the export that
        made the plan was told, moments ago) already say."""
        from connector.consent import consent_filter_refusal

        found: list[Finding] = []
        saved = await asyncio.to_thread(self.history.get_mapping, destination.id)
        try:
            await asyncio.to_thread(self.mapping, destination, request)
        except ExportRefused as exc:
            if saved is None:
                found.append(_finding("mapping", exc))
            elif request.segments:
                found.append(_finding("consent_choice", exc))
        if not request.segments:  # checked after the mapping: found either way
            found.append(_finding("segments", ExportRefused(NO_SEGMENTS)))
            refusal = consent_filter_refusal(saved, destination.name) if saved else None
            if refusal is not None:
                found.append(_finding("consent_choice", ExportRefused(refusal)))
        if saved is not None and saved.no_consent_filter and not saved.consent_column:
            found.append(
                Finding(
                    "no_consent_filter",
                    "no consent filter: everyone selected is sent (your recorded choice)",
                    f"{destination.name!r} sends every selected profile, opted in or not: "
                    f"recorded with the mapping (`segsync map {destination.name} "
                    "--consent-column COLUMN` filters again)",
                    blocking=False,
                )
            )
        columns: list[Column] | None = None  # read by the checks below, when they run
        if saved is not None and request.segments:
            try:
                columns = await asyncio.to_thread(self.check_inputs, request, saved)
            except ExportRefused as exc:
                from store.plan import MappingError

                mapped = isinstance(exc.__cause__, MappingError)
                found.append(_finding("mapping" if mapped else "segments", exc))
        try:
            self.require_consent(destination)
        except ExportRefused as exc:
            found.append(_finding("privacy", exc))
        custom = saved is not None and bool(saved.custom)
        if answers is None or (custom and answers.fields is None):
            answers = None  # not asked (or not about these fields): ask now
            try:
                client = await self.open_client(destination, False, lambda _notice: None, factory)
            except ExportRefused as exc:
                found.append(_finding(_account_kind(exc), exc))
                client = None
            if client is not None:
                try:
                    answers = await ask_account(client, destination, saved)
                finally:
                    await client.aclose()
        list_contacts = None
        if answers is not None:
            # the list's size bounds the removal guardrails, whatever else failed
            list_contacts = answers.list_contacts
            refused = answers.refusal()
            if refused is not None:
                found.append(_finding(_account_kind(refused), refused))
            elif saved is not None and isinstance(answers.fields, list):
                found += await self._field_findings(answers.fields, destination, saved, columns)
        if plan is not None:
            found += await self._plan_findings(plan, destination, saved, request, list_contacts)
        return found

    async def _plan_findings(
        self,
        plan: PlanRecord,
        destination: Destination,
        mapping: FieldMapping | None,
        request: ExportRequest,
        list_contacts: int | None,
    ) -> list[Finding]:
        """What `apply` checks of the stored plan: that nothing it was computed
        from changed (drift), then the cap and guardrails over its counts."""
        out: list[Finding] = []
        if mapping is not None and self.workspace is not None:
            try:
                now = await asyncio.to_thread(self.basis_now, destination, mapping, request)
            except ExportRefused as exc:
                out.append(_finding("destination", exc))
            else:
                changed = basis_changes(plan.basis, now)
                if changed:
                    out.append(
                        Finding(
                            "drift",
                            f"plan {plan.id} is out of date: {'; '.join(changed)}",
                            f"Plan {plan.id} is out of date: {'; '.join(changed)}. Review a "
                            "fresh plan before applying it.",
                        )
                    )
        counts = {k: int(v) for k, v in plan.counts.items() if isinstance(v, int | float)}
        rail = guardrail_violation(counts, destination, list_contacts, request.allow_removals)
        if rail is not None:
            out.append(rail)
        return out

    async def _field_findings(
        self,
        custom: list[CustomField],
        destination: Destination,
        mapping: FieldMapping,
        columns: list[Column] | None,
    ) -> list[Finding]:
        """Custom fields missing on the account (refused), and those whose type
        rejects the values of their column (SendGrid rejects the rows: a warning).
        ``columns``: the profile columns when already read (None: read them)."""
        from connector.services import field_type_for

        by_name = {f.name.lower(): f for f in custom}
        out: list[Finding] = []
        missing = missing_custom_fields(mapping, by_name)
        if missing:
            out.append(
                Finding(
                    "custom_fields",
                    f"custom field(s) missing on the account: {', '.join(missing)}",
                    _missing_fields(missing, destination),
                    names=tuple(missing),
                )
            )
        workspace = self.workspace
        if workspace is None:
            return out
        if columns is None:
            columns = await asyncio.to_thread(workspace.columns)
        types = {c.name: c.type for c in columns}
        for name, column in mapping.custom.items():
            defined = by_name.get(name.lower())
            if defined is None or column not in types or defined.field_type in ("", "Text"):
                continue
            sent_as = field_type_for(types[column])
            if sent_as != defined.field_type:
                out.append(
                    Finding(
                        "field_types",
                        f"{name} is a {defined.field_type} field; column {column} is "
                        f"{types[column]}",
                        f"Custom field {name!r} is a {defined.field_type} field on SendGrid but "
                        f"its column {column!r} is {types[column]} (sent as {sent_as}): "
                        "SendGrid rejects the values that are not a "
                        f"{defined.field_type.lower()}. Map another column, or another field.",
                        blocking=False,
                        names=(name,),
                    )
                )
        return out

    # -- the ledger -----------------------------------------------------------

    def ledger(self, destination: Destination) -> Path:
        """The ledger of the destination's list, adopting the file an older
        segsync kept per destination when the destination's last successful run
        went to this same list (otherwise it describes another list: ignored)."""
        path = ledger_file(self.state_dir, destination.base_url, list_id_of(destination))
        legacy = legacy_ledger_file(self.state_dir, destination.id)
        if not path.exists() and legacy.is_file():
            last = self.history.last_successful_run(destination.id)
            config = last.config if last is not None else {}
            if (
                config.get("list_id") == destination.list_id
                and config.get("base_url") == destination.base_url
            ):
                shutil.copy2(legacy, path)
        return path

    @staticmethod
    def distrust(info: LedgerInfo | None, list_contacts: int | None) -> str | None:
        return distrust_reason(info, list_contacts)

    @staticmethod
    def ledger_warnings(
        info: LedgerInfo | None, distrust: str | None, request: ExportRequest
    ) -> list[str]:
        """What the user must know about the ledger this plan uses."""
        out = []
        if distrust:
            effect = ["everyone selected is sent"]
            if request.mode == "mirror":
                effect.append("no one is removed this run")
            out.append(f"segsync's record of this list is not trusted: {distrust}; " + (
                " and ".join(effect) + ", and the record is rebuilt from what this run confirms"
            ))  # fmt: skip
        elif info is not None and request.incremental and not info.digests_comparable:
            out.append(
                "the record of what was sent was computed by another version of DuckDB "
                f"({info.engine}); --incremental cannot tell what changed, so everyone "
                "selected is sent once"
            )
        return out

    # -- basis and drift --------------------------------------------------------

    def basis_now(
        self, destination: Destination, mapping: FieldMapping | None, request: ExportRequest | None
    ) -> dict[str, Any]:
        """What a plan made now would be computed from (an undo plan, made from a
        run's record rather than the profiles, has no workspace or mapping)."""
        from store.ledger import read_info

        info = read_info(ledger_file(self.state_dir, destination.base_url, list_id_of(destination)))
        basis: dict[str, Any] = {
            "list_id": destination.list_id,
            "base_url": destination.base_url,
            "ledger_version": info.version if info else 0,
        }
        if mapping is not None and self.workspace is not None and request is not None:
            predicates = {s.name: s.where for s in self.workspace.segments()}
            basis.update(
                workspace=str(self.workspace.root),
                source=source_fingerprint(self.workspace.source),
                mapping=mapping_json(mapping),
                predicates={name: predicates.get(name) for name in request.segments},
            )
        return basis

    def config_snapshot(
        self, request: ExportRequest, destination: Destination, mapping: FieldMapping | None
    ) -> dict[str, Any]:
        return {
            "workspace": str(self.workspace.root) if self.workspace is not None else None,
            "destination": destination.name,
            "list_id": destination.list_id,
            "base_url": destination.base_url,
            "segments": list(request.segments),
            "mode": request.mode,
            "incremental": request.incremental,
            "dry_run": False,
            "mapping": mapping_json(mapping) if mapping is not None else None,
            "cap": destination.cap,
        }


def missing_custom_fields(mapping: FieldMapping, on_account: Any) -> list[str]:
    """Mapped custom fields the account does not have (``on_account``: its
    field names, lower-cased); SendGrid compares names without case."""
    return [name for name in mapping.custom if name.lower() not in on_account]


def guardrail_violation(
    counts: dict[str, int],
    destination: Destination,
    list_contacts: int | None,
    allow_removals: int | None,
) -> Finding | None:
    """The cap or guardrail a plan with these counts would break, or None: the
    check `apply` makes before its first request, and the preview shows."""
    from store import guardrails

    to_send = int(counts.get("to_send", 0))
    if to_send > destination.cap:
        return Finding(
            "cap",
            f"would send {to_send:,} contacts, over the cap of {destination.cap:,}",
            f"this export would send {to_send:,} contacts, over the cap of "
            f"{destination.cap:,} for {destination.name!r}; narrow the segments, or raise "
            f"the cap with `segsync destinations set-cap {destination.name} N`",
            amount=to_send,
        )
    rails = guardrails.Guardrails(
        destination.max_removals, destination.max_removal_share, destination.max_adds
    )
    to_remove = int(counts.get("to_remove", 0))
    found = guardrails.violation(
        rails,
        to_add=int(counts.get("to_add", 0)),
        to_remove=to_remove,
        list_contacts=list_contacts,
        allow_removals=allow_removals,
    )
    if found is None:
        return None
    if found.kind == "max_adds":
        title = f"would add {int(counts.get('to_add', 0)):,}, over the limit of {found.limit:,}"
        return Finding("max_adds", title, found.message, amount=int(counts.get("to_add", 0)))
    title = f"would remove {to_remove:,}, over the limit of {found.limit:,} per run"
    return Finding("removals", title, found.message, amount=to_remove)


def _finding(kind: Any, exc: ExportRefused) -> Finding:
    """A refusal as a finding: its first sentence as the title."""
    message = str(exc)
    title = message.split(". ")[0].split("; ")[0].rstrip(".")
    return Finding(kind, title, message)


@dataclass(frozen=True)
class AccountAnswers:
    """What SendGrid answered to one round of look-ups: each answer, or the
    refusal it became. An export takes its list count and field ids from it,
    and a preview's findings read the same answers instead of asking again."""

    key: ExportRefused | None  # None: the key was accepted, with the scopes it needs
    contacts: int | ExportRefused | None  # on the list now (None: SendGrid did not say)
    fields: list[CustomField] | ExportRefused | None  # custom fields; None: none mapped

    @property
    def list_contacts(self) -> int | None:
        """The list's size, when SendGrid said it (whatever else it refused)."""
        return self.contacts if isinstance(self.contacts, int) else None

    def refusal(self) -> ExportRefused | None:
        """The first problem, in the order an export checks: key, list, fields."""
        for answer in (self.key, self.contacts, self.fields):
            if isinstance(answer, ExportRefused):
                return answer
        return None


async def ask_account(
    client: SendGridClient, destination: Destination, mapping: FieldMapping | None
) -> AccountAnswers:
    """Ask SendGrid about the key, the list and (when any are mapped) the
    custom fields at once: it is often a fifth of a second away, and one
    after another these kept every preview and export waiting for each."""

    async def refused(call: Awaitable[T]) -> T:
        try:
            return await call
        except SendGridError as exc:
            raise ExportRefused(str(exc)) from exc

    async def key() -> None:
        await refused(client.validate_key())

    async def contacts() -> int | None:
        found = await refused(client.get_list(list_id_of(destination)))
        return found.contact_count

    async def fields() -> list[CustomField] | None:
        if mapping is None or not mapping.custom:
            return None
        custom, _reserved = await refused(client.field_definitions())
        return custom

    return AccountAnswers(*await at_once(key(), contacts(), fields(), answers=ExportRefused))


def _missing_fields(missing: list[str], destination: Destination) -> str:
    return (
        f"Custom field(s) {', '.join(missing)} do not exist on the SendGrid account of "
        f"{destination.name!r}. Create them with `segsync map {destination.name} ... "
        "--create-fields`, or remove them from the mapping."
    )


def _account_kind(exc: ExportRefused) -> Any:
    cause = exc.__cause__
    return "unreachable" if isinstance(cause, NetworkError | SendGridUnavailable) else "destination"


_BASIS_WORDS = {
    "workspace": "the workspace",
    "source": "the profile source",
    "mapping": "the field mapping",
    "predicates": "the segment definitions",
    "list_id": "the destination's list",
    "base_url": "the destination's API host",
    "ledger_version": "segsync's record of the list (another run changed it)",
}


def basis_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a plan's basis and the present, in words (only what
    the plan was computed from: an undo plan has no profiles to compare)."""
    return [
        f"{words} changed since the plan"
        for key, words in _BASIS_WORDS.items()
        if key in old and old.get(key) != new.get(key)
    ]
