"""What the benchmark runs against: sample workspaces, an emulator process, destinations.

The emulator runs as `segsync emulator` in a process of its own, so its CPU
and memory are never billed to the exporter; it is inspected over its
`/_emulator/...` HTTP routes, the way any out-of-process user would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

BENCH_KEY_ENV = "SEGSYNC_BENCH_KEY"
DESTINATION = "bench"
SEGMENT = "everyone"
EVERYONE_SEGMENT = f"""
[segments.{SEGMENT}]
description = "Every profile (benchmark selection)"
where = "true"
"""
# What a user maps for the sample data: reserved fields, consent, and the three
# custom fields the emulator's demo account defines (so payloads carry ids).
MAPPING = {
    "email": "email",
    "reserved": {
        "first_name": "first_name",
        "last_name": "last_name",
        "city": "city",
        "state_province_region": "state",
        "country": "country",
        "postal_code": "postal_code",
    },
    "custom": {
        "loyalty_tier": "loyalty_tier",
        "lifetime_value": "lifetime_value",
        "signup_date": "signup_date",
    },
    "consent_column": "email_opt_in",
}


def segsync_argv(*args: str) -> list[str]:
    """argv that runs the segsync CLI of this virtualenv, without `uv run` in between."""
    return [sys.executable, "-m", "tui", *args]


def make_workspace(folder: Path, rows: int, seed: int = 7) -> Path:
    """`segsync sample` plus a segment selecting every profile; reuses an existing one.

    Generating a million profiles takes ~10 s, so a workspace with a marker
    file recording its size is kept and reused by the next benchmark run.
    """
    marker = folder / ".bench-rows"
    if marker.is_file() and marker.read_text() == f"{rows}:{seed}":
        return folder
    subprocess.run(
        segsync_argv("sample", "--rows", str(rows), "--out", str(folder), "--seed", str(seed)),
        check=True,
        capture_output=True,
    )
    with (folder / "segments.toml").open("a", encoding="utf-8") as toml:
        toml.write(EVERYONE_SEGMENT)
    marker.write_text(f"{rows}:{seed}")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmulatorProcess:
    """A running `segsync emulator` child: its URL, demo list, key and process handle."""

    proc: subprocess.Popen[bytes]
    url: str
    list_id: str
    api_key: str
    discard: bool

    def stats(self) -> dict[str, Any]:
        """Request counters (`/_emulator/stats`): totals and per endpoint."""
        return httpx.get(f"{self.url}/_emulator/stats", timeout=30).json()

    def cpu_seconds(self) -> float:
        """CPU used by the emulator process so far (all its threads)."""
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def emulator_process(
    discard: bool = False, start_timeout: float = 30.0
) -> Iterator[EmulatorProcess]:
    """Start `segsync emulator` on a free loopback port, no latency, no faults.

    The demo key and list id are read from the lines the emulator announces on
    stderr; the demo key is the emulator's fixed, public one (not a secret).
    """
    port = free_port()
    argv = segsync_argv("emulator", "--port", str(port))
    if discard:
        argv.append("--discard")
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    emu: EmulatorProcess | None = None
    try:
        key = list_id = ""
        seen: list[str] = []
        deadline = time.monotonic() + start_timeout
        assert proc.stderr is not None
        while not (key and list_id):
            line = proc.stderr.readline().decode()
            if not line:
                said = "".join(seen)[-2000:]
                raise RuntimeError(f"the emulator exited early (code {proc.wait()}):\n{said}")
            seen.append(line)
            if "demo API key" in line:
                key = line.rsplit(":", 1)[1].strip()
            elif line.startswith("demo list"):
                list_id = line.rsplit(":", 1)[1].strip()
            if time.monotonic() > deadline:
                raise RuntimeError("the emulator did not announce itself in time")
        proc.stderr.close()  # nothing more is read; the emulator prints only at start
        emu = EmulatorProcess(proc, f"http://127.0.0.1:{port}", list_id, key, discard)
        yield emu
    finally:
        if emu is not None:
            emu.stop()
        elif proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class StateDir:
    """A fresh segsync state directory with the benchmark destination set up."""

    path: Path
    env: dict[str, str]


@contextlib.contextmanager
def scratch_state(
    parent: Path, emu: EmulatorProcess, workspace: Path, cap: int
) -> Iterator[StateDir]:
    """`make_state`, removed afterwards: a state holds copies of profile data
    (ledger, changesets, people records), and every run used to leave one."""
    state = make_state(parent, emu, workspace, cap)
    try:
        yield state
    finally:
        shutil.rmtree(state.path, ignore_errors=True)


def make_state(parent: Path, emu: EmulatorProcess, workspace: Path, cap: int) -> StateDir:
    """A new state dir with destination `bench` on the emulator's demo list.

    Set up through the history API, which is what `segsync destinations add`,
    `map` and `set-cap` write (without their network checks, which would only
    add start-up time to the benchmark's own setup): key from an env var,
    consent recorded, cap raised above the selection.
    """
    from connector.consent import CONSENT_STATEMENT
    from store.history import History
    from store.paths import history_path
    from store.records import FieldMapping

    path = Path(tempfile.mkdtemp(prefix="state-", dir=parent))
    history = History(history_path(path))
    try:
        dest = history.add_destination(
            DESTINATION,
            base_url=emu.url,
            list_id=emu.list_id,
            list_name="segsync demo",
            api_key_env=BENCH_KEY_ENV,
            key_storage="env",
            cap=cap,
        )
        history.set_mapping(dest.id, FieldMapping(**MAPPING))
        history.record_consent(dest.id, "benchmark", CONSENT_STATEMENT)
    finally:
        history.close()
    env = {
        **os.environ,
        "SEGSYNC_STATE_DIR": str(path),
        "SEGSYNC_WORKSPACE": str(workspace),
        "SEGSYNC_NO_KEYRING": "1",
        BENCH_KEY_ENV: emu.api_key,
    }
    return StateDir(path, env)


def seed_runs(state: Path, copies: int) -> None:
    """Add `copies` finished runs like the newest one, so `segsync runs` has a
    history of realistic rows to list (written through the history API)."""
    from store.history import History
    from store.paths import history_path

    with History(history_path(state)) as history:
        run = history.list_runs(limit=1)[0]
        for _ in range(copies):
            run_id = history.start_run(
                run.destination_id, run.segments, mode=run.mode, config=run.config
            )
            history.finish_run(run_id, run.status, counts=run.counts, message=run.message)
