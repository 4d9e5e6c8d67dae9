"""A cheap fingerprint of a workspace's profile source, for drift checks.

`apply` refuses a plan whose profiles changed since it was computed, and a
scheduled sync runs "on refresh" when they change: both must tell in
milliseconds, so this reads file metadata (size and modification time, in
nanoseconds), never the rows. A DuckDB source is fingerprinted through its
database file, which any write changes. A PostgreSQL source is fingerprinted by
the server's statistics counters of its table (``PostgresSource.fingerprint``):
one small catalog query, never a read of the table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from store.postgres_source import PostgresSource

# The Postgres module (its dataclasses, hashlib, urllib) and hashlib are imported
# only by the functions that need them: the app's header calls configured_source
# before its first paint, and most workspaces are files.


def configured_source(workspace: str | Path) -> Path | PostgresSource:
    """The profile source a workspace folder's segments.toml names, read from the
    file alone (no DuckDB, no connection): what `--on-refresh` syncs watch.
    Raises OSError, KeyError, ValueError or TOMLDecodeError when it cannot tell."""
    import tomllib

    root = Path(workspace)
    config = tomllib.loads((root / "segments.toml").read_text(encoding="utf-8"))
    profiles = config["profiles"]
    if isinstance(profiles, dict) and "postgres" in profiles:
        from store.postgres_source import PostgresConfigError, PostgresSource

        try:
            return PostgresSource.from_config(profiles)
        except PostgresConfigError as err:
            raise ValueError(str(err)) from None
    return (root / str(profiles["path"])).resolve()


def source_fingerprint(source: Path | PostgresSource) -> dict[str, Any]:
    """``{path, size, mtime_ns}`` of the source file, or ``{path, missing: true}``;
    for Postgres, its statistics counters (``{path: label, changes, stats}``)."""
    from store.postgres_source import PostgresSource

    if isinstance(source, PostgresSource):
        return source.fingerprint()
    path = Path(source)
    try:
        st = os.stat(path)
    except OSError:
        return {"path": str(path), "missing": True}
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


# Parquet ends with the footer (file metadata), its length (4 bytes, little
# endian) and the magic "PAR1"; a file still being written has no magic yet.
_PARQUET_MAGIC = b"PAR1"
_PARQUET_FOOTER_MAX = 64 * 1024 * 1024  # a larger "length" means a torn or foreign file
# A DuckDB file starts with a 4 KiB main header followed by two 4 KiB database
# headers; every checkpoint writes the next iteration into one of them.
_DUCKDB_HEADERS = (4096, 8192)


def refresh_fingerprint(source: Path | PostgresSource) -> dict[str, Any]:
    """What tells a refreshed profile source from the last one, read in a few
    kilobytes: `source_fingerprint` plus a digest of the Parquet footer (the
    schema, row groups and their statistics) or of a DuckDB file's checkpoint
    headers and write-ahead log. A sync "on refresh" compares this every minute.

    A Parquet file without its trailing magic is being written: the result says
    ``incomplete`` and a caller waits rather than export half a refresh.
    A Postgres source is its statistics counters (see ``source_fingerprint``).
    """
    from store.postgres_source import PostgresSource

    if isinstance(source, PostgresSource):
        return source.fingerprint()
    path = Path(source)
    base = source_fingerprint(path)
    if base.get("missing"):
        return base
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return {**base, **_parquet_footer(path)}
        if suffix == ".duckdb":
            return {**base, **_duckdb_checkpoint(path)}
    except OSError as exc:
        return {**base, "unreadable": exc.strerror or str(exc)}
    return base


def _parquet_footer(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size < 12:
            return {"incomplete": True}
        handle.seek(size - 8)
        tail = handle.read(8)
        length = int.from_bytes(tail[:4], "little")
        if tail[4:] != _PARQUET_MAGIC or not 0 < length <= min(size - 12, _PARQUET_FOOTER_MAX):
            return {"incomplete": True}
        handle.seek(size - 8 - length)
        footer = handle.read(length)
    from hashlib import sha256

    return {"footer": sha256(footer).hexdigest()}


def _duckdb_checkpoint(path: Path) -> dict[str, Any]:
    from hashlib import sha256

    digest = sha256()
    with path.open("rb") as handle:
        for offset in _DUCKDB_HEADERS:
            handle.seek(offset)
            digest.update(handle.read(4096))
    out: dict[str, Any] = {"checkpoint": digest.hexdigest()}
    wal = path.with_name(path.name + ".wal")
    try:
        st = os.stat(wal)
    except OSError:
        return out
    out["wal"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return out
