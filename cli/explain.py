"""`segsync explain EMAIL | --key KEY`: why a person was or was not sent.

The answer comes from the live profiles (run through the planner's own rules)
and from the records (the destination's ledger, every run's people record).
Every value shown comes from data, so it goes through `visible()`; `--json`
gives the same answer exactly.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from cli.common import (
    EXIT_OK,
    CliError,
    open_workspace,
    print_json,
    read_history,
    resolve_state_dir,
    saved_mapping,
    split_names,
)
from store.safe_text import visible


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., None]
) -> None:
    explain = sub.add_parser(
        "explain",
        help="why a person was or was not sent, and what each run did to them",
        description="Explain one person: the segments they are in, consent, email "
        "validity, duplicates, field lengths, what segsync believes is on the list, "
        "and every run that added, updated, removed or rejected them.",
        epilog="examples:\n  segsync explain ann@example.com\n"
        "  segsync explain --key 1042 --destination newsletter --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(explain)
    explain.add_argument("email", nargs="?", help="the person's email address")
    explain.add_argument("--key", default=None, help="find the person by profile key instead")
    explain.add_argument(
        "--destination", default=None, help="which destination (needed when there are several)"
    )
    explain.add_argument(
        "--segment",
        action="append",
        default=[],
        dest="segments",
        metavar="NAME[,NAME]",
        help="judge against these segments, repeated or comma-separated (default: the "
        "destination's saved ones, else those of its last run)",
    )
    explain.add_argument("--json", action="store_true", help="print the answer as JSON")
    explain.set_defaults(func=cmd_explain)


def _destination(history: Any, name: str | None) -> Any:
    if name is not None:
        return history.get_destination(name)
    active = history.list_destinations()
    if len(active) == 1:
        return active[0]
    if not active:
        raise CliError("no destinations yet: add one with `segsync destinations add`")
    names = ", ".join(d.name for d in active)
    raise CliError(f"several destinations ({visible(names)}): name one with --destination")


def _default_segments(history: Any, destination: Any) -> tuple[str, ...]:
    """The destination's saved selection, else the segments of its last run."""
    saved = tuple(history.get_segments(destination.id))
    if saved:
        return saved
    last = history.list_runs(destination=destination.id, limit=1)
    return tuple(last[0].segments) if last else ()


def cmd_explain(args: argparse.Namespace) -> int:
    from store.explain import ExplainError, explain

    if (args.email is None) == (args.key is None):
        raise CliError("name one person: an EMAIL, or --key KEY")
    state = resolve_state_dir(args)
    with read_history(args) as history:
        destination = _destination(history, args.destination)
        mapping = saved_mapping(history, destination)
        segments = split_names(args.segments) or _default_segments(history, destination)
        field_ids = history.latest_custom_field_ids(destination.id)
    try:
        answer = explain(
            open_workspace(args),
            state,
            destination=destination,
            mapping=mapping,
            segments=segments,
            email=args.email,
            key=args.key,
            custom_field_ids=field_ids,
        )
    except ExplainError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print_json(answer.to_json())
        return EXIT_OK
    _print(answer)
    return EXIT_OK


def _print(a: Any) -> None:
    print(f"{visible(a.email or '-')}: {visible(a.verdict)}")
    print(f"destination {visible(a.destination)} (list {visible(a.list_id or '-')})")
    for row in a.rows:
        key = f" key {visible(row.key)}" if row.key is not None else ""
        print(f"\nprofile row {row.row}{key}: email as found {visible(row.source_email)!r}")
        print(f"  email      {visible(row.email)}: {row.email_verdict}")
        if a.consent_column:
            ok = "yes" if row.consent_ok else "no"
            print(f"  consent    {visible(a.consent_column)} = {visible(row.consent_value)}: {ok}")
        else:
            print("  consent    no consent column mapped: not checked")
        for name, member in row.segments.items():
            mark = "in " if member else "out"
            chosen = " (chosen)" if name in a.segments else ""
            where = visible(a.segments.get(name) or "")
            print(f"  segment    {mark} {visible(name)}{chosen}" + (f": {where}" if where else ""))
        for f in row.fields:
            if f["too_long"]:
                print(f"  field      {f['field']} has {f['length']} characters "
                      f"(max {f['limit']}): rejected as too_long")  # fmt: skip
        if row.status:
            detail = f" ({visible(row.detail)})" if row.detail else ""
            print(f"  plan       {row.status}{detail}")
    print(f"\nledger: {'on the list' if a.on_list else 'not on the list'} as far as segsync "
          f"knows" + (f", since run {a.since_run}" if a.since_run else ""))  # fmt: skip
    if a.runs:
        print("runs:")
        for r in a.runs:
            why = f": {visible(r['reason'])}" if r["reason"] else ""
            print(f"  run {r['run']:>5}  {r['op']}{why}")
    else:
        print("runs: no run touched this address")
