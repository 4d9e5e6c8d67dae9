"""Which addresses each batch of a run carried, kept while the run can be resumed.

Contacts stream in the plan's own order (sorting a million payloads by email
would cost more than building them), so a batch is not an email range: to
resume a killed run without sending a confirmed batch twice, the engine writes
each batch's addresses here before the batch is sent, and a resumed run skips
exactly the addresses of the batches SendGrid confirmed. A batch whose file is
missing is simply sent again: an upsert of the same contacts is harmless.

One Arrow IPC file per batch under ``<state>/runs/<run id>/``, owner-only like
the rest of the state directory (the addresses are personal data); the folder
is removed once its run has finished for good.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.ipc as ipc

from store.atomic import write_atomic
from store.paths import run_dir

_SCHEMA = pa.schema([("email", pa.string())])


def _batch_file(folder: Path, seq: int) -> Path:
    return folder / f"batch-{seq}.arrow"


def _folder(state: Path, run_id: int) -> Path:
    """The run's folder, not created: readers and ``forget`` must not make one."""
    return Path(state) / "runs" / str(run_id)


def record(state: Path, run_id: int, seq: int, emails: pa.Array) -> None:
    """Write batch ``seq``'s addresses durably, before the batch is sent.

    The addresses are copied into buffers of their own first: ``emails`` is a
    slice of a larger stream batch, and IPC can write a slice's shared
    buffer, so the file would carry addresses of the next batch as bytes
    (found by forget's search of the state folder)."""
    table = pa.table({"email": pa.concat_arrays([emails.cast(pa.string())])}, schema=_SCHEMA)

    def write(handle: BinaryIO) -> None:
        with ipc.new_file(handle, _SCHEMA) as writer:
            writer.write_table(table)

    write_atomic(_batch_file(run_dir(state, run_id), seq), write)


def confirmed(state: Path, run_id: int, seqs: Iterable[int]) -> tuple[pa.Array, list[int]]:
    """The addresses of batches ``seqs``, and the seqs whose file is missing or
    torn (never written, e.g. a run started by an older segsync): the caller
    sends those batches again and says so."""
    chunks: list[pa.Array] = []
    missing: list[int] = []
    folder = _folder(state, run_id)
    for seq in seqs:
        path = _batch_file(folder, seq)
        try:
            with ipc.open_file(path) as reader:
                chunks.extend(reader.read_all().column("email").chunks)
        except (FileNotFoundError, pa.ArrowInvalid):
            missing.append(seq)
    emails = pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())
    return emails, missing


def forget(state: Path, run_id: int) -> None:
    """Remove a finished run's batch files (it can no longer be resumed)."""
    shutil.rmtree(_folder(state, run_id), ignore_errors=True)
