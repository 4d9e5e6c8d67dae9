"""httpx, imported without its command-line tool.

``import httpx`` also imports ``httpx._main``, the ``httpx`` command's code
(click, rich and pygments): about 40 % of httpx's import time (149-192 ms
-> 87-93 ms here with bytecode cached, six `python -X importtime` runs of
each), paid by every export before it can send anything,
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
