"""People erased with `segsync forget`: kept only as salted digests.

Erasure must leave no plain copy of an address in the state folder, yet later
exports must still recognise the person while the profile source holds them
(decided: a forgotten person is refused by every later export, counted as
``forgotten``, for as long as the source still has them; once a plan finds
the source no longer has them, the digest is dropped, so someone who signs
up again later is treated as new and is sent only with consent, like anyone).

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

SCHEMA = pa.schema([("digest", pa.string())])


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


def load(state: Path) -> pa.Array:
    """Digests of forgotten people (empty when nobody was forgotten)."""
    path = _file(state)
    if not path.is_file():
        return pa.array([], pa.string())
    return pq.read_table(path).column("digest").combine_chunks()


def save(state: Path, digests: pa.Array) -> None:
    """Replace the list (owner-only, atomic); an empty list removes the file."""
    path = _file(state)
    unique = pa.array(sorted(set(digests.to_pylist())), pa.string())
    if len(unique) == 0:
        path.unlink(missing_ok=True)
        return
    table = pa.table({"digest": unique}, schema=SCHEMA)
    write_atomic(path, lambda handle: pq.write_table(table, handle))


def add(state: Path, new: list[str]) -> None:
    save(state, pa.concat_arrays([load(state), pa.array(new, pa.string())]))


def exists(state: Path) -> bool:
    return os.path.isfile(_file(state))


def prune(state: Path, workspace: Workspace, email_column: str) -> int:
    """Drop the digests of forgotten people the profile source no longer holds
    (so someone who signs up again later is new, sent only with consent);
    returns how many the source still holds, for a warning."""
    digests = load(state)
    if len(digests) == 0:
        return 0
    from store.workspace import quote_ident

    state_salt = salt(state)
    email = f"NULLIF(lower(trim(CAST({quote_ident(email_column)} AS VARCHAR))), '')"
    with workspace.connect() as con:
        con.register("forgotten", pa.table({"digest": digests}))
        rows = con.execute(
            f"SELECT DISTINCT {digest_sql(state_salt, email)} AS d FROM profiles "
            "WHERE d IN (SELECT digest FROM forgotten)"
        ).fetchall()
    present = [r[0] for r in rows]
    if len(present) != len(digests):
        save(state, pa.array(present, pa.string()))
    return len(present)
