"""Asking SendGrid several things at once: one round trip's wait, not one each.

SendGrid is often a fifth of a second away. Look-ups that do not depend on one
another (the key, the list, the custom fields) are sent together, and their
answers are read in the order the user should hear of them, so the problem
named first is the one named when they were asked one after another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def at_once(
    *calls: Awaitable[Any], answers: type[BaseException] | tuple[type[BaseException], ...] = ()
) -> list[Any]:
    """Await ``calls`` together, each to its end, and return their results in
    order. A failure of an ``answers`` type is that call's result (a refusal
    is an answer); any other is raised: the first in the order given, not the
    first to arrive (a cancel is never an answer)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, answers):
            raise result
    return results
