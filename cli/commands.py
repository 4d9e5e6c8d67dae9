"""Small headless commands: demo, sample, segments, emulator, where, and opening the app.

Segment names, descriptions, predicates and DuckDB's messages come from the
user's files: they are printed through `visible` so an escape sequence in
segments.toml cannot drive the terminal (``--json`` stays exact).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    history_reader,
    open_workspace,
    print_json,
    resolve_state_dir,
    workspace_path,
)
from store.safe_text import visible

RAW = argparse.RawDescriptionHelpFormatter


def _positive_seconds(text: str) -> float:
    """argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 10**9:  # also refuses nan and inf, which no timer takes
        raise argparse.ArgumentTypeError("must be a number of seconds above 0")
    return value


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., None]
) -> None:
    """demo, sample, segments, emulator, where."""
    demo = sub.add_parser(
        "demo",
        help="open the app on sample data and a local SendGrid emulator",
        description="Open the terminal app on sample_data/ against a SendGrid emulator in "
        "this process: no account and no network needed. Its state is kept in its own "
        "folder, apart from your real history.",
        epilog="examples:\n  segsync demo\n  segsync demo --reset",
        formatter_class=RAW,
    )
    demo.add_argument(
        "--state-dir", type=Path, default=argparse.SUPPRESS, metavar="DIR",
        help="where the demo keeps its state (default: its own folder)",
    )  # fmt: skip
    demo.add_argument(
        "--reset", action="store_true", help="forget the demo's state and start from scratch"
    )
    demo.set_defaults(func=_demo)

    sample = sub.add_parser(
        "sample",
        help="generate a workspace of synthetic profiles",
        description="Write a workspace (segments.toml and a profile file) of synthetic, "
        "deliberately dirty profiles: for trying segsync and measuring it.",
        epilog="examples:\n  segsync sample --out /tmp/ws\n"
        "  segsync sample --rows 1000000 --out /tmp/big --format csv\n"
        "  segsync sample --rows 100000 --out /tmp/pg --postgres postgresql://me@127.0.0.1/crm",
        formatter_class=RAW,
    )
    sample.add_argument(
        "--rows", type=int, default=5000, metavar="N",
        help="how many profiles to write (default: 5000)",
    )  # fmt: skip
    sample.add_argument(
        "--out", type=Path, required=True, metavar="DIR",
        help="folder to write the workspace into (created if missing)",
    )  # fmt: skip
    sample.add_argument(
        "--seed", type=int, default=7, help="random seed: the same seed gives the same profiles"
    )
    sample.add_argument(
        "--format", choices=("parquet", "csv"), default="parquet",
        help="profile file format (default: parquet)",
    )  # fmt: skip
    sample.add_argument(
        "--postgres", metavar="URL",
        help="load the profiles into PostgreSQL instead (a URL without password; "
        "replaces --table) and write a workspace over that table",
    )  # fmt: skip
    sample.add_argument(
        "--table", default="public.profiles", help="table for --postgres (default: public.profiles)"
    )
    sample.set_defaults(func=cmd_sample)

    segments = sub.add_parser(
        "segments",
        help="list segments with member counts and errors",
        description="Count the members of every segment of the workspace; a segment whose "
        "predicate fails is reported with DuckDB's message (exit 1), the others still count.",
        epilog="examples:\n  segsync segments --workspace sample_data\n  segsync segments --json",
        formatter_class=RAW,
    )
    common(segments)
    segments.add_argument("--json", action="store_true", help="print the counts as JSON")
    segments.add_argument(
        "--query-timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop counting a segment after this long and report it (default: 60)",
    )
    segments.set_defaults(func=cmd_segments)

    emulator = sub.add_parser(
        "emulator",
        help="run the local SendGrid emulator",
        description="Serve a stateful SendGrid emulator over HTTP, for tests and trials. It "
        "accepts any key; faults can be injected to see how segsync copes.",
        epilog="examples:\n  segsync emulator --port 3030\n"
        "  segsync emulator --rate-429 0.3 --latency 0.5 --state-file /tmp/emu.json",
        formatter_class=RAW,
    )
    emulator.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (loopback unless --i-know)"
    )
    emulator.add_argument(
        "--i-know",
        action="store_true",
        help="allow a non-loopback --host: anyone who can reach it reads every contact",
    )
    emulator.add_argument("--port", type=int, default=3030, help="port (default: 3030)")
    emulator.add_argument(
        "--state-file", type=Path, default=None, metavar="FILE",
        help="keep the emulator's lists and contacts in this file across restarts",
    )  # fmt: skip
    emulator.add_argument("--discard", action="store_true", help="accept uploads unprocessed")
    emulator.add_argument("--rate-429", type=float, default=0.0, help="share of 429 answers")
    emulator.add_argument("--rate-5xx", type=float, default=0.0, help="share of 500/503 answers")
    emulator.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    emulator.add_argument("--drop", type=float, default=0.0, help="share of dropped connections")
    emulator.add_argument("--job-delay", type=float, default=0.0, help="seconds jobs stay pending")
    emulator.set_defaults(func=cmd_emulator)

    where = sub.add_parser(
        "where",
        help="print where segsync keeps its state, history, plans, ledgers and keys",
        description="Print the paths segsync uses with these options: the state folder, "
        "the history database, plans, ledgers, people records, the key file folder and "
        "the workspace. Nothing is created.",
        epilog="examples:\n  segsync where\n  segsync where --json\n"
        '  sqlite3 "$(segsync where --json | jq -r .history)" .tables',
        formatter_class=RAW,
    )
    common(where)
    where.add_argument("--json", action="store_true", help="print the paths as JSON")
    where.set_defaults(func=cmd_where)


