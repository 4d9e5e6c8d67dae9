"""A real `segsync export` process killed with SIGKILL mid-run, then resumed."""

from __future__ import annotations

import signal
import subprocess
import time

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store.history import History
from store.paths import history_path
from tests.engine.conftest import expected_emails, run_cli
from tests.upload_log import confirmed_emails
from tui.cli import main

pytestmark = pytest.mark.slow  # export processes killed and resumed


def start_export(export_env, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        export_env.cli("export", "news", *argv),
        env=export_env.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_after(proc: subprocess.Popen[str], marker: str, occurrences: int) -> list[str]:
    """Read the process's log lines; SIGKILL it once `marker` was seen N times."""
    lines: list[str] = []
    seen = 0
    deadline = time.monotonic() + 60
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            seen += 1
            if seen >= occurrences:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(lines)
    return lines


def received_emails(emulator, since: int) -> list[str]:
    """Every email the emulator received in upsert bodies after exchange `since`."""
    out: list[str] = []
    for exchange in emulator.exchanges[since:]:
        if exchange.method == "PUT" and exchange.status == 202:
            out.extend(c["email"] for c in exchange.request_json["contacts"])
    return out


def test_killed_export_resumes_to_the_exact_list_without_resending(export_env, capsys):
    segments = ["germany", "france"]
    export_env.emulator.set_faults(job_delay=0.2)
    proc = start_export(
        export_env,
        "--segment",
        "germany",
        "--segment",
        "france",
        "--batch-size",
        "60",
        "--concurrency",
        "1",
    )
    kill_after(proc, "job completed", 4)

    history = History(history_path(export_env.state_dir))
    run = history.list_runs()[0]
    assert run.status == "interrupted"  # the dead process's run, seen by a new one
    assert len(history.confirmed_batches(run.id)) >= 4
    confirmed = confirmed_emails(export_env.emulator, history, run.id)
    assert history.integrity_check() == "ok"

    run_files = export_env.state_dir / "runs" / str(run.id)
    assert run_files.is_dir()  # the killed run's batch addresses, kept for the resume
    mark = len(export_env.emulator.exchanges)
    capsys.readouterr()
    code = run_cli(main, "export", "news", "--resume", str(run.id), "--json")
    summary = orjson.loads(capsys.readouterr().out)
    assert code == 0, summary
    assert summary["status"] == "succeeded"

    expected = expected_emails(export_env.rows, segments)
    assert export_env.emulator.state.list_members(export_env.list_id) == expected
    resent = [email for email in received_emails(export_env.emulator, mark) if email in confirmed]
    assert resent == []
    assert summary["counts"]["sent"] == len(expected)
    assert not run_files.exists()  # finished for good: nothing left to resume
    assert History(history_path(export_env.state_dir)).integrity_check() == "ok"


def test_a_confirmed_batch_without_its_address_file_is_sent_again_with_a_warning(
    export_env, capsys
):
    export_env.emulator.set_faults(job_delay=0.2)
    proc = start_export(export_env, "--segment", "germany", "--batch-size", "60")
    kill_after(proc, "job completed", 3)
    history = History(history_path(export_env.state_dir))
    run = history.list_runs()[0]
    confirmed = history.confirmed_batches(run.id)
    assert len(confirmed) >= 3
    lost = confirmed[0]  # as if written by an older segsync, or lost
    lost_emails = _batch_emails(export_env, history, run.id, lost)
    kept = confirmed_emails(export_env.emulator, history, run.id) - lost_emails
    assert lost_emails and kept
    (export_env.state_dir / "runs" / str(run.id) / f"batch-{lost}.arrow").unlink()

    mark = len(export_env.emulator.exchanges)
    capsys.readouterr()
    code = run_cli(main, "export", "news", "--resume", str(run.id))
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 confirmed batch(es)" in err and "sent again" in err
    resent = set(received_emails(export_env.emulator, mark))
    assert lost_emails <= resent  # the unrecorded batch went again
    assert not resent & kept  # the recorded ones did not
    expected = expected_emails(export_env.rows, ["germany"])
    assert export_env.emulator.state.list_members(export_env.list_id) == expected


def test_resume_refuses_when_the_profiles_changed_since_the_plan(export_env, capsys):
    # The changeset keeps who and which digest, not the payloads: a resume plans
    # again, and must not send values nobody reviewed.
    export_env.emulator.set_faults(job_delay=0.2)
    proc = start_export(export_env, "--segment", "germany", "--batch-size", "60")
    kill_after(proc, "job completed", 2)
    run = History(history_path(export_env.state_dir)).list_runs()[0]
    rows = [dict(r) for r in export_env.rows]
    for row in rows:
        row["first_name"] = "Changed" + row["first_name"][:10]
    pq.write_table(pa.Table.from_pylist(rows), export_env.workspace / "profiles.parquet")

    mark = len(export_env.emulator.exchanges)
    capsys.readouterr()
    code = run_cli(main, "export", "news", "--resume", str(run.id))
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"Cannot resume run {run.id}" in err and "nothing was sent" in err
    assert not [x for x in export_env.emulator.exchanges[mark:] if x.method == "PUT"]
    assert History(history_path(export_env.state_dir)).get_run(run.id).status == "interrupted"


def _batch_emails(export_env, history, run_id: int, seq: int) -> set[str]:
    """The addresses of one batch, from the emulator's log (by the batch's job id)."""
    job = next(b.job_id for b in history.get_run(run_id).batches if b.seq == seq)
    for exchange in export_env.emulator.exchanges:
        answer = exchange.response_json
        if exchange.method == "PUT" and isinstance(answer, dict) and answer.get("job_id") == job:
            return {c["email"] for c in exchange.request_json["contacts"]}
    raise AssertionError(f"no upsert answered with job {job}")
