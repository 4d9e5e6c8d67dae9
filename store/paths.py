"""Where segsync keeps its own state: history database, ledgers, locks, keys.

Everything lives under one *state directory* so a user can point a test, a
cron job or a second profile elsewhere with ``--state-dir`` or
``SEGSYNC_STATE_DIR``. Directories are created owner-only (0700) because they
hold the run history and, without an OS keyring, the API keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

STATE_DIR_ENV = "SEGSYNC_STATE_DIR"
APP_NAME = "segsync"


def _private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing; the leaf is created mode 0700.

    An existing directory is left as the user set it: it may be one they chose
    on purpose with ``--state-dir``.
    """
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:  # created concurrently by another segsync process
            pass
        else:
            os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; be exact
    return path


def state_dir(explicit: Path | None = None) -> Path:
    """The state directory: ``explicit``, else ``$SEGSYNC_STATE_DIR``, else the
    platform's per-user data directory (e.g. ``~/.local/share/segsync``)."""
    if explicit is not None:
        chosen = Path(explicit)
    elif os.environ.get(STATE_DIR_ENV):
        chosen = Path(os.environ[STATE_DIR_ENV])
    else:
        chosen = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return _private_dir(chosen.expanduser().absolute())


def history_path(state: Path) -> Path:
    """The SQLite history database."""
    return Path(state) / "history.db"


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
