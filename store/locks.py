"""One export per destination at a time, across processes.

Two exports to the same list at once would interleave batches and corrupt the
ledger. ``flock`` is the right tool: the kernel releases it when the holder
exits for any reason, SIGKILL included, so a crashed export never leaves a
stale lock to clean up by hand. The holder writes its pid into the file so
the refusal can say who holds it.

The lock file is opened without following a symbolic link and must be a plain
file of ours with no other name: a link planted in ``locks/`` would otherwise
have segsync write into whatever file it points to. Nothing is ever truncated;
the pid is written over a fixed-width record.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from store.paths import locks_dir

__all__ = ["ExportInProgress", "LockFileError", "export_lock"]

# "<pid padded>\n": always the same length, so a new record covers the old one
# without truncating the file.
_RECORD = 20


class LockFileError(RuntimeError):
    """The lock file cannot be used safely; the message names it and the fix."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(f"{path}: {problem}")


class ExportInProgress(RuntimeError):
    """Another process is exporting to this destination."""

    def __init__(self, destination: str, pid: int | None) -> None:
        self.destination = destination
        self.pid = pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"an export to destination {destination} is already running ({who}); "
            "wait for it to finish, or stop it, then try again"
        )


def _open_lock(path: Path) -> int:
    """Open (or create, 0600) the lock file without following links; refuse
    anything but a plain file of ours with a single name."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LockFileError(
                path, f"is a symbolic link; remove it (rm {path}) and run again"
            ) from None
        if err.errno == errno.EISDIR:
            raise LockFileError(
                path, f"is a folder where a lock file belongs; remove it (rmdir {path})"
            ) from None
        raise LockFileError(
            path, f"cannot open the lock file ({err.strerror}); check the folder's permissions"
        ) from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = f"is not a regular file; remove it (rm {path}) and run again"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {info.st_uid}); remove it (rm {path})"
    elif info.st_nlink != 1:
        problem = f"has other names (hard links); remove it (rm {path}) and run again"
    if problem is not None:
        os.close(fd)
        raise LockFileError(path, problem)
    return fd


def _holder_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextmanager
def export_lock(state_dir: Path, destination_id: int, label: str | None = None) -> Iterator[None]:
    """Hold the destination's export lock for the ``with`` block, or raise
    ``ExportInProgress`` at once (never waits). ``label`` names the destination
    in the error; by default its id."""
    path = locks_dir(Path(state_dir)) / f"destination-{destination_id}.lock"
    fd = _open_lock(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            name = repr(label) if label else f"#{destination_id}"
            raise ExportInProgress(name, _holder_pid(fd)) from None
        os.pwrite(fd, f"{os.getpid():<{_RECORD - 1}}\n".encode(), 0)
        try:
            yield
        finally:
            # Leave the file in place: unlinking it would let a waiter lock a
            # file that a third process then recreates, two holders at once.
            os.pwrite(fd, b" " * (_RECORD - 1) + b"\n", 0)
    finally:
        os.close(fd)  # closing releases the flock