def _demo(args: argparse.Namespace) -> int:
    from tui.demo import run_demo

    code: int = run_demo(args)
    return code


def cmd_where(args: argparse.Namespace) -> int:
    """Paths only: the state folder is not created or checked."""
    from store.paths import history_path, ledger_name, state_dir_path

    state = state_dir_path(getattr(args, "state_dir", None))
    paths = {
        "state_dir": str(state),
        "history": str(history_path(state)),
        "plans": str(state / "plans"),
        "ledgers": str(state / "ledgers"),
        "people": str(state / "people"),
        "keys": str(state / "keys"),
        "workspace": str(workspace_path(args).absolute()),
    }
    ledgers: dict[str, str] = {}
    if history_path(state).is_file():  # only an existing history: `where` creates nothing
        with history_reader(history_path(state)) as history:
            for dest in history.list_destinations():
                if dest.list_id:
                    ledger = state / "ledgers" / ledger_name(dest.base_url, dest.list_id)
                    ledgers[dest.name] = str(ledger)
    if args.json:
        print_json({**paths, "destination_ledgers": ledgers})
        return EXIT_OK
    for name, path in paths.items():
        print(f"{name:<10} {visible(path)}")
    for dest_name, path in ledgers.items():
        print(f"ledger of {visible(dest_name)}: {visible(path)}")
    return EXIT_OK


def cmd_sample(args: argparse.Namespace) -> int:
    from store.sample import generate_workspace

    if args.rows < 1:
        raise CliError("--rows must be at least 1")
    started = time.perf_counter()
    if getattr(args, "postgres", None):
        from store.postgres_source import PostgresSourceError
        from store.sample import generate_postgres_workspace

        try:
            path = generate_postgres_workspace(
                args.out, args.rows, args.postgres, seed=args.seed, table=args.table
            )
        except (ValueError, PostgresSourceError) as exc:
            raise CliError(str(exc)) from None
    else:
        path = generate_workspace(args.out, args.rows, seed=args.seed, fmt=args.format)
    elapsed = time.perf_counter() - started
    print(f"wrote {args.rows:,} profiles to {visible(path)} in {elapsed:.2f} s")
    return EXIT_OK


def cmd_segments(args: argparse.Namespace) -> int:
    from store.workspace import DEFAULT_QUERY_TIMEOUT

    ws = open_workspace(args, count_next=True)
    counts = ws.count_segments(
        timeout=getattr(args, "query_timeout", None) or DEFAULT_QUERY_TIMEOUT
    )
    segments = {s.name: s for s in ws.segments()}
    if args.json:
        print_json(
            [
                {
                    "name": c.segment,
                    "where": segments[c.segment].where,
                    "description": segments[c.segment].description,
                    "count": c.count,
                    "error": c.error,
                }
                for c in counts
            ]
        )
    else:
        if ws.kind == "postgres":  # files keep their output; a database is named
            print(f"profiles: {visible(ws.source_label)}")
        names = {c.segment: visible(c.segment) for c in counts}
        width = max((len(n) for n in names.values()), default=4)
        for c in counts:
            shown = f"{c.count:>10,}" if c.error is None else "     error"
            where = visible(" ".join(segments[c.segment].where.split()))
            print(f"{names[c.segment]:<{width}}  {shown}  {where}")
            if c.error:
                for line in visible(c.error, multiline=True).splitlines():
                    print(f"{'':<{width}}    {line}")
    return EXIT_FAILED if any(c.error for c in counts) else EXIT_OK


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that could resolve anywhere


def cmd_emulator(args: argparse.Namespace) -> int:
    from connector.emulator import run_emulator

    if not is_loopback(args.host):
        if not getattr(args, "i_know", False):
            raise CliError(
                f"--host {visible(args.host)} is not a loopback address: the emulator serves "
                "every stored contact and accepts any key, so anyone who can reach it would "
                "read them. Use 127.0.0.1, or add --i-know if you really mean it.",
                EXIT_USAGE,
            )
        banner = "!" * 72
        print(
            f"{banner}\nWARNING: the emulator listens on {visible(args.host)}: anyone who can "
            "reach this\naddress can read every contact in it and upload more, with any key.\n"
            f"{banner}",
            file=sys.stderr,
            flush=True,
        )

    faults = {
        "rate_429": args.rate_429,
        "rate_5xx": args.rate_5xx,
        "latency": args.latency,
        "drop": args.drop,
        "job_delay": args.job_delay,
        "discard": args.discard,
    }
    run_emulator(host=args.host, port=args.port, state_file=args.state_file, faults=faults)
    return EXIT_OK


def open_app(args: argparse.Namespace) -> int:
    from tui.app import run_app

    # no folder named: the app picks the current one if it is a workspace, else
    # the one used last from this state folder
    named = getattr(args, "workspace", None) or os.environ.get("SEGSYNC_WORKSPACE")
    run_app(workspace=workspace_path(args) if named else None, state_dir=resolve_state_dir(args))
    return EXIT_OK
