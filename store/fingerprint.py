"""A cheap fingerprint of a workspace's profile source, for drift checks.

`apply` refuses a plan whose profiles changed since it was computed, and a
scheduled sync runs "on refresh" when they change: both must tell in
milliseconds, so this reads file metadata (size and modification time, in
nanoseconds), never the rows. A DuckDB source is fingerprinted through its
database file, which any write changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def source_fingerprint(source: Path) -> dict[str, Any]:
    """``{path, size, mtime_ns}`` of the source file, or ``{path, missing: true}``."""
    path = Path(source)
    try:
        st = os.stat(path)
    except OSError:
        return {"path": str(path), "missing": True}
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
