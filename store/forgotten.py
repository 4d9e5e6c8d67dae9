"""People erased with `segsync forget`: kept only as salted digests.

Erasure must leave no plain copy of an address in the state folder, yet later
exports must still recognise the person while the profile source holds them
(decided: a forgotten person is refused by every later export, counted as
``forgotten``, for as long as the source still has them; once a plan finds
a source no longer has them, that source *releases* the digest, so someone
who signs up there again later is treated as new and is sent only with
consent, like anyone). Release is per profile source: one state folder can
serve several workspaces, and a workspace that never held the person must
not make another, which still holds them, send them again. Digests are kept
(a salted hash names nobody without the salt).

The digest is SHA-256 over a per-state-folder random salt and the normalised
address, so the list cannot be matched against addresses from elsewhere
without the salt; DuckDB computes the same digest in SQL (`digest_sql`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from store.atomic import write_atomic

if TYPE_CHECKING:
    from store.workspace import Workspace

SCHEMA = pa.schema([("digest", pa.string()), ("released", pa.list_(pa.string()))])


def _salt_file(state: Path) -> Path:
    return Path(state) / "forget.salt"


def salt(state: Path) -> str:
    """The state folder's salt, made (owner-only) on first use."""
    path = _salt_file(state)
    if not path.is_file():
        value = secrets.token_hex(16)
        write_atomic(path, lambda handle: handle.write(value.encode()))
    return path.read_text().strip()


def digest(state_salt: str, email: str) -> str:
    """The salted digest of one (normalised) address."""
    normalised = email.strip().lower()
    return hashlib.sha256((state_salt + normalised).encode()).hexdigest()


def digest_sql(state_salt: str, email_expr: str) -> str:
    """The same digest in DuckDB SQL over an already normalised email expression."""
    literal = "'" + state_salt.replace("'", "''") + "'"
    return f"sha256({literal} || {email_expr})"


def _file(state: Path) -> Path:
    return Path(state) / "forgotten.parquet"


def _read(state: Path) -> pa.Table:
    """Every digest with the sources that released it (a file from before
    release was per source has no ``released``: nobody released anything)."""
    path = _file(state)
    if not path.is_file():
        return SCHEMA.empty_table()
    table = pq.read_table(path)
    if "released" not in table.column_names:
        released = pa.array([[]] * table.num_rows, pa.list_(pa.string()))
        table = table.append_column("released", released)
    return table.select(["digest", "released"]).cast(SCHEMA)


def _write(state: Path, table: pa.Table) -> None:
    path = _file(state)
    if table.num_rows == 0:
        path.unlink(missing_ok=True)
        return
    write_atomic(path, lambda handle: pq.write_table(table.cast(SCHEMA), handle))


def load(state: Path, source: str | None = None) -> pa.Array:
    """Digests of forgotten people (empty when nobody was forgotten); with
    ``source``, only those that source has not released."""
    rows = _read(state).to_pylist()
    return pa.array(
        sorted({r["digest"] for r in rows if source is None or source not in r["released"]}),
        pa.string(),
    )


def add(state: Path, new: list[str]) -> None:
    """Forget these digests everywhere (again: a release is undone)."""
    kept = [r for r in _read(state).to_pylist() if r["digest"] not in set(new)]
    fresh = [{"digest": d, "released": []} for d in sorted(set(new))]
    _write(state, pa.Table.from_pylist(kept + fresh, schema=SCHEMA))


def exists(state: Path) -> bool:
    return os.path.isfile(_file(state))


def release(state: Path, workspace: Workspace, email_column: str) -> int:
    """Release, for this workspace's source, the digests of forgotten people it
    no longer holds; returns how many it still holds, for a warning."""
    source = workspace.source_label
    digests = load(state, source)
    if len(digests) == 0:
        return 0
    from store.workspace import quote_ident

    state_salt = salt(state)
    email = f"NULLIF(lower(trim(CAST({quote_ident(email_column)} AS VARCHAR))), '')"
    # Only the email column is read (a Postgres source transfers no other).
    with workspace.connect(columns=[email_column]) as con:
        con.register("forgotten", pa.table({"digest": digests}))
        rows = con.execute(
            f"SELECT DISTINCT {digest_sql(state_salt, email)} AS d FROM profiles "
            "WHERE d IN (SELECT digest FROM forgotten)"
        ).fetchall()
    present = {r[0] for r in rows}
    gone = set(digests.to_pylist()) - present
    if gone:
        table = _read(state).to_pylist()
        for row in table:
            if row["digest"] in gone:
                row["released"] = sorted({*row["released"], source})
        _write(state, pa.Table.from_pylist(table, schema=SCHEMA))
    return len(present)
