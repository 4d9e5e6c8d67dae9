"""The fake the Pilot tests drive every screen with answers every call of
`tui.backend.Backend`, with the same parameters: a method added to the
protocol (or renamed) without the fake following fails here, not as an
AttributeError in a worker half way through a flow. (`LocalBackend` is
checked by mypy: `run_app` hands it to the app as a `Backend`.)"""

from __future__ import annotations

import inspect

from tests.tui.fakes import FakeBackend
from tui.backend import Backend


def _calls(cls: type) -> dict[str, list[str]]:
    return {
        name: list(inspect.signature(member).parameters)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_the_fake_has_every_call_of_the_protocol_with_its_parameters() -> None:
    wanted = _calls(Backend)
    assert wanted  # the protocol's calls were found
    offered = _calls(FakeBackend)
    assert {name: offered.get(name) for name in wanted} == wanted
    assert isinstance(inspect.getattr_static(Backend, "workspace_label"), property)
    assert isinstance(FakeBackend().workspace_label, str)
