"""`segsync runs`: review past runs, their batches, people and rejected rows."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cli.common import (
    EXIT_OK,
    CliError,
    open_history,
    print_json,
    read_history,
    resolve_state_dir,
    say,
)
from store.history_errors import NotFound
from store.history_read import RUN_STATUSES, RunReader, run_json
from store.safe_text import visible

RAW = argparse.RawDescriptionHelpFormatter
BATCHES_SHOWN = 10


def since(text: str) -> datetime:
    """argparse type for --since: an age (30m, 12h, 7d, 2w) or a date/time
    (2026-11-01, 2026-11-01T08:00, local time unless it says otherwise)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", text)
    if match:
        size = float(match.group(1))
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: size})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an age or a date: {text!r} (say 12h, 7d, 2w or 2026-11-01)"
        ) from None
    return when if when.tzinfo is not None else when.astimezone()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., None]
) -> None:
    runs = sub.add_parser(
        "runs",
        help="past runs: list, show, people, rejected rows, evidence, prune",
        description="List past runs, newest first: when, destination, kind, status, what "
        "SendGrid confirmed of what was planned, and the segments.",
        epilog="examples:\n  segsync runs --limit 5\n"
        "  segsync runs --destination news --status partial --since 7d\n"
        "  segsync runs show 7\n  segsync runs show 7 --people --op removed --csv gone.csv\n"
        "  segsync runs rejected 7 --csv rejected.csv\n  segsync runs evidence 7 --out run-7.md",
        formatter_class=RAW,
    )
    common(runs, workspace=False)
    _list_options(runs)
    runs.set_defaults(func=cmd_list)
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="SUBCOMMAND")

    lst = runs_sub.add_parser(
        "list", help="list runs (the default)", epilog="example: segsync runs list --limit 5"
    )
    common(lst, workspace=False)
    _list_options(lst, suppress=True)
    lst.set_defaults(func=cmd_list)

    show = runs_sub.add_parser(
        "show",
        help="one run in detail",
        description="One run: what was planned and what SendGrid confirmed, its message and "
        "batches (the first 10 unless --batches). --people lists who it touched.",
        epilog="examples:\n  segsync runs show 7\n  segsync runs show 7 --batches\n"
        "  segsync runs show 7 --people --op added --op updated --csv sent.csv",
        formatter_class=RAW,
    )
    common(show, workspace=False)
    show.add_argument("run", type=int, help="the run's number (`segsync runs`)")
    show.add_argument("--json", action="store_true", help="print it as JSON (every batch)")
    show.add_argument("--people", action="store_true", help="list every person the run touched")
    show.add_argument(
        "--op",
        action="append",
        default=[],
        choices=("added", "updated", "removed", "rejected", "not_sent"),
        help="with --people: only these operations (repeatable)",
    )
    show.add_argument(
        "--csv", type=Path, default=None, metavar="FILE", help="with --people: write them to CSV"
    )
    show.add_argument("--batches", action="store_true", help="list every batch, not the first 10")
    show.set_defaults(func=cmd_show)

    rejected = runs_sub.add_parser(
        "rejected",
        help="write a run's rejected rows to CSV",
        description="Write every row the run did not send, by the plan's rules or because "
        "SendGrid rejected it, with the reason and the profile key (formula characters "
        "neutralised for spreadsheets).",
        epilog="example: segsync runs rejected 7 --csv rejected.csv",
    )
    common(rejected, workspace=False)
    rejected.add_argument("run", type=int, help="the run's number")
    rejected.add_argument("--csv", type=Path, required=True, metavar="FILE", help="where to write")
    rejected.set_defaults(func=cmd_rejected)

    prune = runs_sub.add_parser(
        "prune",
        help="delete the per-person records of runs older than N days (counts stay)",
        description="Delete, for runs that ended more than N days ago, the record of every "
        "person they touched and any leftover batch address files. The runs, their counts "
        "and rejected rows stay in history. Nothing else ever deletes these records.",
        epilog="example: segsync runs prune --older-than 90 --yes",
    )
    common(prune, workspace=False)
    prune.add_argument(
        "--older-than", type=float, required=True, metavar="DAYS", help="age of the runs, in days"
    )
    prune.add_argument("--yes", action="store_true", help="do not ask first")
    prune.set_defaults(func=cmd_prune)

    evidence = runs_sub.add_parser(
        "evidence",
        help="consent evidence for a run (Markdown)",
        description="What an auditor asks about one run: who approved the consent wording "
        "and when, who ran it from where, the segments and profile file, the consent rule, "
        "and the number and SHA-256 of the people sent.",
        epilog="examples:\n  segsync runs evidence 7\n  segsync runs evidence 7 --out run-7.md"
        "\n  segsync runs evidence 7 --json",
        formatter_class=RAW,
    )
    common(evidence, workspace=False)
    evidence.add_argument("run", type=int, help="the run's number")
    evidence.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help="write to this file"
    )
    evidence.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    evidence.set_defaults(func=cmd_evidence)


