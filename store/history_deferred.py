"""The history, opened on a thread of its own while an export starts its work.

Opening ``History`` imports SQLAlchemy, SQLModel and pydantic: ~0.6 s of one
core with bytecode cached, before an export could read even its destination.
Yet an export needs the history's writing side only once it has planned (to
store the plan and open its run); before that it reads three small things:
the destination, its mapping and its saved segments. `DeferredHistory` reads
those with the standard library's sqlite3 (`store.history_read`) and opens
``History`` on a thread meanwhile, so the import runs while the export checks
the account over the network and DuckDB plans (both leave the interpreter
free).

The thread starts when the command says (`start_opening`: the export's
command line starts it when the engine starts planning), or at the first
call that needs ``History``. Not sooner: Python code on two threads only
takes turns on the interpreter lock. Started with the command, the engine's
own imports took ~1.0 s beside it instead of ~0.5 s; started at the first
read, it slowed the account checks as much as it saved; started with
planning, an export of 100,000 profiles starts planning ~0.5 s sooner and
ends ~0.2 s sooner (5 alternating pairs against the history opened first;
docs/benchmarks.md "Round three").

When ``History`` has something to do on opening (create the file, upgrade
the schema, mark runs of dead processes interrupted, tighten lax files;
`open_run_reader` says so), nothing is read before it has done it: every
call waits for it, as if it had been opened in the foreground.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from store.history_read import RunReader, open_run_reader

if TYPE_CHECKING:
    from store.history import History

_READS = frozenset({"get_destination", "get_mapping", "get_segments"})
"""What an export reads before it plans: answered by the reader until
``History`` opens (`RunReader` answers them as ``History`` does)."""


class DeferredHistory:
    """``History`` opening on a thread, with its first reads answered at once.

    Use `open_deferred`, which returns it typed as the ``History`` it stands
    for: any attribute other than the `_READS` is the opened ``History``'s
    (waiting for it the first time).
    """

    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path)
        self._reader: RunReader | None = open_run_reader(self.path)
        self._reading = threading.Lock()  # one sqlite3 call at a time, from any thread
        self._opened: History | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._open, name="segsync-history-open")
        self._starting = threading.Lock()

    def start(self) -> None:
        """Start opening ``History`` (once; later calls do nothing).

        The sqlite3 reader is closed first: it must never be open while
        ``History`` connects. With both open in one process, ``History``'s
        writes were lost to other processes under load (an export that ended
        ``succeeded`` was found ``interrupted``, its confirmed batches
        unrecorded: tests/reliability/test_hostile.py, 3 runs in 4, and
        tests/engine/test_resume.py); with the reader closed first, 6 in 6.
        The likely cause, not confirmed: SQLite shares one wal-index (-shm)
        per file among a process's connections, and the read-only one set it
        up. Every read after this one waits for ``History``.
        """
        with self._starting:
            if self._thread.ident is None:
                with self._reading:
                    if self._reader is not None:
                        self._reader.close()
                        self._reader = None
                self._thread.start()

    def _open(self) -> None:
        try:
            from store.history import History

            self._opened = History(self.path)
        except BaseException as exc:  # raised where it is first needed
            self._error = exc

    def opened(self) -> History:
        """The ``History``, once it is open (its opening error, if it failed)."""
        self.start()
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._opened is not None
        return self._opened

    def _read(self, name: str, *args: Any) -> Any:
        """The reader's answer while it is open (errors such as `NotFound`
        included), then ``History``'s."""
        with self._reading:
            if self._reader is not None:
                return getattr(self._reader, name)(*args)
        return getattr(self.opened(), name)(*args)

    def __getattr__(self, name: str) -> Any:
        if name in _READS:
            return functools.partial(self._read, name)
        return getattr(self.opened(), name)


def start_opening(history: object) -> None:
    """Start opening a `DeferredHistory` now (a ``History`` is open already):
    called when the work that leaves the interpreter free begins."""
    if isinstance(history, DeferredHistory):
        history.start()


def open_deferred(db_path: Path) -> History:
    """The history at ``db_path``, opening on a thread (`DeferredHistory`)."""
    return cast("History", DeferredHistory(db_path))
