"""`segsync runs`: review past runs, their batches and rejected rows."""

from __future__ import annotations

import argparse
from typing import Any

from store.safe_text import visible
from tui.cli import EXIT_OK, CliError
from tui.cli_commands import print_json, resolve_state_dir


def _history(args: argparse.Namespace) -> Any:
    from store.history import History
    from store.paths import history_path

    return History(history_path(resolve_state_dir(args)))


BATCHES_SHOWN = 10


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def run_dict(run: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "destination": run.destination_name,
        "segments": list(run.segments),
        "mode": run.mode,
        "incremental": run.incremental,
        "dry_run": run.dry_run,
        "kind": "dry-run" if run.dry_run else run.kind,
        "plan": run.plan_id,
        "undo_of": run.undo_of,
        "status": run.status,
        "counts": dict(run.counts or {}),
        "message": run.message,
        "operator": run.operator,
        "host": run.host,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
    }


def cmd_runs(args: argparse.Namespace) -> int:
    history = _history(args)
    command = args.runs_command
    if command == "show":
        return _show(args, history)
    if command == "rejected":
        return _rejected(args, history)
    if command == "prune":
        return _prune(args, history)
    if command == "evidence":
        from tui.cli_forget import cmd_evidence

        return cmd_evidence(args, history)
    runs = history.list_runs(destination=args.destination, status=args.status)
    if args.json:
        print_json([run_dict(r) for r in runs])
        return EXIT_OK
    if not runs:
        print("no runs yet")
    for run in runs:
        print(
            f"{run.id:>5}  {run.started_at:%Y-%m-%d %H:%M}  {visible(run.destination_name):<16} "
            f"{_kind(run):<8} {run.status:<11} {_outcome(run.counts or {})}  "
            f"{visible(', '.join(run.segments))}"
        )
    return EXIT_OK


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
    from store.history import NotFound

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
    ops = args.op or None
    if "rejected" in (ops or ()):
        ops = [*ops, "rejected_by_sendgrid"]
    if "removed" in (ops or ()):
        ops = [*ops, "remove_failed"]
    rows = read_people(path, ops)
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


def _show(args: argparse.Namespace, history: Any) -> int:
    run = _get_run(history, args.run)
    if args.people:
        return _people(args, run)
    data = run_dict(run)
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


def _rejected(args: argparse.Namespace, history: Any) -> int:
    from store.rejected_csv import write_rejected_csv

    _get_run(history, args.run)
    try:
        written = write_rejected_csv(history.rejected_rows(args.run), args.csv)
    except OSError as exc:
        raise CliError(f"cannot write {args.csv}: {exc.strerror}") from exc
    print(f"wrote {written:,} rejected rows to {args.csv}")
    return EXIT_OK


def _prune(args: argparse.Namespace, history: Any) -> int:
    """Delete people records (and stray batch files) of runs ended before the cutoff."""
    import shutil
    import sys
    from datetime import UTC, datetime, timedelta

    from store.paths import run_dir
    from store.people import people_file

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
