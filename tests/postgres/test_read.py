"""How a Postgres source is read fast without changing any answer: only the
columns a plan needs, and large tables by several sessions of one snapshot."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pytest

import store.postgres_source as pg_source
from store.plan import PlanRequest, plan_columns, plan_export, suggest_mapping
from store.postgres_source import PostgresSource, SourceLost
from store.workspace import NUMBERED_VIEW, PG_SNAPSHOT, Workspace, WorkspaceError
from tests.postgres.cluster import Cluster
from tests.postgres.conftest import unique_table, write_pg_workspace

# A real PostgreSQL cluster per session: scenario tests (`-m "not slow"` skips them).
pytestmark = pytest.mark.slow

# Segments over columns no mapping below uses (birthday, lifetime_value, loyalty_tier,
# signup_date): a projection that missed one would fail or count differently.
UNMAPPED_SEGMENTS = """
[segments.birthday_known]
where = "birthday IS NOT NULL AND month(birthday) = 3"

[segments.subquery]
where = "customer_id IN (SELECT customer_id FROM profiles WHERE lifetime_value > 700)"

[segments.every_column]
where = "COLUMNS(*) IS NOT NULL"

[segments.aliased]
where = '''customer_id IN (SELECT p.customer_id FROM profiles p
           WHERE p.loyalty_tier = 'gold' AND p.signup_date < DATE '2020-01-01')'''
"""


def _workspaces(sample_pair: tuple[Path, Path], tmp_path: Path) -> tuple[Workspace, Workspace]:
    parquet, pg = sample_pair
    out = []
    for name, src in (("parquet", parquet), ("pg", pg)):
        text = (src / "segments.toml").read_text().split("[segments.", 1)[0]
        if name == "parquet":
            text = text.replace('path = "', f'path = "{src}/')
        folder = tmp_path / name
        folder.mkdir()
        (folder / "segments.toml").write_text(text + UNMAPPED_SEGMENTS)
        out.append(Workspace.open(folder))
    return out[0], out[1]


def _request(ws: Workspace, *segments: str) -> PlanRequest:
    mapping = replace(suggest_mapping(["email"]), consent_column="email_opt_in")
    return PlanRequest(segments=segments, mapping=mapping)


@pytest.mark.parametrize(
    "segment", ["birthday_known", "subquery", "every_column", "aliased", "everything"]
)
def test_segments_on_unmapped_columns_plan_the_same_as_from_parquet(sample_pair, tmp_path, segment):
    parquet, pg = _workspaces(sample_pair, tmp_path)
    names = [s.name for s in pg.segments()] if segment == "everything" else [segment]
    with plan_export(parquet, _request(parquet, *names)) as expected:
        want = dict(expected.counts)
    with plan_export(pg, _request(pg, *names)) as plan:
        assert dict(plan.counts) == want
        assert want["selected"] > 0


def test_a_plan_transfers_only_the_columns_it_reads(sample_pair, tmp_path):
    _, pg = _workspaces(sample_pair, tmp_path)
    needed = plan_columns(pg, _request(pg, "birthday_known", "subquery"))
    assert needed == {
        "email", "email_opt_in", "customer_id", "birthday", "lifetime_value",
    }  # fmt: skip
    with pg.connect(columns=needed) as con:
        got = {r[0] for r in con.execute("DESCRIBE profiles").fetchall()}
    assert got == needed
    # A star (here COLUMNS(*)) may read any column: all of them are copied.
    assert plan_columns(pg, _request(pg, "every_column")) is None
    assert plan_columns(pg, _request(pg, "aliased")) == {
        "email", "email_opt_in", "customer_id", "p", "loyalty_tier", "signup_date",
    }  # fmt: skip


def test_a_mapping_naming_a_missing_column_lists_every_column(sample_pair, tmp_path):
    from store.plan import MappingError

    _, pg = _workspaces(sample_pair, tmp_path)
    mapping = replace(suggest_mapping(["email"]), consent_column="no_such_column")
    with pytest.raises(MappingError) as err:
        plan_export(pg, PlanRequest(segments=("subquery",), mapping=mapping))
    assert "no_such_column" in str(err.value) and "favourite_category" in str(err.value)


# -- several readers, one snapshot ---------------------------------------------------------


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let test-sized tables be split between readers (a page each is enough)."""
    monkeypatch.setattr(pg_source, "MIN_PAGES_PER_READER", 1)


def _numbers(cluster: Cluster, rows: int) -> str:
    table = unique_table("par")
    cluster.sql(
        "crm",
        f"CREATE TABLE {table} AS SELECT g AS id, 'p' || g || '@example.com' AS email, "
        f"(g % 1000)::numeric(8, 2) AS ltv FROM generate_series(1, {rows}) g",
    )
    return table


def _parts(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The snapshot's parts: a view each over the Arrow rows of one reader."""
    rows = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE view_name LIKE ? "
        "AND NOT ends_with(view_name, '_arrow') ORDER BY 1",
        [f"{PG_SNAPSHOT}%"],
    ).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("readers", [2, 3])
def test_readers_split_a_table_and_number_rows_in_page_order(
    postgres_cluster, tmp_path, small_pages, readers
):
    table = _numbers(postgres_cluster, 30_000)
    ws = Workspace.open(
        write_pg_workspace(tmp_path, postgres_cluster.url(), table, readers=readers)
    )
    with ws.connect() as con:
        assert _parts(con) == [f"{PG_SNAPSHOT}_{i}" for i in range(readers)]
        sizes = [con.execute(f"SELECT count(*) FROM {p}").fetchall()[0][0] for p in _parts(con)]
        assert all(n > 0 for n in sizes) and sum(sizes) == 30_000
        rc = ws.row_column
        rows = con.execute(f'SELECT "{rc}", id FROM {NUMBERED_VIEW} ORDER BY 1').fetchall()
        types = dict(
            con.execute("SELECT column_name, column_type FROM (DESCRIBE profiles)").fetchall()
        )
    # generate_series filled the pages in id order: row numbers follow the pages.
    assert rows == [(i, i + 1) for i in range(30_000)]
    assert types["ltv"] == "DECIMAL(8,2)"


