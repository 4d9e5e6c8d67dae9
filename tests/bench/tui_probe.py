"""Launch the app headless and report when its first screen is up.

`python -m tests.bench.tui_probe` with SEGSYNC_BENCH_T0 set to the parent's
`time.time()` just before spawning; prints one JSON line with the seconds from
spawn to the first screen painted, then quits. The process's total wall time
(measured by the parent) also includes interpreter shutdown and any background
worker the first screen started.
"""

from __future__ import annotations

import json
import os
import time

from textual.pilot import Pilot

from tui.app import SegsyncApp
from tui.cli import workspace_path
from tui.local_backend import LocalBackend


async def first_screen(pilot: Pilot[None]) -> None:
    await pilot.pause()  # mounted, laid out and refreshed once
    seconds = time.time() - float(os.environ["SEGSYNC_BENCH_T0"])
    print(json.dumps({"first_screen": seconds, "screen": type(pilot.app.screen).__name__}))
    pilot.app.exit()


def main() -> None:
    from argparse import Namespace

    from store.paths import state_dir

    backend = LocalBackend(workspace=workspace_path(Namespace()), state_dir=state_dir(None))
    SegsyncApp(backend).run(headless=True, auto_pilot=first_screen)


if __name__ == "__main__":
    main()
