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
        counts = run.counts or {}
        kind = "dry-run" if run.dry_run else run.mode
        print(
            f"{run.id:>5}  {run.started_at:%Y-%m-%d %H:%M}  {run.destination_name:<16} "
            f"{kind:<8} {run.status:<11} sent {counts.get('sent', 0):>9,}  "
            f"{', '.join(run.segments)}"
        )
    return EXIT_OK


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
    for key in ("id", "destination", "segments", "mode", "status", "operator", "host"):
        print(f"{key:12} {data[key]}")
    print(f"{'started':12} {data['started_at']}  ended {data['ended_at']}")
    print(f"{'counts':12} " + ", ".join(f"{k} {v:,}" for k, v in data["counts"].items()))
    if run.message:
        print(f"{'message':12} {run.message}")
    for b in data["batches"]:
        print(
            f"  batch {b['seq']:>3} {b['contacts']:>7,} contacts  job {b['job_id'] or '-':<38} "
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
