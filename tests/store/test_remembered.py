"""The app's memory between launches: one owner-only JSON file per state folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from store.remembered import MAX_WORKSPACES, Remembered, load, remembered_file, save


def test_round_trip_owner_only(tmp_path: Path) -> None:
    memory = Remembered().choose("/ws/a", 3, ("high_value", "germany"))
    save(tmp_path, memory)
    assert stat.S_IMODE(os.stat(remembered_file(tmp_path)).st_mode) == 0o600
    again = load(tmp_path)
    assert again == memory
    assert again.destination_id == 3 and again.workspace == "/ws/a"
    assert again.selection("/ws/a", 3) == ("high_value", "germany")
    assert again.selection("/ws/a", 4) is None and again.selection("/ws/b", 3) is None


def test_choose_keeps_the_most_recent_workspaces_first(tmp_path: Path) -> None:
    memory = Remembered()
    for index in range(MAX_WORKSPACES + 3):
        memory = memory.choose(f"/ws/{index}", 1, (f"s{index}",))
    memory = memory.choose("/ws/5")  # used again: first, its selection kept
    assert memory.workspaces[0] == "/ws/5" and len(memory.workspaces) == MAX_WORKSPACES
    assert memory.selection("/ws/5", 1) == ("s5",)
    assert "/ws/0" not in memory.workspaces and "/ws/0" not in memory.selections
    assert memory.destination_id == 1  # not forgotten by a choice without one


def test_broken_foreign_or_linked_files_are_ignored(tmp_path: Path) -> None:
    path = remembered_file(tmp_path)
    path.write_text("{not json")
    assert load(tmp_path) == Remembered()
    path.write_text('{"destination_id": "1", "workspaces": [3, "/ws"], "selections": []}')
    assert load(tmp_path) == Remembered(workspaces=("/ws",))
    path.unlink()
    (tmp_path / "elsewhere.json").write_text('{"destination_id": 9}')
    path.symlink_to(tmp_path / "elsewhere.json")
    assert load(tmp_path) == Remembered()
    assert load(tmp_path / "missing") == Remembered()