def test_readers_see_the_first_readers_snapshot_while_the_table_changes(
    postgres_cluster, tmp_path, small_pages, monkeypatch
):
    table = _numbers(postgres_cluster, 30_000)
    ws = Workspace.open(write_pg_workspace(tmp_path, postgres_cluster.url(), table, readers=3))
    opened: list[int] = []
    original = PostgresSource.session

    @contextlib.contextmanager
    def session(self: PostgresSource) -> Iterator[Any]:
        opened.append(1)
        if len(opened) == 2:  # the snapshot is exported; the next readers import it
            postgres_cluster.sql(
                "crm",
                f"DELETE FROM {table} WHERE id % 2 = 0",
                f"UPDATE {table} SET ltv = -1",
                f"INSERT INTO {table} SELECT g, 'new' || g, 0 FROM generate_series(1, 5000) g",
            )
        with original(self) as cur:
            yield cur

    monkeypatch.setattr(PostgresSource, "session", session)
    with ws.connect() as con:
        assert len(opened) == 3 and len(_parts(con)) == 3
        got = con.execute(
            "SELECT count(*), count(DISTINCT id), sum(id), min(ltv) FROM profiles"
        ).fetchall()
    assert got == [(30_000, 30_000, 30_000 * 30_001 // 2, 0)]
    monkeypatch.setattr(PostgresSource, "session", original)
    with ws.connect() as con:  # the next connection sees the changed table
        after = con.execute("SELECT count(*), min(ltv) FROM profiles").fetchall()
    assert after == [(20_000, -1)]


def test_a_reader_dropped_mid_read_is_source_lost(postgres_cluster, tmp_path, small_pages):
    table = _numbers(postgres_cluster, 200_000)
    folder = write_pg_workspace(
        tmp_path, postgres_cluster.url(), table, readers=2,
        # Only the second reader's range holds id 180000: that session ends itself.
        prefilter="CASE WHEN id = 180000 THEN pg_terminate_backend(pg_backend_pid()) END IS NULL",
    )  # fmt: skip
    ws = Workspace.open(folder)
    with pytest.raises(SourceLost) as err:
        ws.connect()
    assert "connection was lost" in str(err.value) and "nothing was sent" in str(err.value)
    active = postgres_cluster.sql(
        "crm", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'segsync'"
    )
    assert active == [(0,)]


def test_views_and_small_tables_are_read_by_one_session(postgres_cluster, tmp_path):
    table = _numbers(postgres_cluster, 1_000)
    postgres_cluster.sql("crm", f"CREATE VIEW {table}_v AS SELECT * FROM {table}")
    for name in (table, f"{table}_v"):
        folder = write_pg_workspace(tmp_path / name, postgres_cluster.url(), name, readers=4)
        with Workspace.open(folder).connect() as con:
            assert _parts(con) == [PG_SNAPSHOT]
            assert con.execute("SELECT count(*) FROM profiles").fetchall() == [(1_000,)]


@pytest.mark.parametrize("value", [0, 9, "2", 2.5])
def test_readers_must_be_a_small_whole_number(postgres_cluster, tmp_path, value):
    folder = write_pg_workspace(tmp_path, postgres_cluster.url(), "public.profiles", readers=value)
    with pytest.raises(WorkspaceError) as err:
        Workspace.open(folder)
    assert "[profiles] readers must be a whole number from 1 to 8" in str(err.value)


@pytest.mark.parametrize("readers", [1, 2])
def test_a_reviewed_plan_reads_its_contacts_from_the_snapshot_on_a_cursor(
    postgres_cluster, sample_pair, tmp_path, small_pages, readers
):
    # A plan only reviewed keeps no payload values: its first contacts are looked
    # up in the source from a cursor, which must see the registered Arrow rows.
    parquet, pg = _workspaces(sample_pair, tmp_path)
    text = (
        (pg.config_path).read_text().replace("[profiles]\n", f"[profiles]\nreaders = {readers}\n")
    )
    pg.config_path.write_text(text)
    pg = Workspace.open(pg.root)
    names = ("birthday_known", "aliased")

    def first(ws: Workspace, n: int) -> list[dict]:
        request = replace(_request(ws, *names), keep_payloads=False)
        with plan_export(ws, request) as plan:
            return [row for b in plan.contacts(limit=n) for row in b.to_pylist()]

    assert first(pg, 50) == first(parquet, 50)
    assert len(first(pg, 50)) == 50


def test_a_numeric_value_decimal_cannot_hold_fails_the_read_naming_the_source(
    postgres_cluster, tmp_path
):
    table = unique_table("nan")
    postgres_cluster.sql(
        "crm",
        f"CREATE TABLE {table} (id int, ltv numeric(12, 2))",
        f"INSERT INTO {table} VALUES (1, 499.99), (2, 'NaN')",
    )
    segments = '[segments.hv]\nwhere = "ltv IS NULL OR id > 0"\n'  # reads ltv
    folder = write_pg_workspace(tmp_path, postgres_cluster.url(), table, segments)
    ws = Workspace.open(folder)
    with pytest.raises(WorkspaceError) as err:
        ws.count_segments()
    text = str(err.value)
    assert text.startswith(f"postgres 127.0.0.1:{postgres_cluster.port}/crm {table}")
    assert f"reading {table} failed" in text and "NaN" in text
