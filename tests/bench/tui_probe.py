"""Launch the app headless and report when its first screen is painted.

`python -m tests.bench.tui_probe` with SEGSYNC_BENCH_T0 set to the parent's
`time.time()` just before spawning; prints one JSON line with the seconds from
spawn to the first screen, then quits. "Painted" is Textual's `Ready` event,
posted once the first screen is laid out and drawn. (`Pilot.pause()` is not
used: it also waits for the whole process to go idle, i.e. for the workers
the first screen starts in the background.) The process's total wall time,
measured by the parent, also includes shutdown.
"""

from __future__ import annotations

import json
import os
import time
from argparse import Namespace

from tui.app import SegsyncApp
from tui.cli import workspace_path
from tui.local_backend import LocalBackend


class ProbeApp(SegsyncApp):
    def on_ready(self) -> None:
        seconds = time.time() - float(os.environ["SEGSYNC_BENCH_T0"])
        print(json.dumps({"first_screen": seconds, "screen": type(self.screen).__name__}))
        self.exit()


def main() -> None:
    from store.paths import state_dir

    backend = LocalBackend(workspace=workspace_path(Namespace()), state_dir=state_dir(None))
    ProbeApp(backend).run(headless=True)


if __name__ == "__main__":
    main()
