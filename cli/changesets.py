"""`segsync plan`, `segsync apply` and `segsync plans`: the changeset on the command line.

A plan is computed and stored, reviewed (counts, who would be removed), then
applied exactly. `apply` asks before it sends unless `--yes`; a script that
cannot be asked (no terminal) must say `--yes`, so nothing is applied by
accident. Data goes to stdout, progress and questions to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    print_json,
    read_history,
    resolve_state_dir,
    split_names,
)
from cli.export import add_mode_options, add_segment_option
from store.safe_text import visible

REMOVALS_SHOWN = 10


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., None]
) -> None:
    """Register plan, apply and plans (``common`` adds --workspace/--state-dir)."""
    plan = sub.add_parser(
        "plan",
        help="compute and store a changeset (who would be added, updated, removed); sends nothing",
        description="Compute what an export would do, person by person, and store it as a "
        "plan to review and apply. Nothing is sent.",
        epilog="examples:\n  segsync plan newsletter --segment high_value --mode mirror\n"
        "  segsync plan newsletter --segment high_value,germany --json | jq .counts\n"
        "  segsync plans show 12; segsync apply 12",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(plan)
    plan.add_argument("destination", help="the destination (`segsync destinations list`)")
    add_segment_option(plan)
    add_mode_options(plan)
    plan.add_argument(
        "--json", action="store_true", help="print the plan (counts, basis, samples) as JSON"
    )
    plan.set_defaults(func=cmd_plan)

    apply = sub.add_parser(
        "apply",
        help="send exactly what a stored plan says",
        description="Apply a stored plan after checking that nothing it was computed from "
        "has changed (profiles, mapping, segments, list, segsync's record of the list).",
        epilog="examples:\n  segsync apply 12\n  segsync apply 12 --yes --replan --json\n\n"
        "exit codes: as `segsync export` (3: partial, rows SendGrid rejected)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(apply)
    apply.add_argument("plan", type=int, help="the plan's number (`segsync plans`)")
    apply.add_argument("--yes", action="store_true", help="do not ask before sending")
    apply.add_argument(
        "--replan", action="store_true", help="if the plan is out of date, plan again and apply"
    )
    apply.add_argument(
        "--allow-removals",
        type=int,
        default=None,
        metavar="N",
        help="allow up to N removals this run, past the destination's guardrail",
    )
    apply.add_argument("--json", action="store_true", help="print only a JSON summary")
    apply.add_argument("--batch-size", type=int, default=30_000, help=argparse.SUPPRESS)
    apply.add_argument(
        "--concurrency", type=int, default=4, metavar="N", help="requests in flight (default 4)"
    )
    apply.set_defaults(func=cmd_apply)

    plans = sub.add_parser(
        "plans",
        help="stored plans (and previews)",
        description="List stored plans, newest first, with their counts and state.",
        epilog="examples:\n  segsync plans --destination news\n  segsync plans show 12\n"
        "  segsync plans prune --older-than 30",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(plans, workspace=False)
    plans.add_argument(
        "--destination", default=None, metavar="NAME", help="only this destination's plans"
    )
    plans.add_argument("--json", action="store_true", help="print them as JSON")
    plans.set_defaults(func=cmd_plans)
    plans_sub = plans.add_subparsers(dest="plans_command", metavar="SUBCOMMAND")
    show = plans_sub.add_parser(
        "show", help="one plan: counts, basis, people by operation",
        epilog="example: segsync plans show 12 --json",
    )  # fmt: skip
    common(show, workspace=False)
    show.add_argument("plan", type=int, help="the plan's number")
    show.add_argument("--json", action="store_true", help="print it as JSON")
    show.set_defaults(func=cmd_plans_show)
    prune = plans_sub.add_parser(
        "prune", help="delete plans older than N days",
        epilog="example: segsync plans prune --older-than 30",
    )  # fmt: skip
    common(prune, workspace=False)
    prune.add_argument(
        "--older-than", type=float, default=7.0, metavar="DAYS",
        help="age of the plans to delete, in days (default 7)",
    )  # fmt: skip
    prune.set_defaults(func=cmd_plans_prune)


def _history(args: argparse.Namespace) -> Any:
    from store.history import History
    from store.paths import history_path

    return History(history_path(resolve_state_dir(args)))


# -- plan ---------------------------------------------------------------------


def cmd_plan(args: argparse.Namespace) -> int:
    from cli.export import findings_json, plan_findings
    from cli.progress import EventPrinter, build_engine, run_engine
    from connector import events as ev
    from connector.engine import ExportRequest

    args.batch_size, args.concurrency = 30_000, 4
    engine = build_engine(args)
    request = ExportRequest(
        destination=args.destination,
        segments=split_names(args.segments),
        mode=args.mode,
        incremental=args.incremental,
        dry_run=True,
    )
    printer = None if args.json else EventPrinter(sys.stderr, live=False, preview=False)
    import asyncio

    events = asyncio.run(run_engine(engine, request, printer))
    preview = next((e for e in events if isinstance(e, ev.PreviewReady)), None)
    if preview is None:
        raise CliError("planning ended without a plan", 1)
    record = engine.history.get_plan(preview.plan_id)
    if args.json:
        found = plan_findings(engine, request, record.id)
        print_json({**plan_json(record, preview), **findings_json(found)})
    else:
        print_plan_summary(record, preview.removals_sample)
        plan_findings(engine, request, record.id)
    return EXIT_OK


def plan_json(record: Any, preview: Any = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "plan": record.id,
        "destination": record.destination_name,
        "segments": list(record.segments),
        "mode": record.mode,
        "incremental": record.incremental,
        "status": record.status,
        "applied_run": record.applied_run_id,
        "created_at": record.created_at.isoformat(),
        "counts": dict(record.counts),
        "basis": dict(record.basis),
    }
    if preview is not None:
        data["removals_sample"] = list(preview.removals_sample)
        data["sample_contacts"] = list(preview.sample_contacts)
        data["first_body"] = preview.first_body
    return data


def print_plan_summary(record: Any, removals: Any = ()) -> None:
    """The plan in words: adds, updates, removals (with some names), rejections."""
    c = record.counts
    kind = record.mode + (", incremental" if record.incremental else "")
    print(f"plan {record.id}: {visible(record.destination_name)} ({kind}) of "
          f"{visible(', '.join(record.segments))}")  # fmt: skip
    print(f"  add      {c.get('to_add', 0):>9,}")
    print(f"  update   {c.get('to_update', 0):>9,}")
    print(f"  remove   {c.get('to_remove', 0):>9,}")
    print(f"  unchanged{c.get('unchanged', 0):>9,}")
    from store.records import EXCLUSIONS

    rejected = {k: c.get(k, 0) for k in EXCLUSIONS if c.get(k, 0)}
    if rejected:
        print("  not sent " + ", ".join(f"{k} {v:,}" for k, v in rejected.items()))
    if removals:
        print(f"  to be removed (first {min(len(removals), REMOVALS_SHOWN)}):")
        for email in list(removals)[:REMOVALS_SHOWN]:
            print(f"    {visible(email)}")
    basis = record.basis
    if basis.get("ledger_distrusted"):
        print(f"  note: segsync's record of the list is not trusted: "
              f"{visible(basis['ledger_distrusted'])}")  # fmt: skip
    print(f"apply it with: segsync apply {record.id}")


# -- apply --------------------------------------------------------------------


def cmd_apply(args: argparse.Namespace) -> int:
    from cli.progress import EXIT_BY_STATUS, build_engine, print_summary, run_export
    from connector.engine import ExportRequest
    from store.changeset import Changeset, changeset_file
    from store.history_errors import PlanNotFound

    engine = build_engine(args)
    try:
        record = engine.history.get_plan(args.plan)
    except PlanNotFound as exc:
        raise CliError(str(exc)) from None
    destination = engine.history.get_destination(record.destination_id)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(
                f"apply asks before sending; not on a terminal, say --yes to apply plan {record.id}"
            )
        removals: list[str] = []
        path = changeset_file(engine.state_dir, record.id)
        if record.counts.get("to_remove") and path.is_file():
            with Changeset(path) as changes:
                removals = changes.removals()[:REMOVALS_SHOWN]
        print_plan_summary(record, removals)
        c = record.counts
        question = (
            f"Apply plan {record.id} to {visible(destination.name)}: add {c.get('to_add', 0):,}, "
            f"update {c.get('to_update', 0):,}, remove {c.get('to_remove', 0):,}? [y/N] "
        )
        sys.stderr.write(question)
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            sys.stderr.write("nothing was sent\n")
            return EXIT_USAGE
    request = ExportRequest(
        destination=destination.id,
        plan_id=record.id,
        replan=args.replan,
        allow_removals=args.allow_removals,
    )
    finished, plan_id = run_export(engine, request, args.json)
    if args.json:
        print_summary(finished, plan_id)
    return EXIT_BY_STATUS.get(finished.status, 1)


# -- plans --------------------------------------------------------------------


def cmd_plans(args: argparse.Namespace) -> int:
    with read_history(args) as history:
        destination_id = None
        if args.destination is not None:
            destination_id = history.get_destination(args.destination).id
        plans = history.list_plans(destination_id)
    if args.json:
        print_json([plan_json(p) for p in plans])
        return EXIT_OK
    if not plans:
        sys.stderr.write("no plans yet (make one with `segsync plan DEST --segment S`)\n")
    for p in plans:
        c = p.counts
        applied = f"applied by run {p.applied_run_id}" if p.applied_run_id else p.status
        print(
            f"{p.id:>5}  {p.created_at:%Y-%m-%d %H:%M}  {visible(p.destination_name):<16} "
            f"{p.mode:<7} +{c.get('to_add', 0):,} ~{c.get('to_update', 0):,} "
            f"-{c.get('to_remove', 0):,}  {applied}"
        )
    return EXIT_OK


def cmd_plans_show(args: argparse.Namespace) -> int:
    from store.history_errors import PlanNotFound

    with read_history(args) as history:
        try:
            record = history.get_plan(args.plan)
        except PlanNotFound as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print_json(plan_json(record))
        return EXIT_OK
    from store.changeset import Changeset, changeset_file

    removals: list[str] = []
    path = changeset_file(resolve_state_dir(args), record.id)
    if path.is_file():
        with Changeset(path) as changes:
            removals = changes.removals()[:REMOVALS_SHOWN]
    print_plan_summary(record, removals)
    return EXIT_OK


def cmd_plans_prune(args: argparse.Namespace) -> int:
    from store.changeset import changeset_file

    history = _history(args)
    state = resolve_state_dir(args)
    now = datetime.now(UTC)
    pruned = 0
    for record in history.plans_older_than(timedelta(days=args.older_than), now):
        changeset_file(state, record.id).unlink(missing_ok=True)
        history.delete_plan(record.id)
        pruned += 1
    print(f"pruned {pruned} plan(s) older than {args.older_than:g} days")
    return EXIT_OK
