"""The `segsync` command line: the TUI with no arguments, headless commands otherwise.

Only argparse and the parsers of the command given are imported at start-up
(`COMMANDS`) so `segsync --version` and every command answer at once; every
command imports what it needs when it runs. Each command module registers its
own subcommands with ``set_defaults(func=...)``; `main` calls that function and
nothing else.

`main` owns how a command ends: Ctrl+C and SIGTERM stop it with exit 4 within
a moment (a long DuckDB query included, see `_SignalWatch`), problems of the
user's files or state folder get one line naming the path and the fix, a
reader that closes the pipe (`segsync runs | head`) ends it quietly, and every
message is shown through `store.safe_text.visible` because it may quote data,
files or the network.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from cli.common import (
    EXIT_CANCELLED,
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    CliError,
    silence_stdout,
    workspace_path,
)

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "CliError",
    "build_parser",
    "main",
    "workspace_path",
]

EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
"""What a shell reports for a program stopped by SIGPIPE (`yes | head -1`)."""

COMMAND_MODULES = (
    "commands", "destinations", "export", "runs", "changesets", "syncs", "undo", "explain",
    "forget",
)  # fmt: skip
"""The modules under cli/ that register commands, in the order `--help` lists them."""
COMMANDS = {
    **dict.fromkeys(("demo", "sample", "segments", "emulator", "where"), "commands"),
    **dict.fromkeys(("destinations", "lists", "map"), "destinations"),
    **dict.fromkeys(("plan", "apply", "plans"), "changesets"),
    **{name: name for name in ("export", "runs", "syncs", "undo", "explain", "forget")},
}
"""The module registering each command. Running a command imports only its
module and builds only its parsers: importing all nine and building every
parser cost ~40 ms of each start, more than `segsync runs` does besides.
tests/cli/test_parser.py checks this against what the modules register."""
TOP_OPTIONS_WITH_VALUE = ("--workspace", "--state-dir")


def common_options(
    parser: argparse.ArgumentParser, *, workspace: bool = True, top: bool = False
) -> None:
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
            metavar="DIR",
            help="workspace folder with segments.toml (default: $SEGSYNC_WORKSPACE or .)",
        )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default,
        metavar="DIR",
        help="where history, plans, ledgers and keys live (default: $SEGSYNC_STATE_DIR or "
        "the user data folder; `segsync where` prints it)",
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


TOP_EPILOG = f"""\
examples:
  segsync                                   open the terminal app
  segsync demo                              the app on sample data and a local emulator
  segsync lists --api-key-env SENDGRID_API_KEY      find a list id
  segsync destinations add news --list-id ID --api-key-env SENDGRID_API_KEY --agree
  segsync map news --suggest --consent-column email_opt_in
  segsync export news --segment high_value --dry-run
  segsync export news --segment high_value,germany --mode mirror
  segsync runs --limit 5; segsync where

Data goes to stdout, progress and messages to stderr. `segsync COMMAND --help`
describes a command.

