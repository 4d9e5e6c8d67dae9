"""History: what a user relies on when they look back at destinations and runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from store.history import (
    DestinationExists,
    History,
    HistoryError,
    NotFound,
    current_operator,
)
from store.paths import history_path, ledger_path, locks_dir, state_dir
from store.records import Destination, FieldMapping

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    with History(tmp_path / "state" / "history.db") as h:
        yield h


def add(history: History, name: str = "newsletter", **extra: Any) -> Destination:
    return history.add_destination(
        name, base_url="https://api.sendgrid.com", list_id="list-1", **extra
    )


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )


# -- files and paths ---------------------------------------------------------


def test_state_dir_resolution_and_privacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSYNC_STATE_DIR", str(tmp_path / "from-env"))
    assert state_dir() == tmp_path / "from-env"
    assert state_dir(tmp_path / "explicit") == tmp_path / "explicit"  # the flag wins
    assert stat.S_IMODE((tmp_path / "explicit").stat().st_mode) == 0o700
    monkeypatch.delenv("SEGSYNC_STATE_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "segsync"

    state = state_dir(tmp_path / "s")
    assert history_path(state) == state / "history.db"
    assert ledger_path(state, 7).parent.is_dir()
    assert ledger_path(state, 7) != ledger_path(state, 8)
    assert stat.S_IMODE(locks_dir(state).stat().st_mode) == 0o700


def test_database_files_are_private_and_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "new-dir" / "history.db"
    with History(db) as history:
        add(history)  # something written, so -wal exists
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.close()
        assert history.integrity_check() == "ok"


def test_an_existing_world_readable_file_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    History(db).close()
    os.chmod(db, 0o644)
    History(db).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


# -- destinations ------------------------------------------------------------


def test_destinations_by_name_and_id(history: History) -> None:
    dest = add(history, cap=5_000)
    assert dest.cap == 5_000
    assert dest.created_at.tzinfo is not None
    assert history.get_destination("newsletter") == dest
    assert history.get_destination(dest.id) == dest
    assert history.get_destination(str(dest.id)) == dest  # ids typed on the command line
    with pytest.raises(DestinationExists, match="newsletter"):
        add(history)
    with pytest.raises(NotFound, match="'nope'"):
        history.get_destination("nope")
    renamed = history.update_destination(dest.id, name="weekly", cap=200_000)
    assert (renamed.name, renamed.cap) == ("weekly", 200_000)
    with pytest.raises(TypeError, match="id"):
        history.update_destination(dest.id, id=99)
    with pytest.raises(HistoryError, match="cap"):
        history.update_destination(dest.id, cap=0)
    with pytest.raises(HistoryError, match="list"):
        history.add_destination("no-list", base_url="https://api.sendgrid.com")


def test_removing_a_destination_keeps_its_runs_and_frees_its_name(history: History) -> None:
    old = add(history)
    run_id = history.start_run(old.id, ["vip"])
    history.finish_run(run_id, "succeeded", {"sent": 3})
    removed = history.remove_destination("newsletter")
    assert removed.removed_at is not None
    assert history.list_destinations() == []
    assert [d.id for d in history.list_destinations(include_removed=True)] == [old.id]
    with pytest.raises(NotFound):
        history.get_destination("newsletter")

    new = add(history)  # the name is free again
    assert new.id != old.id
    assert history.get_destination("newsletter").id == new.id
    kept = history.get_run(run_id)
    assert (kept.destination_id, kept.destination_name, kept.status) == (
        old.id,
        "newsletter",
        "succeeded",
    )
    assert [r.id for r in history.list_runs(destination=old.id)] == [run_id]


def test_consent_mapping_and_segments(history: History) -> None:
    dest = add(history)
    assert not dest.consented
    consented = history.record_consent(dest.id, "ana", "These people agreed to hear from us.")
    assert consented.consented
    assert consented.consent_by == "ana"
    assert consented.consent_text == "These people agreed to hear from us."
    assert (datetime.now(UTC) - consented.consent_at).total_seconds() < 60
    with pytest.raises(HistoryError):
        history.record_consent(dest.id, "ana", "  ")

    assert history.get_mapping(dest.id) is None
    mapping = FieldMapping(
        email="Email",
        reserved={"first_name": "given"},
        custom={"tier": "loyalty_tier"},
        consent_column="opt_in",
    )
    history.set_mapping(dest.id, mapping)
    assert history.get_mapping(dest.id) == mapping
    history.set_mapping(dest.id, {"email": "mail"})  # a plain dict works too, and replaces
    assert history.get_mapping(dest.id) == FieldMapping(email="mail", reserved={}, custom={})

    assert history.get_segments(dest.id) == ()
    history.set_segments(dest.id, ["lapsed", "high_value", "lapsed"])
    assert history.get_segments(dest.id) == ("lapsed", "high_value")


# -- runs --------------------------------------------------------------------


def test_a_run_with_batches_and_rejections(history: History) -> None:
    dest = add(history)
    run_id = history.start_run(
        dest.id, ["vip", "fr"], mode="mirror", incremental=True, config={"cap": 100_000}
    )
    run = history.get_run(run_id)
    assert (run.status, run.mode, run.incremental, run.dry_run) == (
        "running",
        "mirror",
        True,
        False,
    )
    assert run.pid == os.getpid()
    assert run.operator == current_operator()
    assert run.config == {"cap": 100_000}

    history.add_batch(run_id, 0, 30_000, 5_900_000, "a@x.io", "m@x.io")
    history.add_batch(run_id, 1, 20_000, 3_000_000, "n@x.io", "r@x.io")
    history.add_batch(run_id, 2, 10, 900, "s@x.io", "z@x.io")
    history.mark_batch_sent(run_id, 0, "job-0")
    history.mark_batch_sent(run_id, 1, "job-1")
    history.mark_batch_finished(run_id, 0, "completed", 29_000, 1_000, 0)
    history.mark_batch_finished(run_id, 1, "errored", 19_990, 0, 10)
    with pytest.raises(NotFound):
        history.mark_batch_sent(run_id, 9, "job-9")
    with pytest.raises(HistoryError):
        history.mark_batch_finished(run_id, 2, "sent")

    # A resume skips what SendGrid finished, and numbers new batches after the old.
    assert history.confirmed_batches(run_id) == [0, 1]
    assert history.next_batch_seq(run_id) == 3

    history.add_rejected(
        run_id,
        [
            (None, "c-1", "bad@", "invalid_email", "plan"),
            (1, None, "q@x.io", "invalid mailbox", "sendgrid"),
        ],
    )
    with pytest.raises(HistoryError, match="elsewhere"):
        history.add_rejected(run_id, [(None, "c-2", "e@x.io", "dup", "elsewhere")])
    history.update_run_counts(run_id, {"sent": 50_000})
    assert history.get_run(run_id).counts == {"sent": 50_000}
    history.finish_run(run_id, "partial", {"sent": 50_010, "errored": 10}, "10 rows rejected")

    detail = history.get_run(run_id)
    assert detail.status == "partial"
    assert detail.message == "10 rows rejected"
    assert detail.ended_at >= detail.started_at
    assert [(b.seq, b.status, b.job_id) for b in detail.batches] == [
        (0, "completed", "job-0"),
        (1, "errored", "job-1"),
        (2, "prepared", None),
    ]
    assert detail.batches[1].errored == 10
    assert detail.rejected == 2
    assert [(r.seq, r.reason, r.source) for r in history.rejected_rows(run_id)] == [
        (None, "invalid_email", "plan"),
        (1, "invalid mailbox", "sendgrid"),
    ]
    # what an export's record reads back: SendGrid's refusals, not the plan's rows
    assert [(r.seq, r.reason) for r in history.rejected_rows(run_id, source="sendgrid")] == [
        (1, "invalid mailbox")
    ]
    with pytest.raises(HistoryError):
        history.finish_run(run_id, "running")
    with pytest.raises(NotFound, match="run 999"):
        history.get_run(999)


def test_list_runs_filters_and_the_incremental_base(history: History) -> None:
    a = add(history, "a")
    b = add(history, "b")
    ok = history.start_run(a.id, ["s"])
    history.finish_run(ok, "succeeded")
    dry = history.start_run(a.id, ["s"], dry_run=True)
    history.finish_run(dry, "dry_run")
    failed = history.start_run(a.id, ["s"])
    history.finish_run(failed, "failed", message="bad key")
    other = history.start_run(b.id, ["s"])

    assert [r.id for r in history.list_runs()] == [other, failed, dry, ok]
    assert [r.id for r in history.list_runs(destination="a")] == [failed, dry, ok]
    assert [r.id for r in history.list_runs(status="failed")] == [failed]
    assert [r.id for r in history.list_runs(limit=2)] == [other, failed]
    # Neither the dry-run nor the failed run is a base for --incremental.
    assert history.last_successful_run(a.id).id == ok
    assert history.last_successful_run(b.id) is None


def test_every_write_is_visible_at_once_to_another_reader(history: History) -> None:
    dest = add(history)
    run_id = history.start_run(dest.id, ["vip"])
    history.add_batch(run_id, 0, 10, 100, "a@x.io", "b@x.io")
    history.mark_batch_sent(run_id, 0, "job-0")
    reader = sqlite3.connect(history.path)  # another process would see the same
    assert reader.execute("SELECT status, job_id FROM run_batch").fetchall() == [("sent", "job-0")]
    assert reader.execute("SELECT status FROM run").fetchall() == [("running",)]
    reader.close()


@pytest.mark.slow
def test_two_writers_at_once_wait_for_each_other_instead_of_failing(tmp_path: Path) -> None:
    """The TUI and a cron export share the file; neither may get 'database is locked'."""
    db = tmp_path / "history.db"
    with History(db) as setup:
        dest_id = add(setup).id
    errors: list[BaseException] = []

    def export(seqs: range) -> None:
        try:
            with History(db) as h:
                run_id = h.start_run(dest_id, ["s"])
                for seq in seqs:
                    h.add_batch(run_id, seq, 1, 10, "a@x.io", "b@x.io")
                    h.add_rejected(run_id, [(seq, None, "c@x.io", "bounce", "sendgrid")])
                    h.list_runs()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=export, args=(range(25),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with History(db) as h:
        assert [h.get_run(r.id).rejected for r in h.list_runs()] == [25, 25, 25]


@pytest.mark.slow
def test_a_killed_export_shows_as_interrupted_with_its_batches(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    with History(db) as history:
        dest_id = add(history).id
    child = run_python(
        """
        import os, signal, sys
        from pathlib import Path
        from store.history import History
        h = History(Path(sys.argv[1]))
        run_id = h.start_run(int(sys.argv[2]), ["vip"])
        h.add_batch(run_id, 0, 30000, 6000000, "a@x.io", "m@x.io")
        h.mark_batch_sent(run_id, 0, "job-0")
        h.mark_batch_finished(run_id, 0, "completed", 30000, 0, 0)
        h.add_batch(run_id, 1, 30000, 6000000, "n@x.io", "z@x.io")
        h.mark_batch_sent(run_id, 1, "job-1")
        print(run_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        str(db),
        str(dest_id),
    )
    run_id = int(child.stdout.readline())
    assert child.wait(timeout=30) == -signal.SIGKILL

    with History(db) as history:
        run = history.get_run(run_id)
        assert run.status == "interrupted"
        assert str(child.pid) in run.message
        assert run.ended_at is not None
        assert [(b.seq, b.status, b.job_id) for b in run.batches] == [
            (0, "completed", "job-0"),
            (1, "sent", "job-1"),
        ]
        assert history.confirmed_batches(run_id) == [0]
        assert history.integrity_check() == "ok"

        history.reopen_run(run_id)  # --resume takes it over
        reopened = history.get_run(run_id)
        assert (reopened.status, reopened.pid, reopened.ended_at) == ("running", os.getpid(), None)
        assert history.next_batch_seq(run_id) == 2


