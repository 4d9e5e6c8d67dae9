"""Concurrent exports: two destinations at once both end exact; one destination
takes one export at a time (a second is refused, naming it, and sends nothing)."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store.history import History
from store.paths import history_path
from tests.reliability.conftest import FIGURES, Env, export_json
from tests.reliability.profiles import intended_emails, make_columns

pytestmark = pytest.mark.slow  # concurrent export processes

ROWS = 10_000


@pytest.fixture
def load_env(env: Env) -> tuple[Env, set[str]]:
    columns = make_columns(ROWS, salt=5)
    pq.write_table(pa.table(columns), env.workspace / "profiles.parquet")
    return env, intended_emails(columns, ["everyone"])


def wait_for_line(proc, marker: str, timeout: float = 90) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} never logged:\n" + "".join(lines))


@pytest.mark.timeout(120)
def test_two_exports_to_two_destinations_at_once_both_end_exact(load_env) -> None:
    env, intended = load_env
    env.add_destination("news")
    env.add_destination("promo")
    env.emulator.set_faults(latency=0.05, job_delay=0.1)
    argv = ("--segment", "everyone", "--batch-size", "1000", "--concurrency", "2")
    first = env.start("export", "news", *argv)
    second = env.start("export", "promo", *argv)
    outputs = [p.communicate(timeout=110) for p in (first, second)]
    for proc, (_out, err) in zip((first, second), outputs, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    assert env.members("news") == intended
    assert env.members("promo") == intended
    history = History(history_path(env.state_dir))
    runs = history.list_runs()
    assert sorted(r.destination_name for r in runs) == ["news", "promo"]
    assert all(r.status == "succeeded" for r in runs)
    # The two runs really overlapped in time.
    a, b = runs
    assert a.started_at < b.ended_at and b.started_at < a.ended_at
    assert history.integrity_check() == "ok"
    FIGURES["concurrent_exports"] += 2


@pytest.mark.timeout(120)
def test_second_export_to_the_same_destination_is_refused_while_one_runs(load_env, capsys) -> None:
    env, intended = load_env
    env.add_destination("news")
    env.emulator.set_faults(latency=0.05, job_delay=0.3)
    running = env.start(
        "export", "news", "--segment", "everyone", "--batch-size", "1000", "--concurrency", "1"
    )
    wait_for_line(running, "accepted as job")
    mark = len(env.emulator.exchanges)

    code, summary, err = export_json(capsys, "news", "--segment", "germany")
    assert code == 2, (summary, err)
    assert "'news'" in err and "already running" in err, err
    assert str(running.pid) in err  # who holds it
    assert "Traceback" not in err
    # The refused export made no request at all (the runner checked its key long ago).
    assert not [e for e in env.emulator.exchanges[mark:] if e.endpoint == "/v3/scopes"]

    _out, rest = running.communicate(timeout=110)
    assert running.returncode == 0, rest
    assert env.members("news") == intended
    runs = History(history_path(env.state_dir)).list_runs()
    assert [r.status for r in runs] == ["succeeded"]  # the refused one left no run behind
    FIGURES["concurrent_exports_refused"] += 1
