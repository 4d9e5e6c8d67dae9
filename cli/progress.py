"""Running the engine from the command line and rendering its events.

Shared by `export`, `plan`, `apply` and `undo`. Progress (phases, batches,
retries, warnings) goes to stderr: on a terminal one status line is redrawn
(progress, rows/s, ETA); otherwise each phase and batch is one line, so cron
mail and CI logs stay readable. The result (a dry run's preview, how the run
ended) goes to stdout. `--json` prints only the summary, on stdout.

Importing this module loads orjson and the engine's events: command modules
import it when a command runs, not at start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from cli.common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    CliError,
    open_workspace,
    print_json,
    resolve_state_dir,
    retry_printer,
    silence_stdout,
)
from connector import events as ev
from store.history_deferred import start_opening
from store.safe_text import visible

# The exit code of each way a run ends. Rows the plan left out (invalid_email,
# no_consent, ...) are a normal outcome and do not change it; `partial` (3) is
# rows SendGrid rejected or removals it did not confirm.
EXIT_BY_STATUS = {
    "succeeded": EXIT_OK,
    "dry_run": EXIT_OK,
    "refused": EXIT_USAGE,
    "partial": EXIT_REJECTED,
    "failed": EXIT_FAILED,
    "cancelled": EXIT_CANCELLED,
    "interrupted": EXIT_CANCELLED,
}


# Runs that did their work: their last lines are the command's result (stdout).
RESULT_STATUSES = ("succeeded", "partial", "dry_run")

BODY_SHOWN = 1500  # characters of the first request body shown on a terminal


class EventPrinter:
    """Turns engine events into human lines (or one live line on a terminal).

    ``log`` gets progress and warnings (stderr), ``result`` the preview and the
    end of the run (stdout); by default both go to ``log``.
    """

    def __init__(
        self, out: TextIO, live: bool, preview: bool = True, result: TextIO | None = None
    ) -> None:
        self.out = out
        self.result = result or out
        self.result_gone = False
        self.live = live
        self.preview = preview  # print a dry-run's samples (`plan` prints its own summary)
        self.started = time.monotonic()
        self.upload_started: float | None = None
        self.status_line = False

    def _line(self, text: str) -> None:
        if self.status_line:
            self.out.write("\r\x1b[K")
            self.status_line = False
        self.out.write(text + "\n")
        self.out.flush()

    def _result(self, text: str) -> None:
        """A line of the result: on stdout, after clearing the status line."""
        if self.status_line:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self.status_line = False
        if self.result_gone:
            return
        try:
            self.result.write(text + "\n")
            self.result.flush()
        except BrokenPipeError:
            # `segsync export ... | head -1`: the reader left; the run goes on
            # and its exit code still says how it ended.
            self.result_gone = True
            silence_stdout()

    def _end(self, event: ev.RunFinished, text: str) -> None:
        """How the run ended: the result (stdout) when it did its work, an error
        message (stderr, with every other command's errors) when it did not."""
        if event.status in RESULT_STATUSES:
            self._result(text)
        else:
            self._line(text)

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
                if event.undo_of is not None:
                    kind = f"undo of run {event.undo_of}"
                resumed = " (resumed)" if event.resumed else ""
                self._line(
                    f"run {event.run_id}{resumed}: {kind} to {visible(event.destination)} "
                    f"of {visible(', '.join(event.segments))}"
                )
            case ev.PhaseStarted(phase="uploading"):
                self.upload_started = time.monotonic()
                self._line(f"uploading {event.total or 0:,} contacts")
            case ev.PhaseStarted(phase="done"):
                pass
            case ev.PhaseStarted():
                self._line(f"{event.phase}")
            case ev.PlanReady():
                c = event.counts
                shown = ", ".join(f"{k} {v:,}" for k, v in c.items() if v and k != "selected")
                self._line(f"plan {event.plan_id}: {c.get('selected', 0):,} selected: {shown}")
                if event.batches:
                    self._line(
                        f"to send {c.get('to_send', 0):,} contacts in at least "
                        f"{event.batches:,} request(s)"
                    )
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
            case ev.RateLimitWait() | ev.RetryScheduled():
                pass  # said as it happens, with the endpoint, by `client_factory`
            case ev.RowsRejected():
                self._line(f"batch {event.seq}: SendGrid rejected {len(event.rows):,} rows")
            case ev.ContactsRemoved():
                failed = f", {event.failed:,} not confirmed" if event.failed else ""
                self._line(
                    f"removed {event.removed:,} of {event.total:,} from the list "
                    f"(confirmed by reading the list back){failed}"
                )
            case ev.PreviewReady():
                if self.preview:
                    self._preview(event)
            case ev.Warning():
                self._line(f"warning: {visible(event.message, multiline=True)}")
            case ev.RunFinished(run_id=0):
                self._end(event, f"{visible(event.message)} ({event.seconds:.1f} s)")
            case ev.RunFinished():
                self._end(event, f"run {event.run_id} {event.status} in {event.seconds:.1f} s")
                if event.message:
                    self._end(event, visible(event.message, multiline=True))

    def _preview(self, event: ev.PreviewReady) -> None:
        """Samples as JSON (what would be sent), every value made safe to show."""
        self._result("sample contacts:")
        for contact in event.sample_contacts[:5]:
            self._result("  " + visible(orjson.dumps(contact).decode()))
        if event.sample_rejected:
            self._result("sample rejected rows:")
            for email, category, detail in event.sample_rejected[:10]:
                self._result(f"  {visible(email)}: {category} {visible(detail)}".rstrip())
        if event.removals_sample:
            shown = ", ".join(visible(e) for e in event.removals_sample[:5])
            self._result(f"would remove e.g.: {shown}")
        if event.first_body:
            body = event.first_body
            cut = len(body) > BODY_SHOWN or body.endswith(" …")
            self._result("first request body (PUT /v3/marketing/contacts):")
            self._result("  " + visible(body[:BODY_SHOWN].removesuffix(" …")))
            if cut:
                self._result(
                    "  [cut here: the body goes on; `--json` shows more of it, and says "
                    "whether that is all]"
                )


async def run_engine(engine: Any, request: Any, printer: EventPrinter | None) -> list[ev.Event]:
    """Run the engine with SIGINT/SIGTERM as cancel; returns the events that
    matter afterwards (the plan, the preview, the end)."""
    cancel = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, cancel.set)
    loop.add_signal_handler(signal.SIGTERM, cancel.set)
    kept: list[ev.Event] = []
    async for event in engine.run(request, cancel):
        if isinstance(event, ev.PhaseStarted) and event.phase == "planning":
            start_opening(engine.history)  # DuckDB plans: the interpreter is free
        if printer is not None:
            printer.handle(event)
        if isinstance(event, ev.PlanReady | ev.PreviewReady | ev.RunFinished):
            kept.append(event)
    return kept


