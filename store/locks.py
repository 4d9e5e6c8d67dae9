"""One export per destination at a time, across processes.

Two exports to the same list at once would interleave batches and corrupt the
ledger. ``flock`` is the right tool: the kernel releases it when the holder
exits for any reason, SIGKILL included, so a crashed export never leaves a
stale lock to clean up by hand. The holder writes its pid into the file so
the refusal can say who holds it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from store.paths import locks_dir

__all__ = ["ExportInProgress", "export_lock"]


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
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            name = repr(label) if label else f"#{destination_id}"
            raise ExportInProgress(name, _holder_pid(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            # Leave the file in place: unlinking it would let a waiter lock a
            # file that a third process then recreates, two holders at once.
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock
