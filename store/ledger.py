"""The ledger: who segsync believes is on a SendGrid list, and what it sent them.

Why it is keyed by account and list, versioned and checked:

- Keyed by the list (its API host and list id), never by the destination row:
  a destination edited to point at another list, or a history emptied so a new
  destination reuses an old id, must not inherit a ledger that describes some
  other list (it made an incremental export send nothing and report success).
- Versioned: each write bumps a counter kept in the file's own metadata, so a
  plan can record which ledger it was computed from and `apply` can tell when
  another run changed it since.
- Checked before it is trusted (`distrust_reason`): a list emptied, or holding
  far fewer contacts than the ledger names, means the ledger is stale; the
  caller plans as if there were none and says so.
- The payload digest is DuckDB's `hash()`, which promises no stability across
  DuckDB releases, so the file records the DuckDB version that computed it;
  under another version the digests are unknown (`digests_comparable`) and an
  incremental run sends everyone once rather than trusting a changed hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from store.atomic import write_atomic
from store.paths import _private_dir, ledger_name

LEDGER_SCHEMA = pa.schema([("email", pa.string()), ("hash", pa.uint64())])
# The digest's recipe: DuckDB hash() over the email, payload values and field keys
# (store.sql_plan.PlanSpec.payload_hash). Bump the suffix if that recipe changes.
DIGEST = "duckdb-hash/v1"
# A ledger naming more than twice the contacts the list holds is not trusted.
STALE_RATIO = 0.5

_META = {
    "version": b"segsync.ledger_version",
    "digest": b"segsync.digest",
    "engine": b"segsync.engine",
    "list_id": b"segsync.list_id",
    "base_url": b"segsync.base_url",
}


def ledger_file(state: Path, base_url: str, list_id: str) -> Path:
    """The ledger of one list on one SendGrid API host (the file may not exist;
    its folder is made, owner-only, for the writer)."""
    return _private_dir(Path(state) / "ledgers") / ledger_name(base_url, list_id)


def legacy_ledger_file(state: Path, destination_id: int) -> Path:
    """Where segsync before the changesets kept a destination's ledger."""
    return Path(state) / "ledgers" / f"destination-{destination_id}.parquet"


@dataclass(frozen=True)
class LedgerInfo:
    """What a ledger file says about itself (not its rows)."""

    path: Path
    rows: int
    version: int
    digest: str
    engine: str
    list_id: str
    base_url: str

    @property
    def digests_comparable(self) -> bool:
        """Whether this segsync computes payload digests the way the file's did."""
        return self.digest == DIGEST and self.engine == duckdb.__version__


def read_info(path: Path) -> LedgerInfo | None:
    """The ledger's metadata, or None if there is no ledger yet.

    A file written before ledgers were versioned reads as version 0 with an
    unknown digest (so its digests are never compared).
    """
    path = Path(path)
    if not path.is_file():
        return None
    meta = pq.read_metadata(path)
    kv = meta.metadata or {}

    def get(name: str) -> str:
        value: bytes = kv.get(_META[name], b"")
        return value.decode()

    return LedgerInfo(
        path=path,
        rows=meta.num_rows,
        version=int(get("version") or 0),
        digest=get("digest") or "unknown",
        engine=get("engine") or "unknown",
        list_id=get("list_id"),
        base_url=get("base_url"),
    )


def distrust_reason(info: LedgerInfo | None, list_contacts: int | None) -> str | None:
    """Why the ledger should not be trusted against the list as SendGrid shows
    it now, or None. ``list_contacts`` None: the list could not be asked (a
    preview without a key), so nothing is known against the ledger."""
    if info is None or list_contacts is None or info.rows == 0:
        return None
    if list_contacts == 0:
        return (
            f"the list is empty but segsync's ledger names {info.rows:,} people on it "
            "(emptied in SendGrid?)"
        )
    if list_contacts < info.rows * STALE_RATIO:
        return (
            f"the list holds {list_contacts:,} contacts but segsync's ledger names "
            f"{info.rows:,} (people removed in SendGrid?)"
        )
    return None


def write_ledger(
    path: Path,
    table: pa.Table,
    *,
    previous: LedgerInfo | None,
    list_id: str,
    base_url: str,
) -> LedgerInfo:
    """Write the ledger atomically with the next version number; returns its info."""
    version = (previous.version if previous else 0) + 1
    table = table.cast(LEDGER_SCHEMA).replace_schema_metadata(
        {
            _META["version"]: str(version).encode(),
            _META["digest"]: DIGEST.encode(),
            _META["engine"]: duckdb.__version__.encode(),
            _META["list_id"]: list_id.encode(),
            _META["base_url"]: base_url.encode(),
        }
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda handle: pq.write_table(table, handle))
    info = read_info(path)
    assert info is not None
    return info
