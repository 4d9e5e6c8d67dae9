"""Replace a file so that a crash leaves the old version or the new, never a mix.

Ledgers, key files and batch address files are all written this way: an
owner-only temp file beside the target, fsynced, renamed over it, and the
folder fsynced so the rename itself survives a power cut. One routine, so
every writer gets the same guarantees.

The temp file is created exclusively and without following a link: the
rejected-rows CSV may be written into a shared folder such as /tmp, where
another user could plant a link at the temp file's name to have segsync
truncate and overwrite a file of theirs choosing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` with a binary file that becomes ``path`` (mode 0600) once complete."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:
            # A leftover of a writer that died with our pid, or a planted link:
            # remove the name (never what a link points to) and create it afresh.
            tmp.unlink()
            fd = os.open(tmp, flags, 0o600)
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
