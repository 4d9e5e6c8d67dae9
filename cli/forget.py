"""`segsync forget EMAIL` and `segsync runs evidence N`: erasure and accountability.

`forget` asks before it acts unless `--yes`; without a terminal to ask on it
refuses unless `--yes`, so a script never erases someone by accident. Its
exit code says whether everything was done: 0 off every list and out of every
local record, 1 when a list could not be reached or a copy remains (both are
named; running it again finishes the job).

`runs evidence` prints Markdown for a human (every value from data made
visible and inert as markup) or exact JSON with `--json`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, print_json, resolve_state_dir
from store.safe_text import visible

_RESULT_WORDS = {
    "removed": "removed from the list",
    "not_on_list": "was not on the list",
    "no_list": "nothing to do",
    "not_removed": "NOT REMOVED",
    "unreachable": "NOT REACHED",
}
_KIND_WORDS = {
    "ledger": ("ledgers (who segsync believes is on each list)", "dropped"),
    "plan": ("plans", "redacted"),
    "people": ("people records of runs", "redacted"),
    "batch": ("batch address files of unfinished runs", "redacted"),
    "other": ("other data files", "redacted"),
}


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., None]
) -> None:
    """Register `forget` (``common`` adds --state-dir)."""
    forget = sub.add_parser(
        "forget",
        help="erase a person: off every list segsync manages, out of every local record",
        description="Take a person off every destination list segsync manages (membership "
        "only: the contact stays in the SendGrid account), drop them from every ledger, "
        "and replace their address by a salted token in run records and plans. Later "
        "exports leave them out while the profile source still holds them.",
        epilog="example: segsync forget someone@example.com --yes",
    )
    common(forget, workspace=False)
    forget.add_argument("email", help="the address to erase")
    forget.add_argument("--yes", action="store_true", help="do not ask before erasing")
    forget.add_argument("--json", action="store_true", help="print what was done as JSON")
    forget.set_defaults(func=cmd_forget)


def _check_email(text: str) -> str:
    email = text.strip()
    if not email or "@" not in email or any(c.isspace() for c in email):
        raise CliError(f"{visible(text)!s} is not an email address")
    return email


def cmd_forget(args: argparse.Namespace) -> int:
    from connector.forget import forget_person
    from store.history import History
    from store.paths import history_path

    email = _check_email(args.email)
    state = resolve_state_dir(args)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("forget asks before erasing; not on a terminal, say --yes to go ahead")
        with History(history_path(state)) as history:
            names = [d.name for d in history.list_destinations()]
        where = ", ".join(visible(n) for n in names) or "no destinations"
        sys.stderr.write(
            f"Forget {visible(email)}: take them off the lists of {where} (the contacts stay "
            "in SendGrid), drop them from every ledger and redact them from run records and "
            "plans. This cannot be undone. Go ahead? [y/N] "
        )
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            sys.stderr.write("nothing was done\n")
            return EXIT_USAGE
    from store.redact import RedactionIncomplete

    try:
        report = forget_person(state, email)
    except RedactionIncomplete as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    if args.json:
        print_json(_report_json(report))
    else:
        _print_report(report)
    return EXIT_OK if report.complete else EXIT_FAILED


def _kind_totals(report: Any) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for item in report.files:
        entry = totals.setdefault(item.kind, {"files": 0, "rows": 0, "mentions": 0})
        entry["files"] += 1
        entry["rows"] += item.rows
        entry["mentions"] += item.mentions
    return totals


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "token": report.token,
        "complete": report.complete,
        "lists": [
            {
                "destination": o.destination,
                "list_id": o.list_id,
                "result": o.result,
                "done": o.done,
                "detail": o.detail,
            }
            for o in report.lists
        ],
        "history": [{"file": str(db.path), "values": dict(db.values)} for db in report.databases],
        "files": _kind_totals(report),
        "plans_superseded": list(report.plans_superseded),
        "temp_files_removed": [str(p) for p in report.temp_files_removed],
        "text_files": [str(p) for p in report.text_files],
        "copies_left": [str(p) for p in report.traces],
    }


def _print_report(report: Any) -> None:
    # The address itself is not printed: this output may end up in a log.
    print(f"forgotten: segsync's records now name this person {report.token}")
    print("SendGrid lists (membership only; contacts are never deleted):")
    if not report.lists:
        print("  no destinations")
    for o in report.lists:
        words = _RESULT_WORDS.get(o.result, o.result)
        detail = f": {visible(o.detail)}" if o.detail else ""
        print(f"  {visible(o.destination)} (list {visible(o.list_id or '-')}): {words}{detail}")
    print("Local records:")
    for db in report.databases:
        where = ", ".join(f"{visible(k)} {v:,}" for k, v in sorted(db.values.items()))
        what = f"{db.total:,} value(s) replaced ({where})" if db.total else "nothing named them"
        print(f"  {db.path.name}: {what}; compacted, write-ahead log emptied")
    totals = _kind_totals(report)
    for kind, (label, verb) in _KIND_WORDS.items():
        entry = totals.get(kind)
        if entry is None:
            print(f"  {label}: nothing named them")
            continue
        extra = f", {entry['mentions']:,} other mention(s) replaced" if entry["mentions"] else ""
        print(f"  {label}: {entry['rows']:,} row(s) {verb} in {entry['files']:,} file(s){extra}")
    if report.text_files:
        names = ", ".join(visible(p.name) for p in report.text_files)
        print(f"  text files (logs): address replaced in {names}")
    if report.temp_files_removed:
        print(
            f"  half-written files of a stopped process: {len(report.temp_files_removed)} removed"
        )
    if report.plans_superseded:
        ids = ", ".join(str(i) for i in report.plans_superseded)
        print(f"  plan(s) {ids} would have touched them: marked superseded (plan again)")
    print(
        "Later exports leave them out (counted as `forgotten`) while the profile source "
        "still holds them; remove them from the source."
    )
    if report.traces:
        print("NOT DONE: these files still hold the address:", file=sys.stderr)
        for path in report.traces:
            print(f"  {visible(path)}", file=sys.stderr)
    if not all(o.done for o in report.lists):
        print(
            "NOT DONE: the person may still be on the list(s) above marked NOT; run "
            "`segsync forget` again for this address once they can be reached, or take "
            "them off the list in SendGrid.",
            file=sys.stderr,
        )


# -- runs evidence ------------------------------------------------------------


def cmd_evidence(args: argparse.Namespace, history: Any) -> int:
    """`segsync runs evidence N [--out FILE] [--json]`."""
    from store.evidence import build_evidence, render_markdown
    from store.history_errors import NotFound

    try:
        evidence = build_evidence(history, resolve_state_dir(args), args.run)
    except NotFound as exc:
        raise CliError(f"{exc}. See `segsync runs`.") from exc
    if args.json:
        import orjson

        text = orjson.dumps(evidence, option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        text = render_markdown(evidence)
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    from store.atomic import write_atomic

    try:
        write_atomic(args.out, lambda handle: handle.write(text.encode("utf-8")))
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {exc.strerror}") from exc
    print(f"wrote the evidence of run {evidence['run']} to {args.out.absolute()}")
    return EXIT_OK
