"""Launch the app headless and report when its first screen is painted.

`python -m tests.bench.tui_probe [--bare]` with SEGSYNC_BENCH_T0 set to the
parent's `time.time()` just before spawning; prints one JSON line with the
seconds from spawn to the first screen, then quits. "Painted" is Textual's
`Ready` event, posted once the first screen is laid out and drawn.
(`Pilot.pause()` is not used: it also waits for the whole process to go idle,
i.e. for the workers the first screen starts in the background.) The
process's total wall time, measured by the parent, also includes shutdown.

The app starts as `segsync` does (`cli.main`: the parser, then the app's
modules). `--bare` starts a plain Textual app with the widgets of segsync's
first screen (header, table, a line of text, footer) and nothing of segsync:
the floor a Textual app has on this machine, to read segsync's figure against.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _report(screen: object) -> None:
    seconds = time.time() - float(os.environ["SEGSYNC_BENCH_T0"])
    print(json.dumps({"first_screen": seconds, "screen": type(screen).__name__}))


def bare() -> None:
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable, Footer, Header, Static

    class BareApp(App[None]):
        def compose(self) -> ComposeResult:
            yield Header()
            yield DataTable()
            yield Static("")
            yield Footer()

        def on_ready(self) -> None:
            _report(self.screen)
            self.exit()

    BareApp().run(headless=True)


def segsync() -> None:
    from cli.main import build_parser, modules_for

    args = build_parser(modules_for([])).parse_args([])  # what `segsync` alone builds
    from cli.common import resolve_state_dir, workspace_path
    from tui.app import SegsyncApp
    from tui.local_backend import LocalBackend

    class ProbeApp(SegsyncApp):
        def on_ready(self) -> None:
            _report(self.screen)
            self.exit()

    backend = LocalBackend(workspace=workspace_path(args), state_dir=resolve_state_dir(args))
    ProbeApp(backend).run(headless=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--bare"]:
        bare()
    else:
        segsync()
