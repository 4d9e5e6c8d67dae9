"""The `segsync` command line: the TUI with no arguments, headless commands otherwise.

Only argparse is imported at start-up so `segsync --version` and `--help`
answer at once; every command imports what it needs when it runs.

`main` owns how a command ends: Ctrl+C and SIGTERM stop it with exit 4 within
a moment (a long DuckDB query included, see `_SignalWatch`), problems of the
user's files or state folder get one line naming the path and the fix, and
every message is shown through `store.safe_text.visible` because it may quote
data, files or the network.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

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


def _positive_seconds(text: str) -> float:
    """argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 10**9:  # also refuses nan and inf, which no timer takes
        raise argparse.ArgumentTypeError("must be a number of seconds above 0")
    return value


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
    segments.add_argument(
        "--query-timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop counting a segment after this long and report it (default: 60)",
    )

    emulator = sub.add_parser("emulator", help="run the local SendGrid emulator")
    emulator.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (loopback unless --i-know)"
    )
    emulator.add_argument(
        "--i-know",
        action="store_true",
        help="allow a non-loopback --host: anyone who can reach it reads every contact",
    )
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
    # FIELD=COLUMN pairs may also come after options (see _parse).
    mapping.set_defaults(_loose_pairs="pairs")
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
    export.add_argument(
        "--allow-removals",
        type=int,
        default=None,
        metavar="N",
        help="mirror: allow up to N removals this run, past the destination's guardrail",
    )

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
    show.add_argument("--people", action="store_true", help="list every person the run touched")
    show.add_argument(
        "--op",
        action="append",
        default=[],
        choices=("added", "updated", "removed", "rejected", "not_sent"),
        help="with --people: only these operations (repeatable)",
    )
    show.add_argument("--csv", type=Path, default=None, help="with --people: write them to CSV")
    show.add_argument("--batches", action="store_true", help="list every batch, not the first 10")
    rejected = runs_sub.add_parser("rejected", help="write a run's rejected rows to CSV")
    _common(rejected, workspace=False)
    rejected.add_argument("run", type=int)
    rejected.add_argument("--csv", type=Path, required=True)
    prune = runs_sub.add_parser(
        "prune",
        help="delete the per-person records of runs older than N days (counts stay)",
        description="Delete, for runs that ended more than N days ago, the record of every "
        "person they touched and any leftover batch address files. The runs, their counts "
        "and rejected rows stay in history. Nothing else ever deletes these records.",
    )
    _common(prune, workspace=False)
    prune.add_argument("--older-than", type=float, required=True, metavar="DAYS")
    prune.add_argument("--yes", action="store_true", help="do not ask first")
    evidence = runs_sub.add_parser("evidence", help="consent evidence for a run (Markdown)")
    _common(evidence, workspace=False)
    evidence.add_argument("run", type=int)
    evidence.add_argument("--out", type=Path, default=None, help="write to this file")
    evidence.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    from tui.cli_changesets import add_parsers as add_changeset_parsers

    add_changeset_parsers(sub, _common)
    from tui.cli_syncs import add_parsers as add_sync_parsers

    add_sync_parsers(sub, _common)
    from tui.cli_undo import add_parsers as add_undo_parsers

    add_undo_parsers(sub, _common)
    from tui.cli_explain import add_parsers as add_explain_parsers

    add_explain_parsers(sub, _common)
    from tui.cli_forget import add_parsers as add_forget_parsers

    add_forget_parsers(sub, _common)
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


def _is_pair(text: str) -> bool:
    field, sep, column = text.partition("=")
    return bool(sep and field and column and not text.startswith("-"))


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; FIELD=COLUMN pairs are accepted anywhere on it.

    argparse gives a ``nargs="*"`` positional only the words right after the one
    before it, so ``map DEST --workspace W email=email`` left the pair
    "unrecognized". A command that sets ``_loose_pairs`` collects such stray
    pairs into that list; anything else stray is still an error.
    """
    args, extras = parser.parse_known_args(argv)
    target = getattr(args, "_loose_pairs", None)
    if extras and target and all(_is_pair(x) for x in extras):
        setattr(args, target, [*getattr(args, target), *extras])
    elif extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


class Interrupted(KeyboardInterrupt):
    """Ctrl+C or SIGTERM: the command stops, exit 4."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


