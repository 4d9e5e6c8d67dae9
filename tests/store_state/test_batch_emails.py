"""The addresses of a run's batches: what a resumed run must not send again."""

from __future__ import annotations

import stat
from pathlib import Path

import pyarrow as pa
import pytest

from store import atomic, batch_emails


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_confirmed_batches_give_back_exactly_their_addresses(tmp_path: Path) -> None:
    batch_emails.record(tmp_path, 7, 0, pa.array(["a@x.io", "c@x.io"]))
    batch_emails.record(tmp_path, 7, 1, pa.array(["b@x.io"], pa.large_string()))
    batch_emails.record(tmp_path, 7, 2, pa.array(["z@x.io"]))
    emails, missing = batch_emails.confirmed(tmp_path, 7, [0, 1])
    assert (emails.to_pylist(), missing) == (["a@x.io", "c@x.io", "b@x.io"], [])
    assert batch_emails.confirmed(tmp_path, 7, [2])[0].to_pylist() == ["z@x.io"]
    emails, missing = batch_emails.confirmed(tmp_path, 8, [0])  # another run
    assert (emails.to_pylist(), missing) == ([], [0])


def test_files_are_owner_only(tmp_path: Path) -> None:
    batch_emails.record(tmp_path, 3, 0, pa.array(["a@x.io"]))
    folder = tmp_path / "runs" / "3"
    assert _mode(folder) == 0o700
    assert [_mode(f) for f in folder.iterdir()] == [0o600]


def test_a_missing_or_torn_file_means_the_batch_is_sent_again(tmp_path: Path) -> None:
    batch_emails.record(tmp_path, 1, 0, pa.array(["a@x.io"]))
    batch_emails.record(tmp_path, 1, 1, pa.array(["b@x.io"]))
    (tmp_path / "runs" / "1" / "batch-1.arrow").write_bytes(b"ARROW1\x00\x00 cut short")
    emails, missing = batch_emails.confirmed(tmp_path, 1, [0, 1, 5])
    assert (emails.to_pylist(), missing) == (["a@x.io"], [1, 5])


def test_forget_removes_the_run_folder_and_tolerates_none(tmp_path: Path) -> None:
    batch_emails.record(tmp_path, 2, 0, pa.array(["a@x.io"]))
    batch_emails.forget(tmp_path, 2)
    assert not (tmp_path / "runs" / "2").exists()
    batch_emails.forget(tmp_path, 2)
    assert batch_emails.confirmed(tmp_path, 2, [0])[0].to_pylist() == []
    assert not (tmp_path / "runs" / "2").exists()  # reading does not create it


def test_a_failed_write_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)  # the shared atomic write
    with pytest.raises(OSError, match="No space left"):
        batch_emails.record(tmp_path, 4, 0, pa.array(["a@x.io"]))
    assert list((tmp_path / "runs" / "4").iterdir()) == []
