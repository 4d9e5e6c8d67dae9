"""What calls `segsync syncs run-due` every minute: a systemd user timer, or a crontab line.

Written, not hand-typed, because the details are easy to get wrong and hard to
notice: the absolute path of this segsync (a timer does not see the shell's
PATH or a virtualenv), the state folder (a timer's environment is not the
user's shell), quoting (systemd expands ``%`` and ``$``; cron turns ``%`` into
a newline), no start timeout for a long export, and SIGTERM on stop, which
segsync turns into a clean, resumable cancel.

run-due itself catches up after downtime and keeps overlapping calls apart,
so the timer needs neither ``Persistent=`` nor any locking of its own.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from store.paths import APP_NAME

BASE_NAME = "segsync-syncs"
CRON_MARKER = "# segsync-syncs"


def unit_name(state_dir: Path) -> str:
    """``segsync-syncs`` for the default state folder; another folder gets a
    suffix from its path, so a second profile's timer does not replace the first."""
    default = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)).expanduser().absolute()
    if Path(state_dir).absolute() == default:
        return BASE_NAME
    digest = hashlib.sha256(str(Path(state_dir).absolute()).encode()).hexdigest()[:8]
    return f"{BASE_NAME}-{digest}"


def segsync_command() -> list[str]:
    """How to start this segsync from anywhere: the ``segsync`` script beside
    this interpreter when there is one, else ``python -m tui``."""
    script = Path(sys.executable).parent / "segsync"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "tui"]


def run_due_argv(state_dir: Path) -> list[str]:
    return [*segsync_command(), "--state-dir", str(Path(state_dir).absolute()), "syncs", "run-due"]


def user_unit_dir() -> Path:
    """Where systemd looks for a user's own units."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def _systemd_word(word: str) -> str:
    """One argument of ExecStart= or Environment=: ``%`` and ``$`` escaped,
    quoted when it holds spaces, quotes or backslashes."""
    word = word.replace("%", "%%").replace("$", "$$")
    if any(c.isspace() for c in word) or any(c in word for c in "\"'\\;"):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


@dataclass(frozen=True)
class SystemdUnits:
    name: str
    service: str
    timer: str

    def files(self, folder: Path) -> dict[Path, str]:
        return {
            folder / f"{self.name}.service": self.service,
            folder / f"{self.name}.timer": self.timer,
        }


def systemd_units(state_dir: Path) -> SystemdUnits:
    """The service (one run-due) and the timer (every minute) for ``state_dir``."""
    state = Path(state_dir).absolute()
    name = unit_name(state)
    exec_start = " ".join(_systemd_word(w) for w in run_due_argv(state))
    environment = _systemd_word(f"SEGSYNC_STATE_DIR={state}")
    service = f"""\
# Written by `segsync syncs install --systemd-user`; removed by `segsync syncs uninstall`.
[Unit]
Description=segsync: run the syncs that are due (state in {_systemd_text(state)})

[Service]
Type=oneshot
Environment={environment}
Environment=PYTHONUNBUFFERED=1
ExecStart={exec_start}
# No start timeout (a oneshot has none by default): an export may take a while.
# Stopping sends SIGTERM; the run ends cancelled and the next run-due resumes it.
KillSignal=SIGTERM
TimeoutStopSec=120
Nice=10
"""
    timer = f"""\
# Written by `segsync syncs install --systemd-user`; removed by `segsync syncs uninstall`.
[Unit]
Description=segsync: look for due syncs every minute (state in {_systemd_text(state)})

[Timer]
OnCalendar=*-*-* *:*:00
AccuracySec=1s
Unit={name}.service

[Install]
WantedBy=timers.target
"""
    return SystemdUnits(name, service, timer)


def _systemd_text(path: Path) -> str:
    return str(path).replace("%", "%%")


def cron_line(state_dir: Path) -> str:
    """A crontab line calling run-due every minute, output appended to
    ``<state>/syncs.log``; ends with a marker so `syncs uninstall --cron` finds it."""
    state = Path(state_dir).absolute()
    words = [f"SEGSYNC_STATE_DIR={shlex.quote(str(state))}"]
    words += [shlex.quote(w) for w in run_due_argv(state)]
    words += ["--quiet", ">>", shlex.quote(str(state / "syncs.log")), "2>&1"]
    command = " ".join(words).replace("%", "\\%")  # cron: % ends the command
    return f"* * * * * {command} {CRON_MARKER} {unit_name(state)}"


def without_cron_line(crontab: str, state_dir: Path) -> tuple[str, int]:
    """The crontab text without this state folder's run-due line(s); and how many went."""
    marker = f"{CRON_MARKER} {unit_name(Path(state_dir))}"
    kept, removed = [], 0
    for line in crontab.splitlines():
        if line.rstrip().endswith(marker):
            removed += 1
        else:
            kept.append(line)
    text = "\n".join(kept)
    return (text + "\n" if text else ""), removed
