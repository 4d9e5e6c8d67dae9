"""The sample workspace generator: deterministic, realistic, and dirty on purpose."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from store.plan import EXCLUSIONS, PlanRequest, plan_export, suggest_mapping
from store.records import Column
from store.sample import generate_workspace
from store.workspace import Workspace

BUNDLED = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return pq.read_table(BUNDLED / "profiles.parquet").to_pylist()


def test_same_seed_same_bytes_other_seed_other_rows(tmp_path: Path) -> None:
    a = generate_workspace(tmp_path / "a", 2000, seed=11)
    b = generate_workspace(tmp_path / "b", 2000, seed=11)
    c = generate_workspace(tmp_path / "c", 2000, seed=12)
    for name in ("profiles.parquet", "segments.toml"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert pq.read_table(a / "profiles.parquet") != pq.read_table(c / "profiles.parquet")


def test_bundled_sample_is_what_the_generator_makes(tmp_path: Path) -> None:
    fresh = generate_workspace(tmp_path / "s", 5000, seed=7)
    assert pq.read_table(fresh / "profiles.parquet") == pq.read_table(BUNDLED / "profiles.parquet")
    assert (fresh / "segments.toml").read_text() == (BUNDLED / "segments.toml").read_text()


def test_columns_and_types() -> None:
    cols = Workspace.open(BUNDLED).columns()
    for col in [
        Column("customer_id", "BIGINT"),
        Column("email", "VARCHAR"),
        Column("email_opt_in", "BOOLEAN"),
        Column("lifetime_value", "DECIMAL(12,2)"),
        Column("last_order_at", "TIMESTAMP"),
        Column("signup_date", "DATE"),
        Column("loyalty_tier", "VARCHAR"),
        Column("birthday", "DATE"),
        Column("favourite_category", "VARCHAR"),
    ]:
        assert col in cols
    names = {c.name for c in cols}
    assert {"first_name", "last_name", "country", "state", "city", "postal_code"} <= names


def _invalid(email: str) -> bool:
    e = email.strip()
    return "@" not in e or "@@" in e or " " in e or e.endswith(".")


def test_emails_are_dirty_in_the_requested_proportions(rows: list[dict]) -> None:
    n = len(rows)
    assert n == 5000
    emails = [r["email"] for r in rows]
    invalid = sum(1 for e in emails if e and e.strip() and _invalid(e))
    assert 0.02 * n <= invalid <= 0.04 * n
    nulls = sum(1 for e in emails if e is None)
    empties = sum(1 for e in emails if e == "")
    assert nulls > 0 and empties > 0
    assert 0.01 * n <= nulls + empties <= 0.025 * n
    kinds = Counter(
        "no_at" if "@" not in e else "double_at" if "@@" in e
        else "space" if " " in e.strip() else "trailing_dot"
        for e in emails if e and e.strip() and _invalid(e)
    )  # fmt: skip
    assert set(kinds) == {"no_at", "double_at", "space", "trailing_dot"}


def test_duplicates_differ_only_in_case_or_spaces(rows: list[dict]) -> None:
    groups: dict[str, list[str]] = {}
    for r in rows:
        if r["email"] and r["email"].strip():
            groups.setdefault(r["email"].strip().lower(), []).append(r["email"])
    dup_rows = sum(len(v) - 1 for v in groups.values() if len(v) > 1)
    assert 0.01 * len(rows) <= dup_rows <= 0.03 * len(rows)
    variants = [v for v in groups.values() if len(v) > 1]
    assert any(len({x.strip() for x in v}) > 1 for v in variants)  # case differs
    assert any(any(x != x.strip() for x in v) for v in variants)  # surrounding spaces


def test_names_scripts_and_empty_versus_null(rows: list[dict]) -> None:
    names = [f"{r['first_name'] or ''} {r['last_name'] or ''}" for r in rows]
    assert any(len(r["last_name"] or "") > 50 for r in rows)
    for script in (r"[\u0400-\u04FF]", r"[\u4E00-\u9FFF]", r"[\u0370-\u03FF]", r"[éèüöäçñ]"):
        assert any(re.search(script, n) for n in names), script
    for column in ("state", "first_name", "loyalty_tier", "favourite_category"):
        values = [r[column] for r in rows]
        assert None in values and "" in values, column


def test_segments_count_without_errors() -> None:
    counts = Workspace.open(BUNDLED).count_segments()
    assert len(counts) >= 6
    for c in counts:
        assert c.error is None, c
        assert 0 < c.count < 5000, c


def test_every_exclusion_category_occurs_in_a_plan_of_the_sample() -> None:
    ws = Workspace.open(BUNDLED)
    mapping = suggest_mapping(ws.columns(), ["loyalty_tier", "birthday"])
    segments = tuple(s.name for s in ws.segments())
    with plan_export(ws, PlanRequest(segments, mapping)) as plan:
        assert all(plan.counts[e] > 0 for e in EXCLUSIONS), plan.counts
        assert plan.counts["to_send"] > 1000


@pytest.mark.slow
def test_csv_format(tmp_path: Path) -> None:
    folder = generate_workspace(tmp_path / "csv", 300, fmt="csv")
    ws = Workspace.open(folder)
    assert ws.source.name == "profiles.csv"
    assert sum(1 for _ in ws.columns()) == 15
    assert all(c.error is None for c in ws.count_segments())
    with pytest.raises(ValueError, match="unsupported sample format"):
        generate_workspace(tmp_path / "x", 10, fmt="xlsx")