def run_export(
    engine: Any, request: Any, as_json: bool, preview: list[ev.PreviewReady] | None = None
) -> tuple[ev.RunFinished, int]:
    """Run an export or apply; returns its end and the plan it applied (and
    appends a dry-run's preview to ``preview`` when given)."""
    printer = (
        None if as_json else EventPrinter(sys.stderr, live=sys.stderr.isatty(), result=sys.stdout)
    )
    # Refusals (no consent, busy destination, a drifted plan, bad input) propagate
    # to tui.cli.main, which prints their message and exits 2 like every command.
    events = asyncio.run(run_engine(engine, request, printer))
    finished = next((e for e in reversed(events) if isinstance(e, ev.RunFinished)), None)
    if finished is None:
        raise CliError("the export ended without a result", EXIT_FAILED)
    plan_id = next((e.plan_id for e in events if isinstance(e, ev.PlanReady | ev.PreviewReady)), 0)
    if preview is not None:
        preview.extend(e for e in events if isinstance(e, ev.PreviewReady))
    return finished, plan_id


def print_summary(
    finished: ev.RunFinished,
    plan_id: int,
    preview: ev.PreviewReady | None = None,
    findings: dict[str, Any] | None = None,
) -> None:
    data: dict[str, Any] = {
        "run": finished.run_id or None,
        "plan": plan_id or None,
        "status": finished.status,
        "counts": finished.counts,
        "message": finished.message,
        "seconds": round(finished.seconds, 3),
    }
    if preview is not None:  # a dry-run: what would be sent, in full
        data["sample_contacts"] = list(preview.sample_contacts)
        data["sample_rejected"] = [
            {"email": e, "category": c, "detail": d} for e, c, d in preview.sample_rejected
        ]
        data["removals_sample"] = list(preview.removals_sample)
        # The engine keeps the first 4,000 characters and marks a cut with " …":
        # scripts get the text without the mark and a flag saying it was cut.
        body = preview.first_body or ""
        data["first_body_cut"] = body.endswith(" …")
        data["first_body"] = body.removesuffix(" …")
    if findings is not None:  # a preview: what an export of its plan would meet
        data.update(findings)
    print_json(data)


def client_factory(what: str) -> Callable[..., Any]:
    """SendGrid clients for the engine that also say each retry on stderr, with
    the endpoint (the engine's own retry events do not name it) and in JSON
    mode too: a refused connection is never a minute of silence."""
    from connector.client import SendGridClient

    say_retry = retry_printer(what)

    def factory(key: Any, base_url: str, *, on_retry: Any = None, **kwargs: Any) -> Any:
        def both(notice: Any) -> None:
            say_retry(notice)
            if on_retry is not None:
                on_retry(notice)

        return SendGridClient(key, base_url, on_retry=both, **kwargs)

    return factory


def build_engine(args: argparse.Namespace) -> Any:
    """The engine of an export command. Its history opens on a thread
    (`store.history_deferred`), started by `run_engine` when planning starts:
    the SQLAlchemy import then overlaps DuckDB's planning."""
    from connector.engine import EngineSettings, ExportEngine
    from store.history_deferred import open_deferred
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
        history=open_deferred(history_path(state)),
        keys=KeyStore(state),
        state_dir=state,
        client_factory=client_factory("export"),
    )