def test_only_dead_local_processes_are_marked_interrupted(history: History) -> None:
    dest = add(history)
    mine = history.start_run(dest.id, ["s"])  # this process: alive
    elsewhere = history.start_run(dest.id, ["s"])
    with sqlite3.connect(history.path) as conn:
        conn.execute("UPDATE run SET host = 'other-host', pid = 1 WHERE id = ?", (elsewhere,))
    assert history.mark_interrupted_runs() == []
    assert history.get_run(mine).status == "running"
    assert history.get_run(elsewhere).status == "running"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times need /proc")
def test_a_dead_exports_pid_reused_by_a_later_process_is_still_interrupted(
    history: History,
) -> None:
    """In a container the next process often gets the same small pid."""
    dest = add(history)
    stale = history.start_run(dest.id, ["s"])
    with sqlite3.connect(history.path) as conn:  # our pid, but a run older than this process
        conn.execute(
            "UPDATE run SET started_at = '2000-01-01 00:00:00.000000' WHERE id = ?", (stale,)
        )
    assert history.mark_interrupted_runs() == [stale]
    assert history.get_run(stale).status == "interrupted"


def test_runs_are_found_by_current_and_former_name(history: History) -> None:
    dest = add(history, "daily")
    before = history.start_run(dest.id, ["s"])
    history.update_destination(dest.id, name="weekly")
    after = history.start_run(dest.id, ["s"])
    assert [r.id for r in history.list_runs(destination="weekly")] == [after, before]
    assert [r.id for r in history.list_runs(destination="daily")] == [before]
    assert history.get_run(before).destination_name == "daily"
    history.remove_destination("weekly")
    with pytest.raises(HistoryError, match="removed"):
        history.start_run(dest.id, ["s"])


