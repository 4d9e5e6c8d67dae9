"""The refresh fingerprint: cheap (a few kilobytes), and it sees a refresh
that size and mtime alone would miss (a copy that keeps the old mtime)."""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from store.fingerprint import refresh_fingerprint, source_fingerprint


def test_a_parquet_rewrite_with_the_same_size_and_mtime_is_seen_by_its_footer(tmp_path):
    path = tmp_path / "profiles.parquet"
    pq.write_table(pa.table({"score": [1, 2, 3]}), path)
    before = refresh_fingerprint(path)
    stat = path.stat()
    pq.write_table(pa.table({"score": [7, 8, 9]}), path)  # same size: the values differ
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # e.g. `cp -p`, `rsync -t`
    assert path.stat().st_size == stat.st_size
    assert source_fingerprint(path) == {k: before[k] for k in ("path", "size", "mtime_ns")}
    after = refresh_fingerprint(path)
    assert after["footer"] != before["footer"]


def test_a_duckdb_write_changes_its_checkpoint(tmp_path):
    path = tmp_path / "crm.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE profiles AS SELECT 1 AS id")
    first = refresh_fingerprint(path)
    assert "checkpoint" in first and refresh_fingerprint(path) == first  # stable when idle
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO profiles VALUES (2)")
    assert refresh_fingerprint(path)["checkpoint"] != first["checkpoint"]


def test_missing_and_torn_files(tmp_path):
    assert refresh_fingerprint(tmp_path / "nope.parquet")["missing"] is True
    torn = tmp_path / "torn.parquet"
    torn.write_bytes(b"PAR1" + b"\0" * 100)
    assert refresh_fingerprint(torn)["incomplete"] is True
    csv = tmp_path / "p.csv"
    csv.write_text("email\na@example.com\n")
    assert set(refresh_fingerprint(csv)) == {"path", "size", "mtime_ns"}
