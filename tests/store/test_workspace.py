"""Opening workspaces, counting segments, and the locked-down DuckDB connection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store.records import Column
from store.workspace import PredicateError, Workspace, WorkspaceError, check_predicate

from .conftest import SEGMENTS

# Counted by hand from fixtures/profiles.csv (21 rows).
EXPECTED_COUNTS = {"everyone": 21, "us": 7, "big_spenders": 4}


def test_each_source_type_opens_with_columns_and_types(
    make_workspace: Callable[..., Path], source_kind: str
) -> None:
    ws = Workspace.open(make_workspace(source_kind))
    cols = ws.columns()
    assert [c.name for c in cols] == [
        "customer_id", "email", "first_name", "last_name", "country", "city",
        "email_opt_in", "lifetime_value", "signup_date", "tier",
    ]  # fmt: skip
    assert Column("customer_id", "BIGINT") in cols
    assert Column("signup_date", "DATE") in cols
    assert [s.name for s in ws.segments()] == ["everyone", "us", "big_spenders", "broken"]
    assert ws.segment("everyone").description == "All fixture rows"


def test_workspace_opens_from_the_toml_path_too(make_workspace: Callable[..., Path]) -> None:
    folder = make_workspace("parquet")
    ws = Workspace.open(folder / "segments.toml")
    assert ws.root == folder.resolve()


def test_tsv_source(make_workspace: Callable[..., Path]) -> None:
    ws = Workspace.open(make_workspace("tsv"))
    counts = {c.segment: c.count for c in ws.count_segments()}
    assert counts["everyone"] == 21


def test_bad_predicate_reported_by_name_others_counted(
    make_workspace: Callable[..., Path], source_kind: str
) -> None:
    ws = Workspace.open(make_workspace(source_kind))
    results = {c.segment: c for c in ws.count_segments()}
    assert {n: results[n].count for n in EXPECTED_COUNTS} == EXPECTED_COUNTS
    assert all(results[n].error is None for n in EXPECTED_COUNTS)
    broken = results["broken"]
    assert broken.count is None
    assert "no_such_column" in broken.error  # DuckDB's binder message


def test_runtime_error_in_one_predicate_does_not_hide_the_others(
    make_workspace: Callable[..., Path],
) -> None:
    segments = SEGMENTS + '\n[segments.bad_cast]\nwhere = "CAST(first_name AS INTEGER) > 1"\n'
    ws = Workspace.open(make_workspace("csv", segments))
    results = {c.segment: c for c in ws.count_segments()}
    assert results["us"].count == 7
    assert results["bad_cast"].count is None
    assert "Conversion Error" in results["bad_cast"].error


def test_union_count_is_distinct_normalised_emails(make_workspace: Callable[..., Path]) -> None:
    ws = Workspace.open(make_workspace("csv"))
    # us: 30 and 3 are the same bob; 20 and 21: 21 has no email -> bob, frank, gina, long, bad
    assert ws.union_count(["us"]) == 5
    # everyone: 21 rows, minus 3 empty (6, 7 blank, 21), minus ana x2 and bob x1 repeats
    assert ws.union_count(["everyone", "us"]) == 21 - 3 - 2 - 1


def test_unknown_segment_is_a_clear_error(make_workspace: Callable[..., Path]) -> None:
    ws = Workspace.open(make_workspace("csv"))
    with pytest.raises(WorkspaceError, match="no segment named 'nope'"):
        ws.union_count(["nope"])


# ----------------------------------------------------------------- errors at open


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="does not exist"):
        Workspace.open(tmp_path / "nowhere")


def test_missing_segments_file(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match=r"segments\.toml: segments file not found"):
        Workspace.open(tmp_path)


def test_toml_syntax_error_names_file_and_line(make_workspace: Callable[..., Path]) -> None:
    folder = make_workspace("csv")
    (folder / "segments.toml").write_text('[profiles]\npath = "profiles.csv"\nkey = \n')
    with pytest.raises(WorkspaceError, match=r"segments\.toml: invalid TOML.*line 3"):
        Workspace.open(folder)


def test_segment_without_where(make_workspace: Callable[..., Path]) -> None:
    folder = make_workspace("csv")
    (folder / "segments.toml").write_text(
        '[profiles]\npath = "profiles.csv"\n[segments.x]\ndescription = "no predicate"\n'
    )
    with pytest.raises(WorkspaceError, match="segment 'x' needs where"):
        Workspace.open(folder)


def test_missing_source_file(make_workspace: Callable[..., Path]) -> None:
    folder = make_workspace("csv")
    (folder / "profiles.csv").unlink()
    with pytest.raises(WorkspaceError, match=r"profiles\.csv: profile source file not found"):
        Workspace.open(folder)


def test_truncated_parquet(make_workspace: Callable[..., Path]) -> None:
    folder = make_workspace("parquet")
    data = (folder / "profiles.parquet").read_bytes()
    (folder / "profiles.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(WorkspaceError, match=r"profiles\.parquet: not a readable Parquet file"):
        Workspace.open(folder)


def test_csv_not_utf8(make_workspace: Callable[..., Path]) -> None:
    folder = make_workspace("csv")
    text = "customer_id,email,first_name\n1,a@example.com,Zoë\n"
    (folder / "profiles.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(WorkspaceError, match=r"profiles\.csv: the file is not UTF-8 encoded"):
        Workspace.open(folder)


def test_duplicate_csv_columns(make_workspace: Callable[..., Path]) -> None:
    folder = make_workspace("csv")
    (folder / "profiles.csv").write_text("customer_id,email,Email\n1,a@example.com,b\n")
    with pytest.raises(WorkspaceError, match="duplicate column name 'Email'"):
        Workspace.open(folder)


def test_duplicate_parquet_columns(make_workspace: Callable[..., Path]) -> None:
    folder = make_workspace("parquet")
    table = pa.table([pa.array([1]), pa.array(["a@example.com"]), pa.array(["x"])],
                     names=["customer_id", "email", "email"])  # fmt: skip
    pq.write_table(table, folder / "profiles.parquet")
    with pytest.raises(WorkspaceError, match="duplicate column name 'email'"):
        Workspace.open(folder)


def test_missing_duckdb_table(make_workspace: Callable[..., Path]) -> None:
    folder = make_workspace("duckdb")
    toml = (folder / "segments.toml").read_text().replace('"people"', '"nobody"')
    (folder / "segments.toml").write_text(toml)
    with pytest.raises(WorkspaceError, match=r"crm\.duckdb: .*nobody"):
        Workspace.open(folder)


def test_unknown_key_column(make_workspace: Callable[..., Path]) -> None:
    folder = make_workspace("csv")
    toml = (folder / "segments.toml").read_text().replace('key = "customer_id"', 'key = "id"')
    (folder / "segments.toml").write_text(toml)
    with pytest.raises(WorkspaceError, match="key column 'id'"):
        Workspace.open(folder)


# ------------------------------------------------------------------- lock-down


@pytest.mark.slow
@pytest.mark.parametrize(
    "predicate",
    [
        "true; COPY (SELECT 1) TO '{out}'",
        "true) UNION ALL SELECT * FROM profiles WHERE (true",
        "true) ORDER BY (1",
        "true; ATTACH '{out}' AS evil",
        "true; INSTALL httpfs",
    ],
)
def test_statements_smuggled_into_predicates_are_refused(
    make_workspace: Callable[..., Path], tmp_path: Path, predicate: str
) -> None:
    out = tmp_path / "stolen.csv"
    segments = SEGMENTS + f"\n[segments.evil]\nwhere = '''{predicate.format(out=out)}'''\n"
    ws = Workspace.open(make_workspace("csv", segments))
    result = {c.segment: c for c in ws.count_segments()}["evil"]
    assert result.count is None
    assert "single SQL expression" in result.error
    assert not out.exists()
    with pytest.raises(PredicateError, match="segment 'evil'"):
        ws.union_count(["evil"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "predicate",
    [
        "(SELECT count(*) FROM read_csv('{other}')) > 0",
        "(SELECT count(*) FROM read_text('{other}')) > 0",
        "(SELECT count(*) FROM glob('{folder}/*')) > 0",
        "(SELECT count(*) FROM duckdb_extensions()) > 0",
    ],
)
def test_predicates_cannot_read_other_files(
    make_workspace: Callable[..., Path], tmp_path: Path, predicate: str
) -> None:
    other = tmp_path / "secret.csv"
    other.write_text("password\nhunter2\n")
    where = predicate.format(other=other, folder=tmp_path)
    segments = SEGMENTS + f"\n[segments.snoop]\nwhere = '''{where}'''\n"
    ws = Workspace.open(make_workspace("csv", segments))
    result = {c.segment: c for c in ws.count_segments()}["snoop"]
    assert result.count is None
    assert "Permission Error" in result.error


def test_connection_is_locked(make_workspace: Callable[..., Path], tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.parquet"
    pq.write_table(pa.table({"email": ["a@example.com"]}), ledger)
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1]}), other)
    ws = Workspace.open(make_workspace("parquet"))
    with ws.connect(allowed_paths=[ledger]) as con:
        assert con.execute(f"SELECT count(*) FROM read_parquet('{ledger}')").fetchone() == (1,)
        assert con.execute("SELECT count(*) FROM profiles").fetchone() == (21,)
        refused = [
            f"SELECT * FROM read_parquet('{other}')",
            f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'",
            f"COPY profiles TO '{ws.source}' (FORMAT parquet, USE_TMP_FILE false)",
            f"ATTACH '{tmp_path / 'x.duckdb'}' AS x",
            "INSTALL httpfs",
            "LOAD httpfs",
            "SET enable_external_access = true",
            "SET allowed_paths = ['/']",
            "RESET lock_configuration",
        ]
        for sql in refused:
            with pytest.raises(duckdb.Error):
                con.execute(sql)
    assert not (tmp_path / "x.csv").exists()
    assert not (tmp_path / "x.duckdb").exists()


def test_duckdb_source_is_never_written(make_workspace: Callable[..., Path]) -> None:
    folder = make_workspace("duckdb")
    before = (folder / "crm.duckdb").read_bytes()
    ws = Workspace.open(folder)
    with ws.connect() as con:
        with pytest.raises(duckdb.Error):
            con.execute("INSERT INTO source.people (customer_id) VALUES (99)")
        with pytest.raises(duckdb.Error):
            con.execute(f"ATTACH '{ws.source}' AS again")
    ws.count_segments()
    assert (folder / "crm.duckdb").read_bytes() == before


def test_check_predicate_accepts_expressions_with_subqueries() -> None:
    with duckdb.connect() as con:
        check_predicate(con, "country IN (SELECT 'US') AND lifetime_value > 10 -- comment")
        with pytest.raises(PredicateError, match="empty"):
            check_predicate(con, "  ")
        with pytest.raises(PredicateError):
            check_predicate(con, "country = 'US' GROUP BY 1")
