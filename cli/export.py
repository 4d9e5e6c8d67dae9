"""`segsync export`: plan and apply in one step (what cron runs), or a dry run.

The engine and the event rendering are loaded when the command runs
(`cli.progress`); this module only declares the options, so `--help` is quick.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.common import EXIT_CODES_HELP, CliError, read_history, say, split_names

EXPORT_EPILOG = f"""\
examples:
  segsync export news --segment high_value --dry-run          # preview, nothing sent
  segsync export news --segment high_value,germany            # add and update
  segsync export news --segment high_value --mode mirror      # ...and take off who left
  segsync export news --segment high_value --incremental      # only changed contacts
  segsync export --resume 7                                   # finish an interrupted run
  segsync export news --segment high_value --json | jq .counts

Progress goes to stderr, the result (and --json) to stdout.

{EXIT_CODES_HELP}
"""


def add_segment_option(parser: argparse.ArgumentParser, help_text: str | None = None) -> None:
    """--segment NAME, repeatable and comma-separated (`--segment a,b`)."""
    parser.add_argument(
        "--segment",
        action="append",
        default=[],
        dest="segments",
        metavar="NAME[,NAME]",
        help=help_text
        or "segment to export: repeat it or separate names with commas; the union is sent "
        "(default: the destination's saved selection; `segsync segments` lists them)",
    )


def add_mode_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=("upsert", "mirror"),
        default="upsert",
        help="upsert (default): add and update contacts, remove no one. mirror: also REMOVE "
        "from the list the people segsync put there who are no longer selected (within the "
        "guardrails: at most 10%% of the list or 1,000 people unless --allow-removals)",
    )
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="send only contacts that are new or whose values changed since segsync last "
        "sent them (by its record of the list); unchanged ones are counted, not sent",
    )


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., None]
) -> None:
    export = sub.add_parser(
        "export",
        help="export segments to a destination (plan and apply in one step)",
        description="Select the union of the segments, leave out rows without consent or "
        "with bad data (reported, not sent), then send the rest to the destination's list "
        "and confirm every import job. The plan is stored like `segsync plan`'s.",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(export)
    export.add_argument(
        "destination",
        nargs="?",
        help="the destination (`segsync destinations list`); optional with --resume",
    )
    add_segment_option(export)
    add_mode_options(export)
    export.add_argument(
        "--dry-run",
        action="store_true",
        help="plan and preview only: counts, sample contacts and the first request body as "
        "JSON; nothing is sent (allowed before consent is recorded)",
    )
    export.add_argument(
        "--resume",
        type=int,
        default=None,
        metavar="RUN",
        help="finish an interrupted, cancelled or failed run: batches SendGrid confirmed are "
        "not sent again; the run's workspace, segments and mode are reused",
    )
    export.add_argument(
        "--json", action="store_true", help="print only a JSON summary on stdout (for scripts)"
    )
    export.add_argument(
        "--batch-size", type=int, default=30_000, metavar="N",
        help="contacts per request (1 to 30,000; default 30,000)",
    )  # fmt: skip
    export.add_argument(
        "--concurrency", type=int, default=4, metavar="N",
        help="requests in flight (1 to 16; default 4)",
    )  # fmt: skip
    export.add_argument(
        "--allow-removals",
        type=int,
        default=None,
        metavar="N",
        help="mirror: allow up to N removals this run, past the destination's guardrail",
    )
    export.set_defaults(func=cmd_export)


def _resume_target(args: argparse.Namespace) -> None:
    """With --resume: the destination and workspace of the run, unless given.

    An explicit --workspace still wins (and the plan's drift check says if it
    is not the one the run was planned from).
    """
    from store.history_errors import NotFound

    # Closed before the engine opens History (`store.history_deferred`: one
    # process never holds this file through sqlite3 and History at once).
    try:
        with read_history(args) as history:
            run = history.get_run(args.resume)
    except NotFound as exc:
        raise CliError(f"{exc}. See `segsync runs`.") from None
    if args.destination is None:
        args.destination = str(run.destination_id)
    recorded = (run.config or {}).get("workspace")
    if getattr(args, "workspace", None) is None and recorded:
        args.workspace = Path(recorded)


def cmd_export(args: argparse.Namespace) -> int:
    from cli.progress import EXIT_BY_STATUS, build_engine, print_summary, run_export
    from connector import events as ev
    from connector.engine import ExportRequest

    if args.resume is not None:
        _resume_target(args)
    elif args.destination is None:
        raise CliError("name the destination: `segsync export DEST --segment NAME`")
    engine = build_engine(args)
    request = ExportRequest(
        destination=args.destination,
        segments=split_names(args.segments),
        mode=args.mode,
        incremental=args.incremental,
        dry_run=args.dry_run,
        resume_run=args.resume,
        allow_removals=args.allow_removals,
    )
    previews: list[ev.PreviewReady] = []
    finished, plan_id = run_export(engine, request, args.json, previews)
    found = plan_findings(engine, request, plan_id) if args.dry_run else None
    if args.json:
        print_summary(
            finished,
            plan_id,
            previews[0] if previews else None,
            findings_json(found) if found is not None else None,
        )
    return EXIT_BY_STATUS.get(finished.status, 1)


def plan_findings(engine: Any, request: Any, plan_id: int | None) -> list[Any]:
    """What an export of the plan just made would meet before its first request
    (`Preflight.findings`, the same checks as the TUI's preview and the export
    itself: mapping, consent choice, key, list, custom fields and their types,
    cap, guardrails), each said on stderr: "would refuse" blocks, "warning"
    does not. A preview is "ready" only when nothing blocks."""
    import asyncio
    import dataclasses

    from cli.common import retry_printer
    from connector.preflight import Preflight
    from store.history_errors import NotFound

    if plan_id is None:
        return []
    try:
        dest = engine.history.get_destination(request.destination)
    except NotFound:
        return []  # the engine said so, in its words
    record = engine.history.get_plan(plan_id)
    pre = Preflight(engine.workspace, engine.history, engine.keys, engine.state_dir)
    printer = retry_printer("checking the account")

    def factory(*args: Any, **kwargs: Any) -> Any:
        from connector.client import SendGridClient

        kwargs["on_retry"] = printer
        return SendGridClient(*args, **kwargs)

    export = dataclasses.replace(request, dry_run=False)  # what applying it would meet
    answers = engine.account_answers  # what the plan was made with, moments ago
    found = asyncio.run(pre.findings(dest, export, record, factory=factory, answers=answers))
    for finding in found:
        say(("would refuse: " if finding.blocking else "warning: ") + finding.message)
    return list(found)


def findings_json(found: list[Any]) -> dict[str, Any]:
    """The findings for --json: messages, whether each blocks, and "ready"."""
    return {
        "warnings": [f.message for f in found],
        "findings": [
            {"kind": f.kind, "title": f.title, "message": f.message, "blocking": f.blocking}
            for f in found
        ],
        "ready": not any(f.blocking for f in found),
    }
