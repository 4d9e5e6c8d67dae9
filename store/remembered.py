"""What the terminal app remembers between launches, per state folder.

The last destination, the last workspace (and the others used lately), and
the segments last picked for each destination in each workspace: a small
JSON file in the state folder, owner-only (0600, written atomically). It is a
convenience: a missing, broken or untrusted file (a link, another user's)
is ignored and the app starts with nothing remembered, never refuses to start.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from store.atomic import write_atomic

FILE_NAME = "tui-remembered.json"
MAX_WORKSPACES = 12
"""How many recently used workspaces are listed."""


@dataclass(frozen=True)
class Remembered:
    """``workspaces``: absolute folders, most recent first; ``selections``:
    workspace folder -> destination id -> segment names."""

    destination_id: int | None = None
    workspace: str | None = None
    workspaces: tuple[str, ...] = ()
    selections: dict[str, dict[int, tuple[str, ...]]] = field(default_factory=dict)

    def selection(self, workspace: str, destination_id: int) -> tuple[str, ...] | None:
        """The segments last picked there, or None if nothing was remembered."""
        return self.selections.get(workspace, {}).get(destination_id)

    def choose(
        self,
        workspace: str,
        destination_id: int | None = None,
        segments: tuple[str, ...] | None = None,
    ) -> Remembered:
        """This with ``workspace`` the last one used (first in the list), and,
        when given, the destination and the segments picked for it there."""
        recent = (workspace, *(w for w in self.workspaces if w != workspace))
        selections = {w: dict(s) for w, s in self.selections.items() if w in recent}
        if destination_id is not None and segments is not None:
            selections.setdefault(workspace, {})[destination_id] = tuple(segments)
        return replace(
            self,
            destination_id=destination_id if destination_id is not None else self.destination_id,
            workspace=workspace,
            workspaces=recent[:MAX_WORKSPACES],
            selections={w: s for w, s in selections.items() if w in recent[:MAX_WORKSPACES]},
        )


def remembered_file(state: Path) -> Path:
    return Path(state) / FILE_NAME


def load(state: Path) -> Remembered:
    """What the file says, or nothing remembered (no file, unreadable, not ours)."""
    path = remembered_file(state)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # missing, or a link in its place
        return Remembered()
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return Remembered()
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = json.loads(handle.read(1_000_000))
    except (OSError, ValueError):
        return Remembered()
    finally:
        os.close(fd)
    return _parse(data)


def _parse(data: Any) -> Remembered:
    if not isinstance(data, dict):
        return Remembered()
    dest = data.get("destination_id")
    workspace = data.get("workspace")
    workspaces = tuple(w for w in data.get("workspaces") or () if isinstance(w, str))
    selections: dict[str, dict[int, tuple[str, ...]]] = {}
    raw = data.get("selections")
    for folder, per_dest in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(per_dest, dict):
            continue
        for key, names in per_dest.items():
            if str(key).isdigit() and isinstance(names, list):
                picked = tuple(n for n in names if isinstance(n, str))
                selections.setdefault(str(folder), {})[int(key)] = picked
    return Remembered(
        destination_id=dest if isinstance(dest, int) and not isinstance(dest, bool) else None,
        workspace=workspace if isinstance(workspace, str) else None,
        workspaces=workspaces[:MAX_WORKSPACES],
        selections=selections,
    )


def save(state: Path, remembered: Remembered) -> None:
    """Write the file (owner-only, atomically)."""
    data = {
        "version": 1,
        "destination_id": remembered.destination_id,
        "workspace": remembered.workspace,
        "workspaces": list(remembered.workspaces),
        "selections": {
            folder: {str(dest): list(names) for dest, names in per_dest.items()}
            for folder, per_dest in remembered.selections.items()
        },
    }
    body = json.dumps(data, indent=1, ensure_ascii=False).encode()
    write_atomic(remembered_file(state), lambda handle: handle.write(body))
