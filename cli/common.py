"""What every command module shares: exit codes, `CliError`, the workspace and
state folder named on the command line, and the two output streams.

Output rule: **data on stdout, messages on stderr.** Data is what a command was
asked for (a table, a record, JSON, a plan, a dry run's preview, the outcome of
a run) and is what a script pipes on; messages are progress, retries,
warnings, questions and errors, which a person reads while it runs. So
`segsync runs | head` or `segsync export ... > result.txt` keep only data.

This module imports nothing heavy: every command module imports it at
start-up, before `--help` or `--version` answer.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from store.history_read import RunReader

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_CANCELLED = 4

EXIT_CODES_HELP = (
    "exit codes:\n"
    "  0  succeeded (rows the plan left out, such as invalid_email or no_consent,\n"
    "     do not change it)\n"
    "  1  failed\n"
    "  2  usage or configuration error, or a run refused before sending (guardrail)\n"
    "  3  partial: rows SendGrid rejected, or removals it did not confirm\n"
    "  4  cancelled or interrupted (resume with --resume RUN)"
)


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def workspace_path(args: argparse.Namespace) -> Path:
    """--workspace, else $SEGSYNC_WORKSPACE, else the current folder."""
    explicit = getattr(args, "workspace", None)
    return Path(explicit or os.environ.get("SEGSYNC_WORKSPACE") or ".")


# Messages of Workspace.open meaning --workspace points at the wrong place.
WRONG_FOLDER = ("workspace folder does not exist", "not a workspace folder", "segments file not")


def open_workspace(
    args: argparse.Namespace, path: Path | None = None, *, count_next: bool = False
) -> Any:
    """Open the workspace named by the arguments (or ``path``), or explain what is
    wrong. ``count_next``: see ``Workspace.open``."""
    from store.workspace import Workspace, WorkspaceError

    try:
        return Workspace.open(
            path if path is not None else workspace_path(args), count_next=count_next
        )
    except WorkspaceError as exc:
        text = str(exc)
        if not any(m in text for m in WRONG_FOLDER):  # the folder is right, a file is not
            raise CliError(text) from exc
        raise CliError(f"{text}\nPoint --workspace at a folder with segments.toml.") from exc


def resolve_state_dir(args: argparse.Namespace) -> Path:
    from store.paths import state_dir

    return state_dir(getattr(args, "state_dir", None))


def open_history(args: argparse.Namespace) -> Any:
    """The history database of the state folder the arguments name."""
    from store.history import History
    from store.paths import history_path

    return History(history_path(resolve_state_dir(args)))


def read_history(args: argparse.Namespace) -> RunReader:
    """The history of the state folder the arguments name, for a command that
    only reads it (`history_reader`)."""
    from store.paths import history_path

    return history_reader(history_path(resolve_state_dir(args)))


def history_reader(path: Path) -> RunReader:
    """The history at ``path`` read without SQLAlchemy (`store.history_read`):
    the same records and errors as History's, in a fraction of its start-up.
    When the file is new, older or has runs of dead processes to mark, History
    opens it once first and does that, as it would for any command."""
    from store.history_read import RunReader, open_run_reader

    reader = open_run_reader(path)
    if reader is None:
        from store.history import History

        History(path).close()
        reader = RunReader(path)
    return reader


def saved_mapping(history: Any, destination: Any) -> Any:
    """The destination's saved field mapping, or the refusal that says how to
    save one (`map DEST` and `explain` need one to say anything)."""
    from store.safe_text import visible

    mapping = history.get_mapping(destination.id)
    if mapping is None:
        name = visible(destination.name)
        raise CliError(
            f"'{name}' has no field mapping yet: `segsync map {name} email=COLUMN ...` "
            "or `--suggest`"
        )
    return mapping


def print_json(data: Any) -> None:
    """Data for scripts, on stdout, exactly (never passed through `visible`)."""
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def say(message: str) -> None:
    """A message for the person at the terminal, on stderr, made safe to show."""
    from store.safe_text import visible

    print(visible(message, multiline=True), file=sys.stderr, flush=True)


def silence_stdout() -> None:
    """stdout's reader went away: point stdout at /dev/null so later writes and
    the interpreter's final flush do not raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def split_names(values: Sequence[str]) -> tuple[str, ...]:
    """``--segment a,b --segment c`` -> ("a", "b", "c"): both spellings work,
    repeats dropped, order kept. Segment names are TOML keys, which a comma
    can only be part of when quoted; nobody names a segment that way."""
    names = [part.strip() for value in values for part in value.split(",")]
    return tuple(dict.fromkeys(n for n in names if n))


def retry_line(what: str, notice: Any) -> str:
    """One line for one retry wait: what is retried, why, and when. The words
    "waiting" (rate limit) and "retrying" (anything else) are what logs and
    tests look for."""
    if notice.kind == "rate_limit":
        return (
            f"segsync: {what}: {notice.endpoint}: waiting {notice.seconds:.1f} s for "
            f"SendGrid's rate limit (attempt {notice.attempt})"
        )
    return (
        f"segsync: {what}: {notice.endpoint}: attempt {notice.attempt} failed "
        f"({notice.reason}); retrying in {notice.seconds:.1f} s"
    )


def retry_printer(what: str) -> Callable[[Any], None]:
    """An ``on_retry`` callback that says, live on stderr, what is retried and when.

    Without it a refused connection is a minute of silence before the error.
    """

    def on_retry(notice: Any) -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[K")  # over a live progress line, if one is shown
        say(retry_line(what, notice))

    return on_retry
