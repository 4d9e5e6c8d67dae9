"""An independent search of a state folder for an address, for the erasure tests.

Written apart from store/redact.py on purpose: the test must not trust the
code it checks. Every file is searched byte for byte (the address, its upper
case, and any case); Parquet and Arrow files are also decoded (a compressed
page hides text from a byte search) and SQLite files dumped as SQL.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pyarrow.ipc as ipc
import pyarrow.parquet as pq


def all_files(state: Path) -> list[Path]:
    found = []
    for folder, _dirs, files in os.walk(state):
        found.extend(Path(folder) / name for name in files)
    return sorted(found)


def holders(state: Path, email: str) -> dict[Path, str]:
    """Files that hold ``email`` in any form, with how it was found."""
    pattern = re.compile(re.escape(email.encode()), re.IGNORECASE)
    found: dict[Path, str] = {}
    for path in all_files(state):
        data = path.read_bytes()
        if email.encode() in data or email.upper().encode() in data or pattern.search(data):
            found[path] = "bytes"
            continue
        text = _decoded(path, data)
        if text is not None and email.lower() in text.lower():
            found[path] = "decoded"
    return found


def _decoded(path: Path, data: bytes) -> str | None:
    if path.suffix == ".parquet":
        return str(pq.read_table(path).to_pylist()) + str(pq.read_metadata(path).metadata)
    if path.suffix == ".arrow":
        with ipc.open_file(path) as reader:
            return str(reader.read_all().to_pylist())
    if data.startswith(b"SQLite format 3\x00"):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return "\n".join(con.iterdump())
        finally:
            con.close()
    return None
