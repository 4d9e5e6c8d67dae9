"""A PostgreSQL profile source against a real server (the session's cluster):
the same answers as the Parquet file of the same rows, one snapshot per
connection, the same lockdown, and one clear line for every failure."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pytest

from store.fingerprint import configured_source, refresh_fingerprint, source_fingerprint
from store.postgres_source import PostgresSource, SourceLost
from store.workspace import Workspace, WorkspaceError, run_query
from tests.postgres.cluster import LOCKED_PASSWORD, LOCKED_USER, Cluster, free_port, wait_for
from tests.postgres.conftest import unique_table, write_pg_workspace

# A real PostgreSQL cluster per session: scenario tests (`-m "not slow"` skips them).
pytestmark = pytest.mark.slow

DIALECT_SEGMENTS = """
[segments.int_division]
where = "customer_id / 3 = 1"

[segments.signup_2024]
where = "year(signup_date) = 2024"

[segments.date_diff]
where = "date_diff('day', signup_date, DATE '2026-01-01') < 90"

[segments.regexp]
where = "regexp_matches(email, '^[a-z]+\\\\.')"

[segments.in_list]
where = "list_contains(['vip', 'gold'], loyalty_tier)"

[segments.interval]
where = "last_order_at >= TIMESTAMP '2025-12-31' - INTERVAL 30 DAY"

