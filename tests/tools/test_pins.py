"""Every package segsync or its tests declare is pinned to the version CI tested."""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.tools.pins import PYPROJECT

pytestmark = pytest.mark.slow  # asks uv for the installed packages


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_declared_dependency_has_a_pin() -> None:
    project = tomllib.loads(PYPROJECT.read_text())
    declared = [*project["project"]["dependencies"]]
    for group in project.get("dependency-groups", {}).values():
        declared += [r for r in group if isinstance(r, str)]
    for extra in project["project"].get("optional-dependencies", {}).values():
        declared += extra
    pins = {_name(p): p for p in project["tool"]["uv"]["constraint-dependencies"]}
    assert all("==" in p for p in pins.values())
    missing = sorted({_name(r) for r in declared} - set(pins))
    assert missing == [], f"not pinned (run `uv run python -m tests.tools.pins`): {missing}"


def test_pins_name_no_package_index() -> None:
    """Names and versions only: no index setting, no address (uv.lock stays untracked)."""
    uv = tomllib.loads(PYPROJECT.read_text())["tool"]["uv"]
    assert [key for key in uv if "index" in key] == []
    assert not any("://" in pin or " @ " in pin for pin in uv["constraint-dependencies"])
