"""Shared fixtures: an in-process SendGrid emulator on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh emulator per test: `.url`, `.state`, `.api_key` (every scope),
    `.read_only_key`, `.faults` (live settings) and `.set_faults(**changes)`.
    Records exchanges (`.exchanges`) so any test can check conformance."""
    with Emulator(record=True) as emu:
        yield emu