class _SignalWatch:
    """Make Ctrl+C and SIGTERM stop a command promptly, DuckDB queries included.

    Python runs signal handlers only between bytecodes of the main thread, and a
    DuckDB query step can run for minutes without returning to Python. So the
    C-level handler also writes to a wakeup pipe; a watcher thread reads it at
    once and interrupts every DuckDB query of the process (the query then raises
    in whatever thread runs it), while the Python handler raises ``Interrupted``
    in the main thread. Only the first signal raises: a second one while the
    command winds down must not break its one-line report. (An asyncio loop that
    adds its own handlers, as `segsync export` does, takes the signals over for
    its duration and cancels through the engine.)
    """

    def __init__(self) -> None:
        self.stopping = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._old_handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._handle)
        self._old_wakeup = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="segsync-signals", daemon=True)
        self._thread.start()

    @classmethod
    def install(cls) -> _SignalWatch | None:
        """Install for this command; None when not in the main thread (tests, embedding)."""
        if threading.current_thread() is not threading.main_thread():
            return None
        return cls()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        raise Interrupted(signal.Signals(signum).name)

    def _watch(self) -> None:
        # The wakeup pipe carries the number of every signal Python handles
        # (SIGALRM of a test timeout, say): only ours stop the queries.
        ours = {int(signal.SIGINT), int(signal.SIGTERM)}
        try:
            while data := os.read(self._read, 64):
                if ours.intersection(data):
                    stop_queries()
        except OSError:
            pass
        finally:
            os.close(self._read)

    def uninstall(self) -> None:
        signal.set_wakeup_fd(self._old_wakeup)
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        os.close(self._write)  # the watcher reads end-of-file and ends


def stop_queries() -> None:
    """Interrupt every DuckDB query of this process, if DuckDB was ever loaded.

    Called on a signal and when a command ends: a query left running in a worker
    thread would otherwise keep the process alive after segsync has exited.
    """
    workspace = sys.modules.get("store.workspace")
    if workspace is not None:
        workspace.interrupt_all()


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = _parse(parser, argv)
    watch = _SignalWatch.install() if args.command not in (None, "demo") else None
    try:
        try:
            code = _dispatch(parser, args)
        except CliError as exc:
            _say(str(exc))
            code = exc.code
        except Exception as exc:
            if watch is not None and _is_interrupt(exc):
                watch.stopping = True
            code = _report_error(exc, args)
    except KeyboardInterrupt as exc:
        if watch is not None:
            watch.stopping = True
        code = _report_interrupt(exc)
    finally:
        stop_queries()
        if watch is not None:
            watch.uninstall()
    if argv is None:
        # A real command ends here: skip collecting the whole heap (SQLAlchemy,
        # DuckDB, Arrow objects) at interpreter exit, which took up to a second.
        import gc

        gc.freeze()
    sys.exit(code)


def _say(message: str) -> None:
    """One message on stderr, with anything that could drive the terminal made visible."""
    from store.safe_text import visible

    print(f"segsync: {visible(message, multiline=True)}", file=sys.stderr)


def _is_interrupt(exc: BaseException) -> bool:
    """Ctrl+C, SIGTERM or an interrupted DuckDB query, however it surfaced: DuckDB
    reports ``con.interrupt()`` as InterruptException and a signal it noticed
    itself as ``RuntimeError("Query interrupted")``."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"KeyboardInterrupt", "InterruptException", "QueryInterrupted"}:
        return True
    return type(exc) is RuntimeError and "query interrupted" in str(exc).lower()


def _report_interrupt(exc: BaseException) -> int:
    signame = getattr(exc, "signame", "")
    _say("terminated (SIGTERM)" if signame == "SIGTERM" else "interrupted")
    return EXIT_CANCELLED


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
    "UnsafeStateDir": EXIT_USAGE,
    "LockFileError": EXIT_USAGE,
    "ContactTooLarge": EXIT_FAILED,
}

# What to do about an OSError, by errno: (advice, exit code). Configuration the
# user fixes is 2; a disk that filled up or failed is 1 (the command failed).
_OS_ADVICE = {
    errno.EACCES: ("check that the folder is yours and writable, or use --state-dir", EXIT_USAGE),
    errno.EPERM: ("check that the folder is yours and writable, or use --state-dir", EXIT_USAGE),
    errno.EROFS: (
        "the file system is read-only: point --state-dir (or SEGSYNC_STATE_DIR) at a "
        "writable folder",
        EXIT_USAGE,
    ),
    errno.EISDIR: ("a folder is where a file belongs: remove or rename it", EXIT_USAGE),
    errno.ENOTDIR: ("a file is where a folder belongs: remove or rename it", EXIT_USAGE),
    errno.ELOOP: ("a symbolic link is where segsync expects a file: remove it", EXIT_USAGE),
    errno.ENOENT: (
        "a folder on this path does not exist: create it or choose another path",
        EXIT_USAGE,
    ),
    errno.ENAMETOOLONG: ("the path is too long: choose a shorter one", EXIT_USAGE),
    errno.ENOSPC: ("the disk is full: free some space and run again", EXIT_FAILED),
    errno.EDQUOT: ("the disk quota is used up: free some space and run again", EXIT_FAILED),
    errno.EIO: ("the disk reported an I/O error: check it, then run again", EXIT_FAILED),
}


def _environment_problem(exc: BaseException, args: argparse.Namespace) -> tuple[str, int] | None:
    """One line and an exit code for a file-system or history-database failure,
    or None when ``exc`` is not one. These reach here from code that opens files
    (history, locks, keys, ledgers) and are the user's to fix, not bugs."""
    if isinstance(exc, OSError) and exc.errno in _OS_ADVICE:
        advice, code = _OS_ADVICE[exc.errno]
        where = exc.filename if exc.filename is not None else _state_path(args)
        return f"{where}: {exc.strerror}; {advice}", code
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"DBAPIError", "DatabaseError", "OperationalError"} and "sqlite" in (
        type(getattr(exc, "orig", exc)).__module__ + str(exc)
    ):
        return _history_problem(exc, args)
    text = str(exc)
    if "No space left on device" in text:
        return f"{_first_line(text)}; the disk is full: free some space and run again", EXIT_FAILED
    return None


