"""`segsync undo RUN`: put a list back as it was before a run, as a plan to apply.

The undo is a changeset like any other (store.undo): reviewed, guarded by the
destination's guardrails, confirmed, applied and recorded as a run of kind
``undo`` linked to the original. It needs no workspace: it is made from the
run's record of the people it touched.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from cli.common import EXIT_OK, EXIT_USAGE, CliError, print_json, resolve_state_dir
from store.safe_text import visible

SHOWN = 10


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., None]
) -> None:
    undo = sub.add_parser(
        "undo",
        help="take off the list who a run added and put back who it removed",
        description="Undo a run's membership changes: those it added are taken off the "
        "list, those it removed are put back. Field values it updated are not restored "
        "(SendGrid keeps no history of them). Reviewed and confirmed like any plan.",
        epilog="examples:\n  segsync undo 42 --dry-run\n  segsync undo 42 --yes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(undo, workspace=False)
    undo.add_argument("run", type=int, help="the run to undo (`segsync runs`)")
    undo.add_argument("--dry-run", action="store_true", help="store and show the plan only")
    undo.add_argument("--yes", action="store_true", help="do not ask before applying")
    undo.add_argument(
        "--allow-removals",
        type=int,
        default=None,
        metavar="N",
        help="allow up to N removals, past the destination's guardrail",
    )
    undo.add_argument("--json", action="store_true", help="print the plan or summary as JSON")
    undo.set_defaults(func=cmd_undo)


def _engine(args: argparse.Namespace) -> Any:
    from cli.progress import client_factory
    from connector.engine import EngineSettings, ExportEngine
    from store.history import History
    from store.paths import history_path
    from store.secrets import KeyStore

    state = resolve_state_dir(args)
    return ExportEngine(
        settings=EngineSettings(),
        workspace=None,
        history=History(history_path(state)),
        keys=KeyStore(state),
        state_dir=state,
        client_factory=client_factory("undo"),
    )


def cmd_undo(args: argparse.Namespace) -> int:
    from cli.changesets import plan_json
    from cli.progress import EXIT_BY_STATUS, print_summary, run_export
    from connector.engine import ExportRefused, ExportRequest
    from store.history_errors import NotFound

    engine = _engine(args)
    try:
        plan, undo = engine.plan_undo(args.run)
    except (NotFound, FileNotFoundError, ExportRefused) as exc:
        raise CliError(str(exc)) from None
    c = plan.counts
    if args.json and args.dry_run:
        data = plan_json(plan)
        data["touched_later"] = list(undo.touched_later)
        print_json(data)
        return EXIT_OK
    if not args.json:
        _describe(plan, undo)
    if args.dry_run:
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(
                f"undo asks before it changes the list; say --yes to apply plan {plan.id}"
            )
        sys.stderr.write(
            f"Apply: remove {c['to_remove']:,} and put back {c['to_add']:,} on "
            f"{visible(plan.destination_name)}? [y/N] "
        )
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            sys.stderr.write("nothing was changed\n")
            return EXIT_USAGE
    request = ExportRequest(
        destination=plan.destination_id,
        plan_id=plan.id,
        allow_removals=args.allow_removals,
    )
    finished, plan_id = run_export(engine, request, args.json)
    if args.json:
        print_summary(finished, plan_id)
    return EXIT_BY_STATUS.get(finished.status, 1)


def _describe(plan: Any, undo: Any) -> None:
    c = plan.counts
    print(f"plan {plan.id}: undo run {plan.undo_of} on {visible(plan.destination_name)}")
    print(f"  take off the list  {c['to_remove']:>9,}  (the run added them)")
    print(f"  put back           {c['to_add']:>9,}  (the run removed them)")
    if c.get("updated_not_restored"):
        print(
            f"  not restored       {c['updated_not_restored']:>9,}  field values the run "
            "updated (SendGrid keeps no history of them)"
        )
    if undo.touched_later:
        print(
            f"  warning: {len(undo.touched_later):,} of them were changed again by later "
            "runs; undoing undoes that too:"
        )
        for email in undo.touched_later[:SHOWN]:
            print(f"    {visible(email)}")
    print(f"apply it with: segsync apply {plan.id}  (or segsync undo {plan.undo_of} --yes)")
