"""Time a child process: wall clock, CPU seconds and peak RSS of that child alone.

`os.wait4` returns the resource usage of exactly the process it reaped (and of
the descendants that process itself waited for), so the exporter is measured
apart from the benchmark driver and from the emulator, which runs in a
process of its own that is not a child of the exporter.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
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
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    sample = Sample(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss * 1024 / 1e6,  # Linux reports kilobytes
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
    )
    if check and sample.returncode != 0:
        raise CommandFailed(
            f"{' '.join(map(str, argv))} exited {sample.returncode}:\n{stderr[-2000:]}"
        )
    return sample


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

    @property
    def spread(self) -> float:
        """(max - min) / median: how far repeated runs disagree."""
        return (self.high - self.low) / self.median if self.median else 0.0

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


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """Call `fn(*args)`; return its result and the seconds it took."""
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started
