"""Exports from a PostgreSQL source through the command line to the emulator:
exact against the independently computed answer of tests/engine/conftest.py,
and a connection lost mid-read fails the run without sending anyone."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from store.fingerprint import configured_source, refresh_fingerprint
from tests.engine.conftest import SEGMENTS_TOML, expected_emails, make_rows, run_cli
from tests.postgres.cluster import Cluster, wait_for
from tests.postgres.conftest import unique_table, write_pg_workspace
from tui.cli import main

# A real PostgreSQL cluster per session: scenario tests (`-m "not slow"` skips them).
pytestmark = pytest.mark.slow


def _load(cluster: Cluster, table: str, rows: list[dict]) -> None:
    import adbc_driver_postgresql.dbapi as pg

    data = pa.Table.from_pylist(rows)
    with pg.connect(cluster.url(), autocommit=True) as conn, conn.cursor() as cur:
        cur.adbc_ingest(table, data, mode="create")


def _setup(
    cluster: Cluster, emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str
) -> str:
    segments = "[segments." + SEGMENTS_TOML.split("[segments.", 1)[1]
    folder = write_pg_workspace(tmp_path / "ws", cluster.url(), table, segments, key="customer_id")
    list_id = str(emulator.state.create_list("newsletter")["id"])
    monkeypatch.setenv("SEGSYNC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SEGSYNC_WORKSPACE", str(folder))
    monkeypatch.setenv("DEST_KEY", emulator.api_key)
    add = ("destinations", "add", "news", "--list-id", list_id, "--api-key-env", "DEST_KEY")
    assert run_cli(main, *add, "--base-url", emulator.url, "--agree") == 0
    mapping = ("email=email", "first_name=first_name", "last_name=last_name", "country=country")
    assert run_cli(main, "map", "news", *mapping, "--consent-column", "email_opt_in") == 0
    return list_id


def test_an_export_from_postgres_puts_exactly_the_expected_contacts_on_the_list(
    postgres_cluster, emulator, tmp_path, monkeypatch, capsys
):
    rows = make_rows()
    table = unique_table("export")
    _load(postgres_cluster, table, rows)
    list_id = _setup(postgres_cluster, emulator, tmp_path, monkeypatch, table)
    capsys.readouterr()
    argv = ("export", "news", "--segment", "germany", "--segment", "big_spenders", "--json")
    code = run_cli(main, *argv)
    summary = orjson.loads(capsys.readouterr().out)
    expected = expected_emails(rows, ["germany", "big_spenders"])
    assert code == 0, summary
    assert summary["status"] == "succeeded"
    assert emulator.state.list_members(list_id) == expected
    assert summary["counts"]["sent"] == summary["counts"]["to_send"] == len(expected)


def test_a_connection_lost_mid_read_fails_the_export_and_sends_no_one(
    postgres_cluster, emulator, tmp_path, monkeypatch, capsys
):
    rows = make_rows()
    table = unique_table("lost")
    _load(postgres_cluster, table, rows)
    postgres_cluster.sql(
        "crm",
        f"CREATE VIEW {table}_v AS SELECT *, CASE WHEN customer_id = 2000 "
        f"THEN pg_terminate_backend(pg_backend_pid()) END AS gone FROM {table}",
    )
    list_id = _setup(postgres_cluster, emulator, tmp_path, monkeypatch, f"{table}_v")
    capsys.readouterr()
    code = run_cli(main, "export", "news", "--segment", "germany")
    err = capsys.readouterr().err
    assert code == 1
    assert "connection was lost" in err and f"{table}_v" in err and "Traceback" not in err
    assert emulator.state.list_members(list_id) == set()
    assert emulator.state.stats()["contacts_received"] == 0
    run_cli(main, "runs", "--json")
    runs = orjson.loads(capsys.readouterr().out)
    assert not [r for r in runs if r.get("status") == "succeeded"]


def test_a_connection_lost_mid_read_is_one_line_without_unexpected(
    postgres_cluster, emulator, tmp_path, monkeypatch, capsys
):
    table = unique_table("lostline")
    _load(postgres_cluster, table, make_rows())
    postgres_cluster.sql(
        "crm",
        f"CREATE VIEW {table}_v AS SELECT *, CASE WHEN customer_id = 2000 "
        f"THEN pg_terminate_backend(pg_backend_pid()) END AS gone FROM {table}",
    )
    _setup(postgres_cluster, emulator, tmp_path, monkeypatch, f"{table}_v")
    capsys.readouterr()
    assert run_cli(main, "export", "news", "--segment", "germany") == 1
    err = capsys.readouterr().err.strip()
    assert "unexpected" not in err and "report it" not in err
    errors = [line for line in err.splitlines() if line.startswith("segsync:")]
    assert errors == [err.splitlines()[-1]]  # progress ("planning"), then one line
    assert errors[0].startswith("segsync: postgres 127.0.0.1:")


def test_sample_loads_postgres_and_segments_names_the_source(
    postgres_cluster, tmp_path, monkeypatch, capsys
):
    table = f"public.{unique_table('cli')}"
    out = tmp_path / "ws"
    argv = ("sample", "--rows", "3000", "--out", str(out), "--postgres", postgres_cluster.url())
    assert run_cli(main, *argv, "--table", table) == 0
    assert "password" not in (out / "segments.toml").read_text().split("#")[0]
    capsys.readouterr()
    assert run_cli(main, "segments", "--workspace", str(out)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"profiles: postgres 127.0.0.1:{postgres_cluster.port}/crm {table}"
    assert len(lines) == 8 and "high_value" in lines[1]
    bad = postgres_cluster.url().replace("segsync@", "segsync:pw@")
    assert run_cli(main, "sample", "--out", str(tmp_path / "x"), "--postgres", bad) == 2
    assert "holds a password" in capsys.readouterr().err


def test_apply_refuses_a_plan_whose_table_was_written_to_since(
    postgres_cluster, emulator, tmp_path, monkeypatch, capsys
):
    table = unique_table("drift")
    _load(postgres_cluster, table, make_rows())
    list_id = _setup(postgres_cluster, emulator, tmp_path, monkeypatch, table)
    capsys.readouterr()
    assert run_cli(main, "plan", "news", "--segment", "germany", "--json") == 0
    plan_id = orjson.loads(capsys.readouterr().out)["plan"]
    postgres_cluster.sql("crm", f"UPDATE {table} SET country = 'FR' WHERE customer_id = 0")
    source = configured_source(tmp_path / "ws")
    before = refresh_fingerprint(source)["stats"]
    wait_for(lambda: refresh_fingerprint(source)["stats"] != before)  # stats settle
    code = run_cli(main, "apply", str(plan_id), "--yes")
    err = capsys.readouterr().err
    assert code == 2 and "profile source" in err, err
    assert emulator.state.list_members(list_id) == set()
