"""Replace a file so that a crash leaves the old version or the new, never a mix.

Ledgers, key files and batch address files are all written this way: an
owner-only temp file beside the target, fsynced, renamed over it, and the
folder fsynced so the rename itself survives a power cut. One routine, so
every writer gets the same guarantees.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` with a binary file that becomes ``path`` (mode 0600) once complete."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # exact, whatever the umask
            with os.fdopen(fd, "wb", closefd=False) as handle:
                write(handle)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
