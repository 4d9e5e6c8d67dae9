"""`segsync export`: run the engine and render its events on a terminal or a log.

On a terminal one status line is redrawn (progress, rows/s, ETA); otherwise
each phase and batch is one line, so cron mail and CI logs stay readable.
`--json` prints only the summary, for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any, TextIO

from connector import events as ev
from tui.cli import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, EXIT_REJECTED, CliError
from tui.cli_commands import open_workspace, print_json, resolve_state_dir

EXIT_BY_STATUS = {
    "succeeded": EXIT_OK,
    "dry_run": EXIT_OK,
    "partial": EXIT_REJECTED,
    "failed": EXIT_FAILED,
    "cancelled": EXIT_CANCELLED,
    "interrupted": EXIT_CANCELLED,
}


class EventPrinter:
    """Turns engine events into human lines (or one live line on a terminal)."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self.out = out
        self.live = live
        self.started = time.monotonic()
        self.upload_started: float | None = None
        self.status_line = False

    def _line(self, text: str) -> None:
        if self.status_line:
            self.out.write("\r\x1b[K")
            self.status_line = False
        self.out.write(text + "\n")
        self.out.flush()

    def _progress(self, sent: int, total: int) -> None:
        elapsed = max(time.monotonic() - (self.upload_started or self.started), 1e-6)
        rate = sent / elapsed
        eta = (total - sent) / rate if rate > 0 else 0.0
        share = sent / total if total else 1.0
        bar = "#" * int(share * 30)
        self.out.write(
            f"\r\x1b[K[{bar:<30}] {sent:,}/{total:,}  {rate:,.0f} rows/s  ETA {eta:,.0f} s"
        )
        self.out.flush()
        self.status_line = True

    def handle(self, event: ev.Event) -> None:
        match event:
            case ev.RunStarted():
                kind = "dry-run" if event.dry_run else event.mode
                resumed = " (resumed)" if event.resumed else ""
                self._line(
                    f"run {event.run_id}{resumed}: {kind} to {event.destination} "
                    f"of {', '.join(event.segments)}"
                )
            case ev.PhaseStarted(phase="uploading"):
                self.upload_started = time.monotonic()
                self._line(f"uploading {event.total or 0:,} contacts")
            case ev.PhaseStarted(phase="done"):
                pass
            case ev.PhaseStarted():
                self._line(f"{event.phase}")
            case ev.PlanReady():
                shown = ", ".join(f"{k} {v:,}" for k, v in event.counts.items() if v)
                self._line(f"plan: {shown}")
            case ev.BatchSent():
                if self.live:
                    self._progress(event.sent_total, event.to_send)
                else:
                    self._line(
                        f"batch {event.seq}: {event.contacts:,} contacts "
                        f"({event.bytes / 1e6:.1f} MB) accepted as job {event.job_id}"
                    )
            case ev.BatchSkipped():
                self._line(f"batch {event.seq}: already confirmed, not sent again")
            case ev.JobFinished():
                if not self.live:
                    self._line(
                        f"batch {event.seq}: job {event.status}: {event.created:,} created, "
                        f"{event.updated:,} updated, {event.errored:,} errored"
                    )
            case ev.RateLimitWait():
                self._line(f"waiting {event.seconds:.0f} s for SendGrid rate limit")
            case ev.RetryScheduled():
                self._line(
                    f"retrying in {event.seconds:.1f} s (attempt {event.attempt}): {event.reason}"
                )
            case ev.RowsRejected():
                self._line(f"batch {event.seq}: SendGrid rejected {len(event.rows):,} rows")
            case ev.ContactsRemoved():
                self._line(f"removed {event.removed:,} of {event.total:,} from the list")
            case ev.PreviewReady():
                self._preview(event)
            case ev.Warning():
                self._line(f"warning: {event.message}")
            case ev.RunFinished():
                self._line(f"run {event.run_id} {event.status} in {event.seconds:.1f} s")
                if event.message:
                    self._line(event.message)

    def _preview(self, event: ev.PreviewReady) -> None:
        self._line("sample contacts:")
        for contact in event.sample_contacts[:5]:
            self._line(f"  {contact}")
        if event.sample_rejected:
            self._line("sample rejected rows:")
            for email, category, detail in event.sample_rejected[:10]:
                self._line(f"  {email!r}: {category} {detail}".rstrip())
        if event.removals_sample:
            self._line(f"would remove e.g.: {', '.join(event.removals_sample[:5])}")
        if event.first_body:
            self._line("first request body (PUT /v3/marketing/contacts):")
            self._line("  " + event.first_body[:1500])


async def _run_export(engine: Any, request: Any, printer: EventPrinter | None) -> ev.RunFinished:
    cancel = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, cancel.set)
    loop.add_signal_handler(signal.SIGTERM, cancel.set)
    finished: ev.RunFinished | None = None
    async for event in engine.run(request, cancel):
        if printer is not None:
            printer.handle(event)
        if isinstance(event, ev.RunFinished):
            finished = event
    if finished is None:
        raise CliError("the export ended without a result", EXIT_FAILED)
    return finished


def build_engine(args: argparse.Namespace) -> Any:
    from connector.engine import EngineSettings, ExportEngine
    from store.history import History
    from store.paths import history_path
    from store.secrets import KeyStore

    if not 1 <= args.batch_size <= 30_000:
        raise CliError("--batch-size must be between 1 and 30,000")
    if not 1 <= args.concurrency <= 16:
        raise CliError("--concurrency must be between 1 and 16")
    state = resolve_state_dir(args)
    return ExportEngine(
        settings=EngineSettings(concurrency=args.concurrency, max_contacts=args.batch_size),
        workspace=open_workspace(args),
        history=History(history_path(state)),
        keys=KeyStore(state),
        state_dir=state,
    )


def cmd_export(args: argparse.Namespace) -> int:
    from connector.engine import ExportRequest

    engine = build_engine(args)
    request = ExportRequest(
        destination=args.destination,
        segments=tuple(args.segments),
        mode=args.mode,
        incremental=args.incremental,
        dry_run=args.dry_run,
        resume_run=args.resume,
    )
    printer = None if args.json else EventPrinter(sys.stderr, live=sys.stderr.isatty())
    # Refusals (no consent, over the cap, busy destination, bad input) propagate to
    # tui.cli.main, which prints their message and exits 2 like every command.
    finished = asyncio.run(_run_export(engine, request, printer))
    if args.json:
        print_json(
            {
                "run": finished.run_id,
                "status": finished.status,
                "counts": finished.counts,
                "message": finished.message,
                "seconds": round(finished.seconds, 3),
            }
        )
    return EXIT_BY_STATUS.get(finished.status, EXIT_FAILED)
