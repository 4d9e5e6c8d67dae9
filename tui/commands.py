"""Command palette (ctrl+p): the screens, the current screen's actions, and
each destination to switch to, built from the app's state when opened."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.widgets.screen_tabs import SCREENS

if TYPE_CHECKING:
    from tui.app import SegsyncApp


class SegsyncCommands(Provider):
    """Everything reachable by a key, findable by name."""

    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app: SegsyncApp = self.app  # type: ignore[assignment]
        commands: list[tuple[str, Callable[[], object], str]] = [
            (f"Go to {title}", partial(app.action_goto, mode), f"key {key}")
            for key, mode, title in SCREENS
        ]
        screen = self.screen
        for active in screen.active_bindings.values():
            binding = active.binding
            if active.node is screen and binding.show and binding.description:
                key = binding.key_display or binding.key
                commands.append(
                    (binding.description, partial(screen.run_action, binding.action), f"key {key}")
                )
        for destination in app.destinations:
            commands.append(
                (
                    f"Use destination {destination.name}",
                    partial(app.use_destination, destination),
                    f"list {destination.list_name or destination.list_id}",
                )
            )
        return commands

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, name, help=help_text)
