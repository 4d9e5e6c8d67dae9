"""The command line's live progress line (`cli.progress.EventPrinter(live=True)`).

On a terminal one status line is redrawn per batch; every other line first
clears it, and the result (stdout) never carries a fragment of it. Off a
terminal each batch is a line of its own. The first test renders a real run's
events both ways; the second runs `segsync export` with stderr on a
pseudo-terminal, so the choice of live mode is the program's own.
"""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess

import pytest

from cli.progress import EventPrinter
from connector import events as ev
from connector.engine import ExportRequest
from tests.engine.conftest import expected_emails
from tests.engine.test_engine_events import collect, engine_for

pytestmark = pytest.mark.slow  # end to end, one run in a subprocess

CLEAR = "\r\x1b[K"
FRAME = re.compile(r"\r\x1b\[K\[(#*) *\] ([\d,]+)/([\d,]+)  [\d,]+ rows/s  ETA [\d,]+ s")


async def test_live_mode_redraws_one_line_and_keeps_the_result_clean(export_env):
    want = len(expected_emails(export_env.rows, ["germany"]))
    events = await collect(
        engine_for(export_env, max_contacts=100), ExportRequest("news", ("germany",))
    )
    batches = [e for e in events if isinstance(e, ev.BatchSent)]
    assert len(batches) == -(-want // 100) > 2

    log, result = io.StringIO(), io.StringIO()
    printer = EventPrinter(log, live=True, result=result)
    for event in events:
        printer.handle(event)
    text = log.getvalue()

    frames = FRAME.findall(text)
    assert len(frames) == len(batches)  # one redraw per batch, no line per batch
    totals = [int(sent.replace(",", "")) for _bar, sent, _total in frames]
    assert totals == sorted(totals) and totals[-1] == want
    assert {int(total.replace(",", "")) for _bar, _sent, total in frames} == {want}
    assert frames[-1][0] == "#" * 30  # the bar is full at the end
    assert "accepted as job" not in text and "job completed" not in text
    # After the last frame, the next line clears the status line before writing.
    after = text[text.rindex("ETA") :]
    assert CLEAR + "recording\n" in after
    out = result.getvalue()
    assert re.search(r"^run \d+ succeeded in [\d.]+ s$", out, re.MULTILINE), out
    assert "\x1b" not in out and "\r" not in out  # no fragment of the status line

    plain = io.StringIO()
    printer = EventPrinter(plain, live=False)
    for event in events:
        printer.handle(event)
    lines = plain.getvalue()
    assert "\x1b" not in lines and "\r" not in lines
    assert len(re.findall(r"^batch \d+: [\d,]+ contacts .* accepted as job", lines, re.M)) == len(
        batches
    )


def test_export_on_a_terminal_draws_the_live_line(export_env):
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            export_env.cli("export", "news", "--segment", "germany"),
            env=export_env.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=secondary,
        )
        os.close(secondary)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(primary)
    err = b"".join(chunks).decode()
    assert proc.returncode == 0, err
    want = len(expected_emails(export_env.rows, ["germany"]))
    assert FRAME.search(err), err  # the status line, because stderr is a terminal
    assert f"{want:,}/{want:,}" in err
    assert "accepted as job" not in err
    assert b"\x1b" not in out and re.search(rb"run \d+ succeeded", out), out
