"""State folders others could tamper with, lock files that are not what they seem,
and the rejected-rows CSV's permissions.

Whoever can write to the state folder can swap ``history.db`` and point the next
export (API key and contacts included) at their own server; whoever can plant a
symbolic link in ``locks/`` could have segsync overwrite any file the user can
write. These tests hold the refusal, and its message telling the fix, in place.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from store.locks import LockFileError, export_lock
from store.paths import UnsafeStateDir, keys_dir, locks_dir, state_dir
from store.rejected_csv import write_rejected_csv

IS_ROOT = os.geteuid() == 0


def _folder(path: Path, mode: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722, 0o702])
def test_state_folder_writable_by_others_is_refused_with_the_fix(tmp_path: Path, mode: int):
    folder = _folder(tmp_path / "state", mode)
    with pytest.raises(UnsafeStateDir) as caught:
        state_dir(folder)
    text = str(caught.value)
    assert str(folder) in text
    assert f"chmod 700 {folder}" in text
    assert caught.value.path == folder


@pytest.mark.parametrize("mode", [0o700, 0o750, 0o755])
def test_state_folder_of_the_user_not_writable_by_others_is_used(tmp_path: Path, mode: int):
    folder = _folder(tmp_path / "state", mode)
    assert state_dir(folder) == folder
    assert stat.S_IMODE(folder.stat().st_mode) == mode  # the user's choice is left alone


def test_new_state_folder_is_created_private(tmp_path: Path):
    folder = tmp_path / "a" / "b" / "state"
    old = os.umask(0)
    try:
        assert state_dir(folder) == folder
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.parametrize("sub", ["keys", "locks"])
def test_shared_keys_or_locks_subfolder_is_refused(tmp_path: Path, sub: str):
    state = state_dir(tmp_path / "state")
    _folder(state / sub, 0o777)
    with pytest.raises(UnsafeStateDir, match=f"chmod 700 {state / sub}"):
        (keys_dir if sub == "keys" else locks_dir)(state)


@pytest.mark.parametrize("sub", ["keys", "locks"])
def test_subfolder_replaced_by_a_symlink_is_refused(tmp_path: Path, sub: str):
    state = state_dir(tmp_path / "state")
    elsewhere = _folder(tmp_path / "elsewhere", 0o700)
    (state / sub).symlink_to(elsewhere)
    with pytest.raises(UnsafeStateDir, match="symbolic link"):
        (keys_dir if sub == "keys" else locks_dir)(state)


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a folder to another user")
def test_state_folder_owned_by_another_user_is_refused(tmp_path: Path):
    folder = _folder(tmp_path / "state", 0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(UnsafeStateDir) as caught:
        state_dir(folder)
    assert "another user" in str(caught.value)
    assert f"chown -R {os.geteuid()} {folder}" in str(caught.value)


def test_history_replaced_by_a_link_is_refused(tmp_path: Path):
    folder = state_dir(tmp_path / "state")
    elsewhere = tmp_path / "their.db"
    elsewhere.write_bytes(b"")
    (folder / "history.db").symlink_to(elsewhere)
    with pytest.raises(UnsafeStateDir, match="not a plain file") as caught:
        state_dir(folder)
    assert f"mv {folder / 'history.db'}" in str(caught.value)


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a file to another user")
def test_history_owned_by_another_user_is_refused(tmp_path: Path):
    folder = state_dir(tmp_path / "state")
    (folder / "history.db").write_bytes(b"")
    os.chown(folder / "history.db", 65534, 65534)
    with pytest.raises(UnsafeStateDir, match="another user"):
        state_dir(folder)


# -- lock files -------------------------------------------------------------------


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "precious.txt"
    path.write_text("do not truncate me\n" * 10)
    yield path


def test_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path, victim: Path):
    state = state_dir(tmp_path / "state")
    lock = locks_dir(state) / "destination-1.lock"
    lock.symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(LockFileError) as caught, export_lock(state, 1):
        pytest.fail("a symlinked lock was used")
    assert str(lock) in str(caught.value) and "symbolic link" in str(caught.value)
    assert victim.read_bytes() == before


def test_hard_linked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path, victim: Path):
    state = state_dir(tmp_path / "state")
    lock = locks_dir(state) / "destination-1.lock"
    os.link(victim, lock)
    before = victim.read_bytes()
    with pytest.raises(LockFileError, match="hard links"), export_lock(state, 1):
        pytest.fail("a hard-linked lock was used")
    assert victim.read_bytes() == before


def test_lock_path_that_is_a_folder_gets_one_clear_line(tmp_path: Path):
    state = state_dir(tmp_path / "state")
    lock = locks_dir(state) / "destination-1.lock"
    lock.mkdir()
    with pytest.raises(LockFileError) as caught, export_lock(state, 1):
        pytest.fail("a folder was used as a lock")
    text = str(caught.value)
    assert "\n" not in text and str(lock) in text and "rmdir" in text


def test_lock_file_is_never_truncated(tmp_path: Path):
    """The pid is a fixed-width record written over the old one: the file's size
    never shrinks, even between holders."""
    state = state_dir(tmp_path / "state")
    lock = locks_dir(state) / "destination-1.lock"
    with export_lock(state, 1):
        size = lock.stat().st_size
        assert lock.read_text().strip() == str(os.getpid())
    assert lock.stat().st_size == size
    assert lock.read_text().strip() == ""  # no stale pid after release
    with export_lock(state, 1):
        assert lock.stat().st_size == size


# -- the rejected-rows CSV -------------------------------------------------------

ROWS = [SimpleNamespace(seq=1, key="7", email="a@x", reason="invalid_email", source="plan")]


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_rejected_rows_csv_is_owner_only_whatever_the_umask(tmp_path: Path, umask: int):
    target = tmp_path / "rejected.csv"
    old = os.umask(umask)
    try:
        assert write_rejected_csv(ROWS, target) == 1
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text(encoding="utf-8").splitlines()[1] == "1,7,a@x,invalid_email,plan"


def test_rejected_rows_csv_replaces_a_link_instead_of_writing_through_it(
    tmp_path: Path, victim: Path
):
    target = tmp_path / "rejected.csv"
    target.symlink_to(victim)
    before = victim.read_bytes()
    write_rejected_csv(ROWS, target)
    assert victim.read_bytes() == before
    assert not target.is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_atomic_write_never_writes_through_a_link_planted_at_its_temp_name(
    tmp_path: Path, victim: Path
):
    """In a shared folder another user can guess the temp name (pid) and plant a link."""
    target = tmp_path / "rejected.csv"
    (tmp_path / f".{target.name}.{os.getpid()}.tmp").symlink_to(victim)
    before = victim.read_bytes()
    write_rejected_csv(ROWS, target)
    assert victim.read_bytes() == before
    assert target.read_text(encoding="utf-8").startswith("batch,key,email")
    assert not (tmp_path / f".{target.name}.{os.getpid()}.tmp").exists()
