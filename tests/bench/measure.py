"""Time a child process: wall clock, CPU seconds and peak RSS of that child alone.

CPU comes from `os.wait4`, the usage of exactly the process reaped, so the
exporter is measured apart from the benchmark driver and from the emulator
(a process of its own). Peak RSS does not: Python starts children with
vfork, and Linux folds the *parent's* high-water mark into the child's
`ru_maxrss` at exec, so every child would seem at least as big as the
driver. The child's own `VmHWM` (/proc/PID/status, reset at exec) is polled
instead; it only grows, so the last reading before exit is the peak, short
of growth in the final few milliseconds.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One measured run of a command."""

    wall: float  # seconds from spawn to reaped
    cpu: float  # user + system seconds of the child
    peak_rss_mb: float  # max resident set size of the child, MB (10^6 bytes)
    returncode: int
    stdout: str
    stderr: str


class CommandFailed(RuntimeError):
    """A measured command exited non-zero: the numbers would be meaningless."""


def run_measured(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> Sample:
    """Run `argv` to completion and measure it.

    Output goes to temporary files rather than pipes: the child never blocks
    on a full pipe while we wait for it, which would inflate its wall time.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=err, env=dict(env) if env else None, cwd=cwd
        )
        peak = _PeakRss(proc.pid)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        peak.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    sample = Sample(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak.kilobytes * 1024 / 1e6,
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
    )
    if check and sample.returncode != 0:
        raise CommandFailed(
            f"{' '.join(map(str, argv))} exited {sample.returncode}:\n{stderr[-2000:]}"
        )
    return sample


class _PeakRss:
    """Polls a process's VmHWM on a thread until stopped; keeps the last value read."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.kilobytes = 0
        self._path = f"/proc/{pid}/status"
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _read(self) -> int | None:
        try:
            with open(self._path, "rb") as status:
                for line in status:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None  # gone, or a zombie whose memory is already released

    def _poll(self) -> None:
        while not self._done.is_set():
            value = self._read()
            if value is not None:
                self.kilobytes = max(self.kilobytes, value)
            self._done.wait(self._interval)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


@dataclass(frozen=True)
class Summary:
    """Median and spread of repeated measurements of one quantity."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no values to summarise")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def to_json(self) -> dict[str, Any]:
        return {
            "median": round(self.median, 4),
            "min": round(self.low, 4),
            "max": round(self.high, 4),
            "n": self.n,
        }


def summarise(rows: Sequence[Mapping[str, float]]) -> dict[str, Summary]:
    """Per-key summaries of a list of per-repetition measurement dicts."""
    keys = [k for k in rows[0] if isinstance(rows[0][k], int | float)] if rows else []
    return {k: Summary.of([float(r[k]) for r in rows]) for k in keys}