[segments.high_value]
where = "lifetime_value >= 500"
"""


def _both(sample_pair: tuple[Path, Path], segments: str, tmp_path: Path) -> list[Workspace]:
    parquet, pg = sample_pair
    out = []
    for name, src in (("parquet", parquet), ("pg", pg)):
        text = (src / "segments.toml").read_text().split("[segments.", 1)[0]
        folder = tmp_path / name
        folder.mkdir()
        if name == "parquet":
            text = text.replace('path = "', f'path = "{src}/')
        (folder / "segments.toml").write_text(text + segments)
        out.append(Workspace.open(folder))
    return out


# -- same answers as the file ---------------------------------------------------------


def test_every_sample_segment_counts_the_same_as_from_parquet(sample_pair):
    parquet, pg = (Workspace.open(p) for p in sample_pair)
    expected = parquet.count_segments()
    assert all(c.error is None and c.count for c in expected)
    assert pg.count_segments() == expected
    assert pg.columns() == parquet.columns()  # NUMERIC(12,2) arrives as DECIMAL(12,2)
    names = [s.name for s in pg.segments()]
    assert pg.union_count(names) == parquet.union_count(names)


def test_predicates_stay_duckdb_sql_whatever_postgres_would_say(sample_pair, tmp_path):
    parquet, pg = _both(sample_pair, DIALECT_SEGMENTS, tmp_path)
    expected = parquet.count_segments()
    assert all(c.error is None for c in expected), expected
    got = pg.count_segments()
    assert got == expected
    by_name = {c.segment: c.count for c in got}
    assert by_name["int_division"] == 1  # Postgres's integer division would give 3


def test_the_label_names_host_database_and_table_without_credentials(
    postgres_cluster: Cluster, sample_pair, tmp_path, monkeypatch
):
    monkeypatch.setenv("CRM_PW", LOCKED_PASSWORD)
    postgres_cluster.sql("crm", f"GRANT SELECT ON public.profiles TO {LOCKED_USER}")
    folder = write_pg_workspace(
        tmp_path, postgres_cluster.url(LOCKED_USER), "public.profiles", password_env="CRM_PW"
    )
    ws = Workspace.open(folder)
    label = f"postgres 127.0.0.1:{postgres_cluster.port}/crm public.profiles"
    assert ws.source_label == label == str(ws.source)
    assert LOCKED_PASSWORD not in repr(ws) and LOCKED_PASSWORD not in str(ws.source)
    assert ws.count_segments() == []  # no segments, but it connects with the password


# -- one snapshot, the same lockdown -----------------------------------------------------


def test_a_connection_keeps_its_snapshot_while_the_table_changes(postgres_cluster, tmp_path):
    table = unique_table("snap")
    postgres_cluster.sql(
        "crm",
        f"CREATE TABLE {table} AS SELECT g AS id, 'p' || g || '@example.com' AS email "
        "FROM generate_series(1, 1000) g",
    )
    ws = Workspace.open(write_pg_workspace(tmp_path, postgres_cluster.url(), table))
    with ws.connect() as con:
        assert run_query(con, "SELECT count(*) FROM profiles")[0][0] == 1000
        postgres_cluster.sql("crm", f"DELETE FROM {table} WHERE id > 400")
        assert run_query(con, "SELECT count(*) FROM profiles")[0][0] == 1000
        rows = run_query(con, f"SELECT count(*) FROM {ws_numbered(ws)}")
        assert rows[0][0] == 1000
    with ws.connect() as con:
        assert run_query(con, "SELECT count(*) FROM profiles")[0][0] == 400


def ws_numbered(ws: Workspace) -> str:
    from store.workspace import NUMBERED_VIEW

    return NUMBERED_VIEW


def test_numbered_view_follows_the_load_order(postgres_cluster, tmp_path):
    table = unique_table("num")
    postgres_cluster.sql(
        "crm", f"CREATE TABLE {table} AS SELECT g AS id FROM generate_series(1, 50) g"
    )
    ws = Workspace.open(write_pg_workspace(tmp_path, postgres_cluster.url(), table))
    with ws.connect() as con:
        rc = ws.row_column
        rows = con.execute(f'SELECT "{rc}", id FROM _profiles_numbered ORDER BY 1').fetchall()
    assert [r[0] for r in rows] == list(range(50))
    assert sorted(r[1] for r in rows) == list(range(1, 51))


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO '/tmp/segsync-pg-escape.csv'",
        "ATTACH '/tmp/segsync-pg-escape.duckdb' AS x",
        "SELECT * FROM read_text('/etc/passwd')",
        "INSTALL postgres",
        "SET enable_external_access = true",
    ],
)
def test_the_duckdb_connection_is_locked_down_as_for_files(sample_pair, sql):
    ws = Workspace.open(sample_pair[1])
    with ws.connect() as con, pytest.raises(duckdb.Error):
        con.execute(sql)
    assert not Path("/tmp/segsync-pg-escape.csv").exists()


def test_the_postgres_session_is_read_only(postgres_cluster, tmp_path):
    table = unique_table("ro")
    postgres_cluster.sql(
        "crm", f"CREATE TABLE {table} AS SELECT 1 AS id", f"CREATE SEQUENCE {table}_seq"
    )
    folder = write_pg_workspace(
        tmp_path, postgres_cluster.url(), table, prefilter=f"nextval('{table}_seq') > 0"
    )
    ws = Workspace.open(folder)  # the check reads no rows, so nextval() never ran
    with pytest.raises(WorkspaceError) as err:
        ws.connect()
    assert "read-only transaction" in str(err.value) and "prefilter" in str(err.value)
    assert postgres_cluster.sql("crm", f"SELECT last_value, is_called FROM {table}_seq") == [
        (1, False)
    ]


def test_a_prefilter_in_postgres_dialect_narrows_what_is_read(postgres_cluster, tmp_path):
    table = unique_table("pre")
    postgres_cluster.sql(
        "crm", f"CREATE TABLE {table} AS SELECT g AS id FROM generate_series(1, 100) g"
    )
    folder = write_pg_workspace(
        tmp_path, postgres_cluster.url(), table, "[segments.all]\nwhere = \"true\"\n",
        prefilter="id % 10 = 0 AND now() > '2000-01-01'::date",
    )  # fmt: skip
    assert Workspace.open(folder).count_segments()[0].count == 10


def test_numeric_columns_are_decimals_from_their_typmod(postgres_cluster, tmp_path):
    table = unique_table("num")
    postgres_cluster.sql(
        "crm",
        f"CREATE TABLE {table} (id int, ltv numeric(12, 2), score numeric, big numeric(60, 4))",
        f"INSERT INTO {table} VALUES (1, 499.99, 1.5, 1), (2, 500.00, 2.5, 2), (3, NULL, NULL, 3)",
    )
    folder = write_pg_workspace(
        tmp_path, postgres_cluster.url(), table, '[segments.hv]\nwhere = "ltv >= 500"\n'
    )
    ws = Workspace.open(folder)
    types = {c.name: c.type for c in ws.columns()}
    assert types == {"id": "INTEGER", "ltv": "DECIMAL(12,2)", "score": "DOUBLE", "big": "DOUBLE"}
    assert ws.count_segments()[0].count == 1


# -- failures: one clear line --------------------------------------------------------------


def _open_error(folder: Path) -> str:
    with pytest.raises(WorkspaceError) as err:
        Workspace.open(folder)
    text = str(err.value)
    assert "\n" not in text.strip(), text
    return text


def test_a_password_in_the_url_is_refused_and_not_repeated(postgres_cluster, tmp_path):
    url = postgres_cluster.url().replace("segsync@", "segsync:hunter2@")
    text = _open_error(write_pg_workspace(tmp_path, url, "public.profiles"))
    assert "password" in text and "PGPASSWORD" in text and "hunter2" not in text


def test_an_unreachable_server_says_so(tmp_path):
    port = free_port()
    url = f"postgresql://segsync@127.0.0.1:{port}/crm"
    text = _open_error(write_pg_workspace(tmp_path, url, "public.profiles"))
    assert f"postgres 127.0.0.1:{port}/crm public.profiles" in text
    assert "cannot connect" in text and "refused" in text.lower() and "segments.toml" in text


def test_a_wrong_password_says_how_to_give_one(postgres_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_PW", "not-the-password")
    folder = write_pg_workspace(
        tmp_path, postgres_cluster.url(LOCKED_USER), "public.profiles", password_env="CRM_PW"
    )
    text = _open_error(folder)
    assert "password authentication failed" in text and "PGPASSWORD" in text
    assert "not-the-password" not in text
    monkeypatch.delenv("CRM_PW")
    assert "CRM_PW, which is not set" in _open_error(folder)


def test_a_missing_table_or_key_column_names_the_setting(postgres_cluster, tmp_path):
    text = _open_error(write_pg_workspace(tmp_path / "a", postgres_cluster.url(), "no_such"))
    assert "no table or view 'no_such'" in text and "[profiles] table" in text
    table = unique_table("key")
    postgres_cluster.sql("crm", f"CREATE TABLE {table} AS SELECT 1 AS id")
    folder = write_pg_workspace(tmp_path / "b", postgres_cluster.url(), table, key="customer_id")
    text = _open_error(folder)
    assert "key column 'customer_id'" in text and table in text


def test_a_type_duckdb_cannot_map_is_named_with_the_fix(postgres_cluster, tmp_path):
    table = unique_table("types")
    postgres_cluster.sql(
        "crm", f"CREATE TABLE {table} AS SELECT 1 AS id, '10.0.0.1'::inet AS ip, 5::money AS m"
    )
    text = _open_error(write_pg_workspace(tmp_path, postgres_cluster.url(), table))
    assert "'ip' has type inet" in text and "'m' has type money" in text and "::text" in text


def test_a_connection_dropped_mid_read_is_source_lost(postgres_cluster, tmp_path):
    table = unique_table("drop")
    postgres_cluster.sql(
        "crm",
        f"CREATE TABLE {table} AS SELECT g AS id FROM generate_series(1, 200000) g",
        # The server ends its own backend halfway through the stream.
        f"CREATE VIEW {table}_v AS SELECT id, CASE WHEN id = 150000 "
        f"THEN pg_terminate_backend(pg_backend_pid()) END AS gone FROM {table}",
    )
    ws = Workspace.open(write_pg_workspace(tmp_path, postgres_cluster.url(), f"{table}_v"))
    with pytest.raises(SourceLost) as err:
        ws.connect()
    text = str(err.value)
    assert text.startswith(f"postgres 127.0.0.1:{postgres_cluster.port}/crm {table}_v")
    assert "connection was lost" in text and "nothing was sent" in text


def test_without_the_driver_a_postgres_workspace_says_how_to_install_it(sample_pair, monkeypatch):
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql", None)
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql.dbapi", None)
    text = _open_error(sample_pair[1])
    assert "pip install 'segsync[postgres]'" in text
    assert Workspace.open(sample_pair[0]).count_segments()  # files need no driver


# -- refresh fingerprints --------------------------------------------------------------------


def _scans(cluster: Cluster, table: str) -> int:
    rows = cluster.sql(
        "crm",
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
        f"WHERE relname = '{table}'",
    )
    return int(rows[0][0])


def test_refresh_fingerprint_sees_writes_without_reading_the_table(postgres_cluster, tmp_path):
    table = unique_table("fp")
    postgres_cluster.sql("crm", f"CREATE TABLE {table} AS SELECT 1 AS id")
    folder = write_pg_workspace(tmp_path, postgres_cluster.url(), table)
    source = configured_source(folder)
    assert isinstance(source, PostgresSource)
    wait_for(lambda: refresh_fingerprint(source) == refresh_fingerprint(source))
    scans = _scans(postgres_cluster, table)
    first = refresh_fingerprint(source)
    assert first == refresh_fingerprint(source) == source_fingerprint(source)
    assert first["path"] == str(source) and "unreachable" not in first
    assert _scans(postgres_cluster, table) == scans  # counters only, never the rows
    postgres_cluster.sql("crm", f"UPDATE {table} SET id = 2")
    assert wait_for(lambda: refresh_fingerprint(source) != first)
    second = refresh_fingerprint(source)
    postgres_cluster.sql("crm", f"TRUNCATE {table}")
    assert wait_for(lambda: refresh_fingerprint(source) != second)


def test_a_view_is_fingerprinted_through_the_tables_it_reads(postgres_cluster, tmp_path):
    table = unique_table("base")
    postgres_cluster.sql(
        "crm",
        f"CREATE TABLE {table} AS SELECT 1 AS id",
        f"CREATE VIEW {table}_v AS SELECT id FROM {table}",
    )
    source = configured_source(write_pg_workspace(tmp_path, postgres_cluster.url(), f"{table}_v"))
    first = refresh_fingerprint(source)
    assert first["relations"] == 2
    postgres_cluster.sql("crm", f"INSERT INTO {table} VALUES (5)")
    assert wait_for(lambda: refresh_fingerprint(source) != first)


def test_an_unreachable_server_is_a_fingerprint_of_its_own(tmp_path):
    url = f"postgresql://segsync@127.0.0.1:{free_port()}/crm"
    source = configured_source(write_pg_workspace(tmp_path, url, "public.profiles"))
    assert "unreachable" in refresh_fingerprint(source)


def test_the_app_names_a_postgres_source_without_connecting(tmp_path):
    from tui.local_backend import LocalBackend

    url = f"postgresql://segsync@127.0.0.1:{free_port()}/crm"  # nothing listens there
    folder = write_pg_workspace(tmp_path / "crm_ws", url, "public.profiles")
    backend = LocalBackend(workspace=folder, state_dir=tmp_path / "state")
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert backend.workspace_label == f"crm_ws · postgres 127.0.0.1:{port}/crm public.profiles"


def test_an_interrupt_stops_a_read_still_waiting_for_the_server(postgres_cluster, tmp_path):
    import threading
    import time

    from store.workspace import QueryInterrupted

    table = unique_table("slow")
    postgres_cluster.sql(
        "crm",  # 3,000 rows at 10 ms each: the driver waits ~30 s for its first batch
        f"CREATE VIEW {table} AS SELECT g AS id, pg_sleep(0.01)::text AS pause "
        "FROM generate_series(1, 3000) g",
    )
    ws = Workspace.open(write_pg_workspace(tmp_path, postgres_cluster.url(), table))
    outcome: list[BaseException | str] = []

    def read() -> None:
        try:
            ws.connect().close()
            outcome.append("loaded")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    time.sleep(1.0)
    stopped_at = time.monotonic()
    ws.interrupt()
    thread.join(20)
    assert not thread.is_alive()
    assert time.monotonic() - stopped_at < 10
    assert len(outcome) == 1 and isinstance(outcome[0], QueryInterrupted), outcome
    active = postgres_cluster.sql(
        "crm", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'segsync'"
    )
    assert wait_for(
        lambda: (
            active == [(0,)]
            or postgres_cluster.sql(
                "crm", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'segsync'"
            )
            == [(0,)]
        )
    )


def test_no_password_in_messages_or_a_tracebacks_locals(postgres_cluster, tmp_path, monkeypatch):
    secret = "Wr0ng-but-Secret"
    monkeypatch.setenv("CRM_PW", secret)
    folder = write_pg_workspace(
        tmp_path, postgres_cluster.url(LOCKED_USER), "public.profiles", password_env="CRM_PW"
    )
    with pytest.raises(WorkspaceError) as info:
        Workspace.open(folder)
    seen: list[str] = []
    exc: BaseException | None = info.value
    while exc is not None:  # the whole chain, suppressed context included
        seen.append(str(exc))
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename != __file__:  # this test holds the secret
                seen.extend(repr(v) for v in tb.tb_frame.f_locals.values())
            tb = tb.tb_next
        exc = exc.__context__
    assert seen and not [s for s in seen if secret in s]