{EXIT_CODES_HELP}
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Prose wraps to the terminal; examples and tables (paragraphs with
    indented lines, or one-line `example: ...`) stay exactly as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        paragraphs = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            raw = any(line.startswith(" ") for line in lines) or para.startswith("example")
            if raw:
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(
                    textwrap.fill(
                        " ".join(para.split()),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                    )
                )
        return "\n\n".join(paragraphs)


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _all_parsers(sub)
    return found


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The command line with the commands of ``modules`` (all of them by default)."""
    parser = argparse.ArgumentParser(
        prog="segsync",
        description="Send segments of local customer profiles to SendGrid contact lists. "
        "With no command, opens the terminal app.",
        epilog=TOP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    common_options(parser, top=True)
    parser.set_defaults(func=_open_app)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        importlib.import_module(f"cli.{name}").add_parsers(sub, common_options)
    for each in _all_parsers(parser):  # one way of laying out help, everywhere
        each.formatter_class = HelpFormatter
    return parser


def _open_app(args: argparse.Namespace) -> int:
    """`segsync` without a command: the terminal app."""
    from cli.commands import open_app

    return open_app(args)


def modules_for(argv: Sequence[str]) -> Sequence[str]:
    """The command modules whose parsers ``argv`` needs: the one of the command it
    names, none when it names no command (the app), and all of them for help, an
    unknown command or a top-level option this does not recognise (argparse then
    answers exactly as it always did)."""
    words = iter(argv)
    for word in words:
        if word in COMMANDS:
            return (COMMANDS[word],)
        if not word.startswith("-") or word in ("-h", "--help") or word == "--":
            return COMMAND_MODULES
        name = word.partition("=")[0]
        # argparse takes any unambiguous prefix of a long option
        matches = [o for o in (*TOP_OPTIONS_WITH_VALUE, "--version") if o.startswith(name)]
        if len(name) < 3 or len(matches) != 1:
            return COMMAND_MODULES
        if matches[0] != "--version" and "=" not in word:
            next(words, None)  # its value
    return ()


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
    parser = build_parser(modules_for(sys.argv[1:] if argv is None else argv))
    args = _parse(parser, argv)
    watch = _SignalWatch.install() if args.command not in (None, "demo") else None
    try:
        try:
            code = _dispatch(args)
        except CliError as exc:
            _say(str(exc))
            code = exc.code
        except BrokenPipeError:
            code = _reader_gone()
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


def _dispatch(args: argparse.Namespace) -> int:
    """Run the function the chosen (sub)command registered with ``set_defaults``."""
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


def _reader_gone() -> int:
    """stdout's reader went away (`segsync runs | head -1`): that is not an
    error of segsync. Exit quietly as a program stopped by SIGPIPE."""
    silence_stdout()
    return EXIT_BROKEN_PIPE


def _say(message: str) -> None:
    """One message on stderr, with anything that could drive the terminal made visible."""
    from store.safe_text import visible

    print(f"segsync: {visible(message, multiline=True)}", file=sys.stderr)


def _is_interrupt(exc: BaseException) -> bool:
    """Ctrl+C, SIGTERM or an interrupted DuckDB query, however it surfaced: DuckDB
    reports ``con.interrupt()`` as InterruptException and a signal it noticed
    itself as ``RuntimeError("Query interrupted")``."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    for module, name in (("duckdb", "InterruptException"), ("store.workspace", "QueryInterrupted")):
        cls = _loaded_class(module, name)
        if cls is not None and isinstance(exc, cls):
            return True
    return type(exc) is RuntimeError and "query interrupted" in str(exc).lower()


def _report_interrupt(exc: BaseException) -> int:
    signame = getattr(exc, "signame", "")
    _say("terminated (SIGTERM)" if signame == "SIGTERM" else "interrupted")
    return EXIT_CANCELLED


# Errors whose message already says what is wrong and what to do, by the
# module that defines the class. Matched with isinstance against the class
# itself; a module not loaded yet cannot have raised its error, so nothing
# is imported to classify one (an error in `--help` stays cheap).
USER_ERRORS: tuple[tuple[str, str, int], ...] = (
    ("store.history_errors", "HistoryError", EXIT_USAGE),  # NotFound, DestinationExists
    ("store.history_errors", "PlanNotFound", EXIT_USAGE),
    ("store.history_errors", "SyncError", EXIT_USAGE),  # SyncNotFound, SyncExists
    ("store.workspace", "WorkspaceError", EXIT_USAGE),  # PredicateError
    ("store.postgres_source", "SourceLost", EXIT_FAILED),  # connection lost mid-read
    ("store.plan", "MappingError", EXIT_USAGE),
    ("store.secrets", "KeyNotFound", EXIT_USAGE),
    ("store.locks", "ExportInProgress", EXIT_USAGE),
    ("store.locks", "LockFileError", EXIT_USAGE),
    ("store.paths", "UnsafeStateDir", EXIT_USAGE),
    ("store.explain", "ExplainError", EXIT_USAGE),
    ("connector.services", "ServiceError", EXIT_USAGE),
    ("connector.batching", "ContactTooLarge", EXIT_FAILED),
    ("connector.errors", "SendGridError", EXIT_FAILED),
)


def _loaded_class(module: str, name: str) -> type[BaseException] | None:
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def user_error_code(exc: BaseException) -> int | None:
    """The exit code of an error the user can act on, or None for a bug.

    ``ExportRefused`` carries its own ``exit_code`` (a refusal is 2 unless the
    engine says otherwise), and it is honoured.
    """
    refused = _loaded_class("connector.preflight", "ExportRefused")
    if refused is not None and isinstance(exc, refused):
        code = getattr(exc, "exit_code", EXIT_USAGE)
        return code if isinstance(code, int) else EXIT_USAGE
    for module, name, code in USER_ERRORS:
        cls = _loaded_class(module, name)
        if cls is not None and isinstance(exc, cls):
            return code
    return None


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
    database_errors = tuple(
        cls
        for cls in (
            _loaded_class("sqlalchemy.exc", "DBAPIError"),
            _loaded_class("sqlite3", "DatabaseError"),
        )
        if cls is not None
    )
    if isinstance(exc, database_errors) and "sqlite" in (
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
    if os.environ.get("SEGSYNC_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    if _is_interrupt(exc):
        return _report_interrupt(exc)
    code = user_error_code(exc)
    if code is not None:
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