def _list_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """Options of the run list (on `runs` and on `runs list`)."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
        help="print the runs as JSON",
    )  # fmt: skip
    parser.add_argument(
        "--destination", default=default, metavar="NAME",
        help="only this destination's runs (its current or former name)",
    )  # fmt: skip
    parser.add_argument(
        "--status", default=default, choices=RUN_STATUSES, help="only runs that ended so"
    )
    parser.add_argument(
        "--since", type=since, default=default, metavar="AGE|DATE",
        help="only runs started since then: 12h, 7d, 2w, or a date such as 2026-11-01",
    )  # fmt: skip
    parser.add_argument(
        "--limit", type=_positive, default=default, metavar="N",
        help="at most N runs, newest first (default: 200)",
    )  # fmt: skip


def cmd_evidence(args: argparse.Namespace) -> int:
    from cli.forget import cmd_evidence as evidence

    with read_history(args) as history:
        return evidence(args, history)


def cmd_list(args: argparse.Namespace) -> int:
    with read_history(args) as history:
        return _list(args, history)


def _list(args: argparse.Namespace, history: RunReader) -> int:
    destination = getattr(args, "destination", None)
    status = getattr(args, "status", None)
    limit = getattr(args, "limit", None) or 200
    started_after = getattr(args, "since", None)
    if (
        destination is not None
        and not history.destination_exists(destination)
        and not history.list_runs(destination=destination, limit=1)
    ):
        raise CliError(
            f"no destination or past run named {destination!r}. See `segsync destinations list`."
        )
    runs = history.list_runs(destination=destination, status=status,
                             limit=None if started_after is not None else limit)  # fmt: skip
    if started_after is not None:
        runs = [r for r in runs if _aware(r.started_at) >= started_after][:limit]
    if getattr(args, "json", False):
        print_json([run_json(r) for r in runs])
        return EXIT_OK
    if not runs:
        filtered = destination or status or started_after
        say("no runs match" if filtered else "no runs yet")
    for run in runs:
        print(
            f"{run.id:>5}  {run.started_at:%Y-%m-%d %H:%M}  {visible(run.destination_name):<16} "
            f"{_kind(run):<8} {run.status:<11} {_outcome(run.counts or {})}  "
            f"{visible(', '.join(run.segments))}"
        )
    return EXIT_OK


def _aware(value: datetime) -> datetime:
    """History times are UTC; older rows may lack the zone."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _kind(run: Any) -> str:
    """What the run was: a (legacy) dry-run, an undo, or its mode."""
    if run.dry_run:
        return "dry-run"
    return "undo" if run.kind == "undo" else run.mode


def _outcome(counts: dict[str, Any]) -> str:
    """What happened, apart from what was planned: confirmed by SendGrid."""
    sent = f"sent {counts.get('sent', 0):>9,} of {counts.get('to_send', 0):,} planned"
    if counts.get("to_remove"):
        sent += f", removed {counts.get('removed', 0):,} of {counts['to_remove']:,}"
    return sent


def _get_run(history: Any, run_id: int) -> Any:
    try:
        return history.get_run(run_id)
    except NotFound as exc:
        raise CliError(f"{exc}. See `segsync runs`.") from exc


