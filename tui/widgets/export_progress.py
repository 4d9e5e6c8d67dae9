"""The export's phase strip, progress bar and rows/s + ETA line."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Static

from tui.widgets.formatting import duration

PHASES: tuple[tuple[str, str], ...] = (
    ("planning", "Planning"),
    ("uploading", "Uploading"),
    ("confirming", "Waiting for SendGrid"),
    ("removing", "Removing"),
    ("recording", "Recording"),
    ("done", "Done"),
)


def phase_strip(current: str | None) -> Text:
    """All phases in order: finished ones dim, the current one highlighted."""
    names = [name for name, _ in PHASES]
    index = names.index(current) if current in names else -1
    text = Text()
    for position, (_name, label) in enumerate(PHASES):
        if position:
            text.append(" › ", style="dim")
        if position == index:
            text.append(f" {label} ", style="bold reverse")
        elif position < index:
            text.append(label, style="dim")
        else:
            text.append(label)
    return text


def rate_line(done: int, total: int | None, rows: int, seconds: float) -> Text:
    """ "12,000 / 30,000 rows · 4,000 rows/s · ETA 0:05" from rows done in
    `seconds` since the phase started (rate is over the phase, not a window)."""
    text = Text(f"{done:,}" + (f" / {total:,}" if total is not None else "") + " rows")
    if seconds > 0 and rows > 0:
        rate = rows / seconds
        text.append(f" · {rate:,.0f} rows/s")
        if total is not None and total > done:
            text.append(f" · ETA {duration((total - done) / rate)}")
    return text


class ExportProgress(Vertical):
    """Phase, bar and rate. Fed from coalesced progress messages; the clock is
    the messages' own timestamps, so the display is deterministic in tests."""

    DEFAULT_CSS = """
    ExportProgress { height: auto; }
    ExportProgress Horizontal { height: 1; }
    ExportProgress ProgressBar { width: 40; }
    ExportProgress #rate { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static(phase_strip(None), id="phases")
        with Horizontal():
            yield ProgressBar(total=None, show_eta=False, id="bar")
            yield Static("", id="rate")

    def on_mount(self) -> None:
        self._phase: str | None = None
        self._phase_start: tuple[float, int] | None = None
        # idle, a bar without a total would pulse "--%" for nothing
        self.query_one(ProgressBar).display = False

    def set_phase(self, phase: str, total: int | None) -> None:
        self._phase = phase
        self._phase_start = None
        self.query_one("#phases", Static).update(phase_strip(phase))
        bar = self.query_one(ProgressBar)
        bar.display = True
        if phase == "done":
            bar.update(total=bar.total or 1, progress=bar.total or 1)
        else:
            bar.update(total=total, progress=0)
        self.query_one("#rate", Static).update("")

    def set_progress(self, done: int, total: int | None, at: float) -> None:
        if self._phase_start is None:
            self._phase_start = (at, done)
        started_at, started_done = self._phase_start
        self.query_one(ProgressBar).update(total=total, progress=done)
        self.query_one("#rate", Static).update(
            rate_line(done, total, done - started_done, at - started_at)
        )
