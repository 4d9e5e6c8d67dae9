"""Command palette (ctrl+p): the screens, the current screen's actions, and
each destination to switch to, built from the app's state when opened.

Destination and list names are data: Textual parses a palette entry given as
`str` (and every help line) as markup, so a list called "[/]broken" crashed
the palette and "Customers [DE]" lost its "[DE]". Entries here are `Content`
built with `safe_content` and highlighted by offsets, never parsed; help
lines are constants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Matcher, Provider
from textual.content import Content

from tui.widgets.formatting import safe_content
from tui.widgets.screen_tabs import SCREENS

if TYPE_CHECKING:
    from tui.app import SegsyncApp


@dataclass(frozen=True)
class PaletteCommand:
    """One entry: `name` is matched against the query (plain text, may hold
    data), `detail` is shown dimmed after it and not matched, `help` is a
    constant hint (Textual parses it as markup)."""

    name: str
    callback: Callable[[], object]
    help: str
    detail: str = ""

    def display(self, name: Content | None = None) -> Content:
        shown = safe_content(self.name) if name is None else name
        if self.detail:
            shown = Content.assemble(shown, safe_content(f"  {self.detail}", "dim"))
        return shown


def highlight(matcher: Matcher, candidate: str) -> Content:
    """`candidate` with the query's matched letters styled, like
    `Matcher.highlight` but without parsing `candidate` as markup. Made-visible
    controls change offsets, so a name holding any is shown unhighlighted."""
    content = safe_content(candidate)
    if content.plain != candidate:
        return content
    score, offsets = matcher.fuzzy_search.match(matcher.query, candidate)
    if score:
        for offset in offsets:
            if not candidate[offset].isspace():
                content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class SegsyncCommands(Provider):
    """Everything reachable by a key, findable by name."""

    def _commands(self) -> list[PaletteCommand]:
        app: SegsyncApp = self.app  # type: ignore[assignment]
        commands = [
            PaletteCommand(f"Go to {title}", partial(app.action_goto, mode), f"key {key}")
            for key, mode, title in SCREENS
        ]
        screen = self.screen
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            # every action of the screen, the footer's and the hidden ones,
            # once each ("delete,d"), and only those that can run now
            if active.node is not screen or not binding.description or not active.enabled:
                continue
            if binding.action in seen:
                continue
            seen.add(binding.action)
            key = app.get_key_display(binding)
            run = partial(screen.run_action, binding.action)
            commands.append(PaletteCommand(binding.description, run, f"key {key}"))
        if getattr(screen, "PURPOSE", ""):
            commands.append(PaletteCommand("Help for this screen", app.action_help, "key ? or F1"))
        commands.append(
            PaletteCommand(
                "Switch workspace…",
                app.action_switch_workspace,
                "key w: one this state folder knows, or a folder you type",
                detail=app.backend.workspace_label,
            )
        )
        for destination in app.destinations:
            commands.append(
                PaletteCommand(
                    f"Use destination {destination.name}",
                    partial(app.use_destination, destination),
                    "make it the destination every screen works on",
                    detail=f"list {destination.list_name or destination.list_id}",
                )
            )
        return commands

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(
                command.display(), command.callback, text=command.name, help=command.help
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(
                    score,
                    command.display(highlight(matcher, command.name)),
                    command.callback,
                    text=command.name,
                    help=command.help,
                )
