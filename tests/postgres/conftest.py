"""Workspaces over tables of the session's PostgreSQL cluster."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from store.sample import SEGMENTS_TOML, generate_workspace, load_postgres
from tests.postgres.cluster import Cluster

SAMPLE_ROWS = 20_000
_names = itertools.count()


def write_pg_workspace(
    folder: Path, url: str, table: str, segments: str = "", **profiles: Any
) -> Path:
    """segments.toml over ``table`` at ``url`` (extra ``[profiles]`` keys as given)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f'postgres = "{url}"', f'table = "{table}"']
    lines += [
        f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in profiles.items()
    ]
    text = "[profiles]\n" + "\n".join(lines) + "\n\n" + segments
    (folder / "segments.toml").write_text(text, encoding="utf-8")
    return folder


def unique_table(prefix: str = "t") -> str:
    """A table name no other test uses (the cluster is shared by the session)."""
    return f"{prefix}_{next(_names)}"


SAMPLE_SEGMENTS = "[segments." + SEGMENTS_TOML.split("[segments.", 1)[1]


@pytest.fixture(scope="session")
def sample_pair(
    postgres_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The same synthetic profiles as a Parquet workspace and a Postgres one."""
    root = tmp_path_factory.mktemp("pair")
    parquet = generate_workspace(root / "parquet", SAMPLE_ROWS)
    load_postgres(postgres_cluster.url(), SAMPLE_ROWS, table="public.profiles")
    pg = write_pg_workspace(
        root / "pg", postgres_cluster.url(), "public.profiles", SAMPLE_SEGMENTS,
        key="customer_id",
    )  # fmt: skip
    return parquet, pg
