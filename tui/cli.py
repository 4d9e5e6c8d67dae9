"""Compatibility: the command line moved to the `cli` package.

`from tui.cli import main` (and the exit codes) keep working for scripts and
tests written before the move; new code imports `cli.main` and `cli.common`.
"""

from cli.common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    CliError,
    workspace_path,
)
from cli.main import main

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "CliError",
    "main",
    "workspace_path",
]
