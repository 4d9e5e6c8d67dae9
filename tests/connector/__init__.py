"""Connector tests. Helpers shared by the client test modules live here."""

from __future__ import annotations

import time

from connector.emulator import Emulator


async def no_sleep(seconds: float) -> None:
    """Injected as the client's sleep: waits are asserted via on_retry, not sat through."""


def requests_to(emulator: Emulator, endpoint: str, expected: int) -> int:
    """Requests the emulator saw for an endpoint. It logs just after answering,
    so give it a moment to reach ``expected`` (extra requests still show up)."""
    count = 0
    for _ in range(100):
        count = emulator.state.stats()["requests"].get(endpoint, 0)
        if count >= expected:
            break
        time.sleep(0.01)
    return count
