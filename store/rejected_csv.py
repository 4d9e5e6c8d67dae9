"""A run's rejected rows as CSV, safe to open in a spreadsheet.

The rows hold whatever the profile file held, so a value such as
`=HYPERLINK(...)` would run as a formula when the CSV is opened in Excel or
Sheets (CSV injection). Cells that start with a formula character get a
leading apostrophe, as OWASP recommends; the command line and the TUI both
write through here so the file is the same from either.

The rows are personal data, so the file is written like every other such file
of segsync: owner-only (0600, whatever the umask), complete or not at all
(temp file renamed into place, which also replaces a link instead of writing
through it).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from store.atomic import write_atomic

HEADER = ("batch", "key", "email", "reason", "source")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """The cell's text, neutralised when a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_rejected_csv(rows: Iterable[Any], path: Path) -> int:
    """Write rejected-row records (seq, key, email, reason, source), mode 0600;
    return how many."""
    written = 0

    def write(raw: BinaryIO) -> None:
        nonlocal written
        handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        try:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            for row in rows:
                writer.writerow(
                    [safe_cell(v) for v in (row.seq, row.key, row.email, row.reason, row.source)]
                )
                written += 1
            handle.flush()
        finally:
            handle.detach()  # the caller closes and fsyncs the file itself

    write_atomic(Path(path), write)
    return written
