"""The `segsync` command line: the TUI with no arguments, headless commands otherwise.

Only argparse is imported at start-up so `segsync --version` and `--help`
answer at once; every command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from store.limits import DEFAULT_CAP

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_CANCELLED = 4


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _common(parser: argparse.ArgumentParser, *, workspace: bool = True, top: bool = False) -> None:
    """--workspace/--state-dir on the top parser and again on each command.

    Commands use SUPPRESS as default so a value given before the command name
    is not overwritten by the command's own default (an argparse quirk).
    """
    default = None if top else argparse.SUPPRESS
    if workspace:
        parser.add_argument(
            "--workspace",
            type=Path,
            default=default,
            help="workspace folder with segments.toml (default: $SEGSYNC_WORKSPACE or .)",
        )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default,
        help="where history and keys live (default: $SEGSYNC_STATE_DIR or the user data dir)",
    )


class _VersionAction(argparse.Action):
    """``--version``: reads the installed version only when asked; importing
    importlib.metadata costs every other command (and the app's start) ~50 ms."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show the version and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        from importlib.metadata import version

        print(f"segsync {version('segsync')}")  # stdout, as scripts expect
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segsync",
        description="Send segments of local customer profiles to SendGrid contact lists. "
        "With no command, opens the terminal app.",
    )
    parser.add_argument("--version", action=_VersionAction)
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="open the app on sample data and a local SendGrid emulator")
    demo.add_argument(
        "--state-dir", type=Path, default=argparse.SUPPRESS, help="demo state (default: own dir)"
    )
    demo.add_argument("--reset", action="store_true", help="start the demo from scratch")

    sample = sub.add_parser("sample", help="generate a workspace of synthetic profiles")
    sample.add_argument("--rows", type=int, default=5000)
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument("--format", choices=("parquet", "csv"), default="parquet")

    segments = sub.add_parser("segments", help="list segments with member counts and errors")
    _common(segments)
    segments.add_argument("--json", action="store_true")

    emulator = sub.add_parser("emulator", help="run the local SendGrid emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=3030)
    emulator.add_argument("--state-file", type=Path, default=None)
    emulator.add_argument("--discard", action="store_true", help="accept uploads unprocessed")
    emulator.add_argument("--rate-429", type=float, default=0.0, help="share of 429 answers")
    emulator.add_argument("--rate-5xx", type=float, default=0.0, help="share of 500/503 answers")
    emulator.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    emulator.add_argument("--drop", type=float, default=0.0, help="share of dropped connections")
    emulator.add_argument("--job-delay", type=float, default=0.0, help="seconds jobs stay pending")

    _destinations_parser(sub)

    mapping = sub.add_parser("map", help="map profile columns to SendGrid fields")
    _common(mapping)
    mapping.add_argument("destination")
    mapping.add_argument("pairs", nargs="*", metavar="FIELD=COLUMN")
    mapping.add_argument("--consent-column", default=None)
    mapping.add_argument("--suggest", action="store_true", help="fill unmapped fields by name")
    mapping.add_argument(
        "--create-fields", action="store_true", help="create missing custom fields on SendGrid"
    )

    export = sub.add_parser("export", help="export segments to a destination")
    _common(export)
    export.add_argument("destination")
    export.add_argument("--segment", action="append", default=[], dest="segments")
    export.add_argument("--mode", choices=("upsert", "mirror"), default="upsert")
    export.add_argument("--incremental", action="store_true")
    export.add_argument("--dry-run", action="store_true")
    export.add_argument("--resume", type=int, default=None, metavar="RUN")
    export.add_argument("--json", action="store_true")
    export.add_argument(
        "--batch-size", type=int, default=30_000, help="contacts per request (max 30,000)"
    )
    export.add_argument("--concurrency", type=int, default=4, help="requests in flight")

    runs = sub.add_parser("runs", help="past runs")
    _common(runs, workspace=False)
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--destination", default=None)
    runs.add_argument("--status", default=None)
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="SUBCOMMAND")
    show = runs_sub.add_parser("show", help="one run in detail")
    _common(show, workspace=False)
    show.add_argument("run", type=int)
    show.add_argument("--json", action="store_true")
    rejected = runs_sub.add_parser("rejected", help="write a run's rejected rows to CSV")
    _common(rejected, workspace=False)
    rejected.add_argument("run", type=int)
    rejected.add_argument("--csv", type=Path, required=True)
    return parser


