"""Small headless commands: sample, segments, emulator, and opening the app.

Segment names, descriptions, predicates and DuckDB's messages come from the
user's files: they are printed through `visible` so an escape sequence in
segments.toml cannot drive the terminal (``--json`` stays exact).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from pathlib import Path
from typing import Any

from store.safe_text import visible
from tui.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, workspace_path

# Messages of Workspace.open meaning --workspace points at the wrong place.
WRONG_FOLDER = ("workspace folder does not exist", "not a workspace folder", "segments file not")


def open_workspace(args: argparse.Namespace) -> Any:
    """Open the workspace named by the arguments, or explain what is wrong."""
    from store.workspace import Workspace, WorkspaceError

    try:
        return Workspace.open(workspace_path(args))
    except WorkspaceError as exc:
        text = str(exc)
        if not any(m in text for m in WRONG_FOLDER):  # the folder is right, a file is not
            raise CliError(text) from exc
        raise CliError(f"{text}\nPoint --workspace at a folder with segments.toml.") from exc


def resolve_state_dir(args: argparse.Namespace) -> Path:
    from store.paths import state_dir

    return state_dir(getattr(args, "state_dir", None))


def print_json(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def cmd_sample(args: argparse.Namespace) -> int:
    from store.sample import generate_workspace

    if args.rows < 1:
        raise CliError("--rows must be at least 1")
    started = time.perf_counter()
    path = generate_workspace(args.out, args.rows, seed=args.seed, fmt=args.format)
    elapsed = time.perf_counter() - started
    print(f"wrote {args.rows:,} profiles to {visible(path)} in {elapsed:.2f} s")
    return EXIT_OK


def cmd_segments(args: argparse.Namespace) -> int:
    from store.workspace import DEFAULT_QUERY_TIMEOUT

    ws = open_workspace(args)
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

    run_app(workspace=workspace_path(args), state_dir=resolve_state_dir(args))
    return EXIT_OK