@pytest.mark.slow
def test_a_hundred_thousand_rejected_rows(history: History) -> None:
    run_id = history.start_run(add(history).id, ["all"])
    rows = ((None, f"c-{i}", f"user{i}@bad", "invalid_email", "plan") for i in range(100_000))
    started = time.perf_counter()
    assert history.add_rejected(run_id, rows) == 100_000
    elapsed = time.perf_counter() - started
    # 0.6 s on an idle 2-core machine, under 2 s with the machine busy; ORM
    # objects per row take tens of seconds. Generous: this guards the method.
    assert elapsed < 10, elapsed
    assert history.get_run(run_id).rejected == 100_000
    emails = [r.email for r in history.rejected_rows(run_id)]
    assert len(emails) == 100_000
    assert emails[0] == "user0@bad" and emails[-1] == "user99999@bad"
    assert [r.key for r in history.rejected_rows(run_id, limit=3)] == ["c-0", "c-1", "c-2"]


def test_operator_names_the_real_user_and_ssh_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "root")
    monkeypatch.setenv("SUDO_USER", "ana")
    monkeypatch.setenv("SSH_CONNECTION", "10.1.2.3 51000 10.0.0.1 22")
    assert current_operator() == "ana (ssh from 10.1.2.3)"
    monkeypatch.delenv("SUDO_USER")
    monkeypatch.delenv("SSH_CONNECTION")
    assert current_operator() == "root"