def _people(args: argparse.Namespace, run: Any) -> int:
    """Every person the run touched, by operation: from its people record."""
    from store.people import people_file, read_people

    path = people_file(resolve_state_dir(args), run.id)
    if not path.is_file():
        raise CliError(
            f"run {run.id} has no record of the people it touched (it ran before segsync "
            "kept one, or it was refused before sending)"
        )
    asked: list[str] = list(args.op)
    if "rejected" in asked:
        asked.append("rejected_by_sendgrid")
    if "removed" in asked:
        asked.append("remove_failed")
    rows = read_people(path, asked or None)
    if args.csv is not None:
        from store.people import write_people_csv

        try:
            written = write_people_csv(rows, args.csv)
        except OSError as exc:
            raise CliError(f"cannot write {args.csv}: {exc.strerror}") from exc
        print(f"wrote {written:,} people to {args.csv.absolute()}")
        return EXIT_OK
    if args.json:
        print_json([{"email": e, "key": k, "op": o, "reason": r} for e, k, o, r in rows])
        return EXIT_OK
    for email, key, op, reason in rows:
        why = f"  {visible(reason)}" if reason else ""
        print(f"{op:<21} {visible(email or '-'):<40} {visible(key or '-'):<12}{why}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    with read_history(args) as history:
        run = _get_run(history, args.run)
    if args.people:
        return _people(args, run)
    data = run_json(run)
    data["config"] = run.config
    data["batches"] = [
        {
            "seq": b.seq,
            "contacts": b.contacts,
            "bytes": b.bytes,
            "job_id": b.job_id,
            "status": b.status,
            "created": b.created,
            "updated": b.updated,
            "errored": b.errored,
        }
        for b in run.batches
    ]
    if args.json:
        print_json(data)
        return EXIT_OK
    c = data["counts"]
    print(f"{'run':12} {run.id} ({_kind(run)}" + (f" of run {run.undo_of}" if run.undo_of else "")
          + (f", plan {run.plan_id})" if run.plan_id else ")"))  # fmt: skip
    for key in ("destination", "segments", "status", "operator", "host"):
        print(f"{key:12} {visible(data[key])}")
    print(f"{'started':12} {data['started_at']}  ended {data['ended_at']}")
    print(f"{'planned':12} add {c.get('to_add', 0):,}, update {c.get('to_update', 0):,}, "
          f"remove {c.get('to_remove', 0):,}, unchanged {c.get('unchanged', 0):,}")  # fmt: skip
    print(f"{'happened':12} {_outcome(c).strip()} (confirmed by SendGrid); "
          f"created {c.get('created', 0):,}, updated {c.get('updated', 0):,}, "
          f"rejected by SendGrid {c.get('errored', 0):,}")  # fmt: skip
    if c.get("remove_failed"):
        print(f"{'':12} {c['remove_failed']:,} removals not confirmed (still on the list)")
    if run.message:
        print(f"{'message':12} {visible(run.message, multiline=True)}")
    if len(data["batches"]) > BATCHES_SHOWN and not args.batches:
        shown = data["batches"][:BATCHES_SHOWN]
        print(f"batches      {len(data['batches']):,} (first {BATCHES_SHOWN}; all with --batches)")
    else:
        shown = data["batches"]
    for b in shown:
        print(
            f"  batch {b['seq']:>3} {b['contacts']:>7,} contacts  "
            f"job {visible(b['job_id'] or '-'):<38} "
            f"{b['status']:<9} +{b['created'] or 0:,} ~{b['updated'] or 0:,} !{b['errored'] or 0:,}"
        )
    return EXIT_OK


def cmd_rejected(args: argparse.Namespace) -> int:
    from store.rejected_csv import write_rejected_csv

    with read_history(args) as history:
        _get_run(history, args.run)
        try:
            written = write_rejected_csv(history.rejected_rows(args.run), args.csv)
        except OSError as exc:
            raise CliError(f"cannot write {args.csv}: {exc.strerror}") from exc
    print(f"wrote {written:,} rejected rows to {args.csv}")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """Delete people records (and stray batch files) of runs ended before the cutoff."""
    import shutil
    import sys

    from store.paths import run_dir
    from store.people import people_file

    history = open_history(args)
    state = resolve_state_dir(args)
    cutoff = datetime.now(UTC) - timedelta(days=args.older_than)
    old = [
        r
        for r in history.list_runs(limit=None)
        if r.ended_at is not None and r.ended_at < cutoff and r.status != "running"
    ]
    targets = [r for r in old if people_file(state, r.id).is_file()]
    if not targets:
        print(f"no per-person records older than {args.older_than:g} days")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("runs prune deletes records; say --yes when not on a terminal")
        sys.stderr.write(
            f"Delete who-was-touched records of {len(targets)} run(s) ended before "
            f"{cutoff:%Y-%m-%d %H:%M} UTC? Their counts stay. [y/N] "
        )
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return EXIT_OK
    for run in targets:
        people_file(state, run.id).unlink(missing_ok=True)
        if run.status in ("succeeded", "partial", "refused"):  # nothing left to resume
            shutil.rmtree(run_dir(state, run.id), ignore_errors=True)
    print(f"deleted the per-person records of {len(targets)} run(s)")
    return EXIT_OK
