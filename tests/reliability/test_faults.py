"""Exports of 50,000+ profiles while the emulator misbehaves the way SendGrid does.

Each scenario runs the real `segsync export` against a loopback emulator with
fault injection switched on, then checks what a user relies on: the list holds
exactly the intended contacts (computed independently in tests/reliability/
profiles.py), nobody without consent was ever sent, rows SendGrid rejected are
in history with SendGrid's reasons, and the run's counts add up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from store.history import History
from store.paths import history_path
from store.plan import EXCLUSIONS
from tests.reliability.conftest import (
    FIGURES,
    Env,
    assert_counts_add_up,
    export_json,
    injected_faults,
    sent_emails,
)
from tests.reliability.profiles import (
    intended_emails,
    make_columns,
    no_consent_emails,
    selected_count,
    write_workspace,
)

pytestmark = pytest.mark.slow  # 75,000 profiles exported under each fault

ROWS = 75_000
SEGMENTS = ["germany", "big_spenders"]  # 50,000 of the 75,000 rows
BATCH = "2000"  # ~24 upload requests: every fault hits many of them


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    columns = make_columns(ROWS)
    folder = write_workspace(tmp_path_factory.mktemp("big") / "ws", columns)
    return {
        "workspace": folder,
        "columns": columns,
        "intended": intended_emails(columns, SEGMENTS),
        "no_consent": no_consent_emails(columns),
        "selected": selected_count(columns, SEGMENTS),
    }


@pytest.fixture
def big_env(big: dict[str, Any], tmp_path: Path, emulator, monkeypatch) -> Env:
    env = Env(big["workspace"], tmp_path / "state", emulator)
    for name, value in env.variables().items():
        monkeypatch.setenv(name, value)
    env.add_destination("news")
    return env


def every_nth(emails: set[str], n: int) -> set[str]:
    return set(sorted(emails)[::n])


SCENARIOS: dict[str, dict[str, Any]] = {
    "429_with_reset": {"rate_429": 0.3, "rate_limit_reset": 1},
    "500_503": {"rate_5xx": 0.1},
    "dropped_connections": {"rate_drop": 0.1},
    "latency_2s": {"latency": 2.0},
    "jobs_pending_long": {"job_delay": 3.0},
    "rows_errored": {"row_error_rate": 0.002, "error_emails": "every 400th"},
    "all_at_once": {
        "rate_429": 0.15,
        "rate_limit_reset": 1,
        "rate_5xx": 0.08,
        "rate_drop": 0.05,
        "latency": 0.25,
        "job_delay": 1.0,
        "row_error_rate": 0.001,
        "error_emails": "every 400th",
    },
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_export_under_faults_ends_exact(scenario: str, big, big_env: Env, capsys) -> None:
    faults = dict(SCENARIOS[scenario])
    forced_errors: set[str] = set()
    if faults.get("error_emails"):
        forced_errors = every_nth(big["intended"], 400)
        faults["error_emails"] = sorted(forced_errors)
    big_env.emulator.set_faults(seed=7, **faults)

    code, summary, err = export_json(
        capsys, "news", "--segment", SEGMENTS[0], "--segment", SEGMENTS[1], "--batch-size", BATCH
    )
    big_env.emulator.set_faults(
        rate_429=0.0, rate_5xx=0.0, rate_drop=0.0, latency=0.0, job_delay=0.0
    )
    assert "Traceback" not in err
    history = History(history_path(big_env.state_dir))
    run = history.get_run(summary["run"])
    recorded = list(history.rejected_rows(run.id))
    sendgrid_rejected = {r.email: r.reason for r in recorded if r.source == "sendgrid"}
    errored_by_emulator = {
        email: reason
        for job in big_env.emulator.state.jobs.values()
        for email, reason in job.errors
    }

    # SendGrid's rejections are in history with SendGrid's own reasons, and nothing else is.
    assert sendgrid_rejected == errored_by_emulator
    assert forced_errors <= set(sendgrid_rejected)
    expected_status = "partial" if errored_by_emulator else "succeeded"
    assert summary["status"] == expected_status, summary
    assert code == (3 if errored_by_emulator else 0)

    # The list is exact: every intended contact, minus SendGrid's rejections, nobody else.
    intended = big["intended"]
    assert big_env.members("news") == intended - set(sendgrid_rejected)

    # Nobody without consent, nobody outside the plan ever reached SendGrid.
    received = {e.lower() for e in sent_emails(big_env.emulator, accepted_only=False)}
    assert received.isdisjoint(big["no_consent"])
    assert received <= intended

    counts = summary["counts"]
    assert_counts_add_up(counts)
    assert counts["selected"] == big["selected"] >= 50_000
    assert counts["to_send"] == len(intended)
    assert counts["sent"] == len(intended)
    assert counts["errored"] == len(sendgrid_rejected)
    assert counts["created"] == len(intended) - len(sendgrid_rejected)
    assert run.counts == counts
    # Rows excluded for a data problem are in history with their category and reason.
    plan_rows = [r for r in recorded if r.source == "plan"]
    data_problems = [c for c in EXCLUSIONS if c != "no_consent"]  # consent: counted only
    assert len(plan_rows) == sum(counts[c] for c in data_problems) > 0
    assert {r.reason.split(":")[0] for r in plan_rows} == set(data_problems)
    assert history.integrity_check() == "ok"

    injected = injected_faults(big_env.emulator)
    FIGURES["fault_runs"] += 1
    FIGURES["profiles_exported_under_faults"] += counts["selected"]
    FIGURES["rows_errored_by_sendgrid"] += len(sendgrid_rejected)
    for kind, n in injected.items():
        FIGURES[f"faults_{kind}"] += n
    if faults.get("latency"):
        FIGURES["requests_delayed"] += len(big_env.emulator.exchanges)
    if faults.get("job_delay"):
        FIGURES["jobs_held_pending"] += len(big_env.emulator.state.jobs)
    if scenario not in ("latency_2s", "jobs_pending_long", "rows_errored"):
        assert sum(injected.values()) > 5, injected  # the faults really happened
