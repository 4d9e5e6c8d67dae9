"""Saving the emulated account between runs, so the demo keeps its SendGrid state.

The file holds lists, contacts, custom fields and finished jobs, and API keys
only as SHA-256 digests: nothing in it can be used against real SendGrid.
Writes go to a temporary file that is renamed over the old one, so a crash
mid-save leaves the previous state intact.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from connector.emulator.state import EmulatorState


def save_state(state: EmulatorState, path: Path) -> int:
    """Write the account atomically (mode 0600); return the state version written."""
    with state.lock:
        version = state.version
        data = orjson.dumps(state.to_json())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return version


def load_state(state: EmulatorState, path: Path) -> None:
    """Replace the account with the one saved in `path`; ValueError if it is not one."""
    try:
        data = orjson.loads(path.read_bytes())
        if data.get("format") != 1:
            raise ValueError(f"unknown format {data.get('format')!r}")
        state.load_json(data)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"{path} is not a segsync emulator state file: {exc}") from exc
