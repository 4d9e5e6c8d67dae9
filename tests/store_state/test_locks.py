"""One export per destination at a time, even across processes and crashes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from store.locks import ExportInProgress, export_lock

REPO = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from store.locks import export_lock
    with export_lock(Path(sys.argv[1]), 7):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_a_second_export_is_refused_and_the_first_can_continue(tmp_path: Path) -> None:
    with export_lock(tmp_path, 1, label="newsletter"):
        lock_file = tmp_path / "locks" / "destination-1.lock"
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
        assert lock_file.read_text().strip() == str(os.getpid())
        second = export_lock(tmp_path, 1, label="newsletter")
        with pytest.raises(ExportInProgress, match="'newsletter'") as err, second:
            pytest.fail("two holders of one destination's lock")
        assert err.value.pid == os.getpid()
        assert f"process {os.getpid()}" in str(err.value)
        with export_lock(tmp_path, 2):  # another destination is independent
            pass
    with export_lock(tmp_path, 1):  # released at the end of the block
        pass


def test_the_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), export_lock(tmp_path, 1):
        raise RuntimeError("export failed")
    with export_lock(tmp_path, 1):
        pass


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(ExportInProgress, match="#7") as err, export_lock(tmp_path, 7):
            pytest.fail("the lock of a live process was taken")
        assert err.value.pid == child.pid
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    with export_lock(tmp_path, 7):  # no stale lock to clean up by hand
        assert (tmp_path / "locks" / "destination-7.lock").read_text().strip() == str(os.getpid())
