"""httpx, imported without its command-line tool.

``import httpx`` also imports ``httpx._main``, the ``httpx`` command's code
(click, rich and pygments): a third of httpx's import time (~40 of 120 ms
with bytecode cached here), paid by every export before it can send anything,
for a tool segsync never runs. A ``None`` entry in ``sys.modules`` makes that
one import fail, which httpx expects (it then defines a stub ``main``); the
client itself is unchanged. Import httpx from here in modules on an export's
start-up path.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

__all__ = ["httpx"]
