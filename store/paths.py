"""Where segsync keeps its own state: history database, ledgers, locks, keys.

Everything lives under one *state directory* so a user can point a test, a
cron job or a second profile elsewhere with ``--state-dir`` or
``SEGSYNC_STATE_DIR``. Directories are created owner-only (0700) because they
hold the run history and, without an OS keyring, the API keys.

An existing folder is trusted only if it is the user's own and nobody else can
write to it: whoever can replace ``history.db`` decides where the next export
sends the key and the contacts. A shared or foreign folder is refused with the
command that fixes it, never used silently.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import platformdirs

STATE_DIR_ENV = "SEGSYNC_STATE_DIR"
APP_NAME = "segsync"


class UnsafeStateDir(Exception):
    """A state folder others could tamper with; the message says how to fix it."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


def check_private_dir(path: Path, *, follow: bool = True) -> None:
    """Refuse a folder that is not ours, or that group or others can write.

    ``follow=False`` also refuses a symbolic link in place of the folder (for the
    subfolders segsync creates itself, which are never links).
    """
    info = os.stat(path) if follow else os.lstat(path)
    if not follow and stat.S_ISLNK(info.st_mode):
        raise UnsafeStateDir(
            path,
            f"{path}: is a symbolic link, where segsync keeps a private folder; "
            f"remove the link (rm {path}) and run again",
        )
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeStateDir(
            path, f"{path}: is not a folder; move it away or choose another --state-dir"
        )
    uid = os.geteuid()
    if info.st_uid != uid:
        raise UnsafeStateDir(
            path,
            f"{path}: belongs to another user (uid {info.st_uid}, you are {uid}), who could "
            "swap the history or keys kept there; use a folder of your own (--state-dir), "
            f"or take it over with: chown -R {uid} {path} && chmod 700 {path}",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(info.st_mode)
        raise UnsafeStateDir(
            path,
            f"{path}: other users can write to this folder (mode {mode:04o}) and could swap "
            f"the history or keys kept there; make it private with: chmod 700 {path}",
        )


def _private_dir(path: Path, *, follow: bool = False) -> Path:
    """Create ``path`` (and parents) if missing; the leaf is created mode 0700.

    An existing directory keeps the mode the user gave it (it may be one they
    chose with ``--state-dir``) but must be theirs and not writable by others:
    ``UnsafeStateDir`` otherwise. ``follow`` accepts a symbolic link to a folder
    (only for the state folder itself, which a user may place anywhere).
    """
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:  # already there (or created concurrently by another segsync)
        pass
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _private_dir(path, follow=follow)
    else:
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; be exact
        return path
    check_private_dir(path, follow=follow)
    return path


def state_dir(explicit: Path | None = None) -> Path:
    """The state directory: ``explicit``, else ``$SEGSYNC_STATE_DIR``, else the
    platform's per-user data directory (e.g. ``~/.local/share/segsync``)."""
    state = _private_dir(state_dir_path(explicit), follow=True)
    for name in _STATE_FILES:
        _check_private_file(state / name)
    return state


# Files opened straight from the state folder (the history and SQLite's companions).
_STATE_FILES = ("history.db", "history.db-wal", "history.db-shm")


def _check_private_file(path: Path) -> None:
    """Refuse a link, a non-file or another user's file where segsync keeps its own:
    planted before the folder was made private, it would still be opened."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise UnsafeStateDir(
            path,
            f"{path}: is not a plain file (a link or something else); move it away "
            f"(mv {path} {path}.suspect) and run again",
        )
    if info.st_uid != os.geteuid():
        raise UnsafeStateDir(
            path,
            f"{path}: belongs to another user (uid {info.st_uid}), who may have put it "
            f"there; move it away (mv {path} {path}.suspect) and run again",
        )


def state_dir_path(explicit: Path | None = None) -> Path:
    """Where the state directory is, without creating or checking it (for messages)."""
    if explicit is not None:
        chosen = Path(explicit)
    elif os.environ.get(STATE_DIR_ENV):
        chosen = Path(os.environ[STATE_DIR_ENV])
    else:
        chosen = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return chosen.expanduser().absolute()


def history_path(state: Path) -> Path:
    """The SQLite history database."""
    return Path(state) / "history.db"


def ledger_name(base_url: str, list_id: str) -> str:
    """The file name of the ledger of one list on one SendGrid API host
    (`store.ledger.ledger_file`). A digest of host and list id, so nothing
    about the account is readable from the folder listing."""
    key = hashlib.sha256(f"{base_url.rstrip('/')}\n{list_id}".encode()).hexdigest()[:24]
    return f"list-{key}.parquet"


def ledger_path(state: Path, destination_id: int) -> Path:
    """The Parquet ledger of what segsync believes it put on a destination's list.

    The file may not exist yet; its directory does, so a writer can rename a
    temp file into place.
    """
    return _private_dir(Path(state) / "ledgers") / f"destination-{destination_id}.parquet"


def locks_dir(state: Path) -> Path:
    """Directory of the per-destination export lock files."""
    return _private_dir(Path(state) / "locks")


def keys_dir(state: Path) -> Path:
    """Directory of the 0600 key files used when no OS keyring is available."""
    return _private_dir(Path(state) / "keys")


def run_dir(state: Path, run_id: int) -> Path:
    """A run's working files (the addresses of its batches, while it can be resumed)."""
    return _private_dir(_private_dir(Path(state) / "runs") / str(run_id))