def _destinations_parser(sub: argparse._SubParsersAction) -> None:
    dest = sub.add_parser("destinations", help="manage SendGrid destinations")
    _common(dest, workspace=False)
    dsub = dest.add_subparsers(dest="dest_command", metavar="SUBCOMMAND")
    add = dsub.add_parser("add", help="add a destination (checks the key and list first)")
    _common(add, workspace=False)
    add.add_argument("name")
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--list-id")
    target.add_argument("--create-list", metavar="LIST_NAME")
    key = add.add_mutually_exclusive_group()
    key.add_argument("--api-key-env", metavar="VAR", help="read the key from this env variable")
    key.add_argument("--api-key-stdin", action="store_true", help="read the key from stdin")
    add.add_argument("--base-url", default=None, help="API address (default: global host)")
    add.add_argument("--eu", action="store_true", help="use SendGrid's EU host")
    add.add_argument("--cap", type=int, default=DEFAULT_CAP, help="max contacts per export")
    add.add_argument("--agree", action="store_true", help="record the data-privacy statement")
    lst = dsub.add_parser("list", help="list destinations")
    _common(lst, workspace=False)
    lst.add_argument("--json", action="store_true")
    show = dsub.add_parser("show", help="one destination")
    _common(show, workspace=False)
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    remove = dsub.add_parser("remove", help="remove a destination (its run history is kept)")
    _common(remove, workspace=False)
    remove.add_argument("name")
    consent = dsub.add_parser("consent", help="show and record the data-privacy statement")
    _common(consent, workspace=False)
    consent.add_argument("name")
    consent.add_argument("--agree", action="store_true")
    cap = dsub.add_parser("set-cap", help="change the volume cap")
    _common(cap, workspace=False)
    cap.add_argument("name")
    cap.add_argument("cap", type=int)
    test = dsub.add_parser("test", help="test key, scopes and list")
    _common(test, workspace=False)
    test.add_argument("name")


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = _dispatch(parser, args)
    except CliError as exc:
        print(f"segsync: {exc}", file=sys.stderr)
        code = exc.code
    except KeyboardInterrupt:
        print("segsync: cancelled", file=sys.stderr)
        code = EXIT_CANCELLED
    except Exception as exc:
        code = _report_error(exc)
    if argv is None:
        # A real command ends here: skip collecting the whole heap (SQLAlchemy,
        # DuckDB, Arrow objects) at interpreter exit, which took up to a second.
        import gc

        gc.freeze()
    sys.exit(code)


USER_ERRORS = {
    # errors whose message already says what is wrong and what to do
    "HistoryError": EXIT_USAGE,
    "NotFound": EXIT_USAGE,
    "DestinationExists": EXIT_USAGE,
    "WorkspaceError": EXIT_USAGE,
    "PredicateError": EXIT_USAGE,
    "MappingError": EXIT_USAGE,
    "KeyNotFound": EXIT_USAGE,
    "ExportRefused": EXIT_USAGE,
    "ExportInProgress": EXIT_USAGE,
    "ContactTooLarge": EXIT_FAILED,
}


def _report_error(exc: Exception) -> int:
    """A clear line instead of a traceback; SEGSYNC_DEBUG=1 shows the traceback.

    Messages of our own errors never contain the API key, so printing them
    is safe; unexpected errors print only their type and message.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if os.environ.get("SEGSYNC_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    if "SendGridError" in names:
        print(f"segsync: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for name, code in USER_ERRORS.items():
        if name in names:
            print(f"segsync: {exc}", file=sys.stderr)
            return code
    print(
        f"segsync: unexpected {type(exc).__name__}: {exc}\n"
        "Run again with SEGSYNC_DEBUG=1 for details and report it.",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    command = args.command
    if command is None:
        from tui.cli_commands import open_app

        return open_app(args)
    if command == "demo":
        from tui.demo import run_demo

        return run_demo(args)
    if command == "sample":
        from tui.cli_commands import cmd_sample

        return cmd_sample(args)
    if command == "segments":
        from tui.cli_commands import cmd_segments

        return cmd_segments(args)
    if command == "emulator":
        from tui.cli_commands import cmd_emulator

        return cmd_emulator(args)
    if command == "destinations":
        from tui.cli_destinations import cmd_destinations

        return cmd_destinations(args)
    if command == "map":
        from tui.cli_destinations import cmd_map

        return cmd_map(args)
    if command == "export":
        from tui.cli_export import cmd_export

        return cmd_export(args)
    if command == "runs":
        from tui.cli_runs import cmd_runs

        return cmd_runs(args)
    parser.error(f"unknown command {command!r}")
    return EXIT_USAGE


def workspace_path(args: argparse.Namespace) -> Path:
    """--workspace, else $SEGSYNC_WORKSPACE, else the current folder."""
    explicit = getattr(args, "workspace", None)
    return Path(explicit or os.environ.get("SEGSYNC_WORKSPACE") or ".")
