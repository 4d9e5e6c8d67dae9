"""Look-ups asked at once answer in the order asked, not the order they arrive."""

from __future__ import annotations

import asyncio

import pytest

from connector.at_once import at_once


async def _after(seconds: float, value: object) -> object:
    await asyncio.sleep(seconds)
    if isinstance(value, BaseException):
        raise value
    return value


async def test_the_first_failure_in_order_is_raised_though_another_arrived_first() -> None:
    with pytest.raises(KeyError, match="the key"):
        await at_once(_after(0.05, KeyError("the key")), _after(0, LookupError("the list")))


async def test_failures_of_the_answer_types_are_results_and_others_are_raised() -> None:
    refused = LookupError("no such list")
    assert await at_once(_after(0, 1), _after(0, refused), answers=LookupError) == [1, refused]
    with pytest.raises(asyncio.CancelledError):
        await at_once(_after(0, asyncio.CancelledError()), answers=LookupError)


async def test_every_call_runs_to_its_end_before_a_failure_is_raised() -> None:
    ended: list[str] = []

    async def slow() -> None:
        await asyncio.sleep(0.05)
        ended.append("slow")

    with pytest.raises(ValueError):
        await at_once(_after(0, ValueError("now")), slow())
    assert ended == ["slow"]