def _history_problem(exc: BaseException, args: argparse.Namespace) -> tuple[str, int]:
    """SQLite's complaint about the history database, with the path and the fix."""
    from store.paths import history_path

    path = history_path(_state_path(args))
    sqlite_says = _first_line(str(getattr(exc, "orig", None) or exc))
    low = sqlite_says.lower()
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return (
            f"{path}: the history database is damaged ({sqlite_says}); move it aside "
            f"(mv {path} {path}.damaged) and run again to start a new history",
            EXIT_USAGE,
        )
    if "readonly" in low or "read-only" in low or "unable to open" in low:
        return (
            f"{path}: cannot write the history ({sqlite_says}); make {path.parent} writable "
            "by you, or point --state-dir at a writable folder",
            EXIT_USAGE,
        )
    if "full" in low or ("i/o" in low and _nearly_full(path.parent)):
        return (
            f"{path}: {sqlite_says}; the disk is full: free some space and run again",
            EXIT_FAILED,
        )
    if "locked" in low or "busy" in low:
        return (
            f"{path}: {sqlite_says}; another segsync is writing to it, try again in a moment",
            EXIT_FAILED,
        )
    return f"{path}: {sqlite_says}; check the disk and the file, then run again", EXIT_FAILED


def _nearly_full(folder: Path) -> bool:
    """SQLite reports a full disk under WAL as a mere "disk I/O error": look."""
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < 1024 * 1024


def _state_path(args: argparse.Namespace) -> Path:
    from store.paths import state_dir_path

    return state_dir_path(getattr(args, "state_dir", None))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _report_error(exc: Exception, args: argparse.Namespace | None = None) -> int:
    """A clear line instead of a traceback; SEGSYNC_DEBUG=1 shows the traceback.

    Messages of our own errors never contain the API key, so printing them
    is safe; unexpected errors print only their type and message. Every
    message may quote data, so it is shown through `visible`.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if os.environ.get("SEGSYNC_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    if _is_interrupt(exc):
        return _report_interrupt(exc)
    if "SendGridError" in names:
        _say(str(exc))
        return EXIT_FAILED
    for name, code in USER_ERRORS.items():
        if name in names:
            _say(str(exc))
            return code
    problem = _environment_problem(exc, args or argparse.Namespace())
    if problem is not None:
        _say(problem[0])
        return problem[1]
    _say(
        f"unexpected {type(exc).__name__}: {exc}\n"
        "Run again with SEGSYNC_DEBUG=1 for details and report it."
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
    if command in ("plan", "apply", "plans"):
        from tui.cli_changesets import cmd_changesets

        return cmd_changesets(args)
    if command == "syncs":
        from tui.cli_syncs import cmd_syncs

        return cmd_syncs(args)
    if command == "undo":
        from tui.cli_undo import cmd_undo

        return cmd_undo(args)
    if command == "explain":
        from tui.cli_explain import cmd_explain

        return cmd_explain(args)
    if command == "forget":
        from tui.cli_forget import cmd_forget

        return cmd_forget(args)
    parser.error(f"unknown command {command!r}")
    return EXIT_USAGE


def workspace_path(args: argparse.Namespace) -> Path:
    """--workspace, else $SEGSYNC_WORKSPACE, else the current folder."""
    explicit = getattr(args, "workspace", None)
    return Path(explicit or os.environ.get("SEGSYNC_WORKSPACE") or ".")
