"""Workspaces built from the hand-made fixture in each supported source format."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

FIXTURE_CSV = Path(__file__).parent / "fixtures" / "profiles.csv"

SEGMENTS = """\
[profiles]
path = "{path}"
{table}key = "customer_id"

[segments.everyone]
description = "All fixture rows"
where = "true"

[segments.us]
where = "country = 'US'"

[segments.big_spenders]
where = "lifetime_value >= 100"

[segments.broken]
description = "References a column that does not exist"
where = "no_such_column > 1"
"""

SOURCE_KINDS = ("csv", "parquet", "duckdb")


def build_workspace(folder: Path, kind: str, segments: str = SEGMENTS) -> Path:
    """Write the fixture as ``kind`` (csv, tsv, parquet, duckdb) plus segments.toml."""
    folder.mkdir(parents=True, exist_ok=True)
    table = ""
    if kind == "csv":
        name = "profiles.csv"
        shutil.copy(FIXTURE_CSV, folder / name)
    else:
        name = {"tsv": "profiles.tsv", "parquet": "profiles.parquet", "duckdb": "crm.duckdb"}[kind]
        target = str(folder / name)
        with duckdb.connect() as con:
            con.execute(f"CREATE TABLE people AS SELECT * FROM read_csv('{FIXTURE_CSV}')")
            if kind == "parquet":
                con.execute(f"COPY people TO '{target}' (FORMAT parquet)")
            elif kind == "tsv":
                con.execute(f"COPY people TO '{target}' (FORMAT csv, HEADER, DELIMITER '\t')")
            else:
                con.execute(f"ATTACH '{target}' AS crm")
                con.execute("CREATE TABLE crm.people AS SELECT * FROM people")
        if kind == "duckdb":
            table = 'table = "people"\n'
    (folder / "segments.toml").write_text(segments.format(path=name, table=table), encoding="utf-8")
    return folder


@pytest.fixture(params=SOURCE_KINDS)
def source_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_workspace(tmp_path: Path) -> Callable[..., Path]:
    def make(kind: str = "csv", segments: str = SEGMENTS, name: str = "ws") -> Path:
        return build_workspace(tmp_path / name, kind, segments)

    return make
