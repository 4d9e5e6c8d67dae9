"""What every main screen shares: the chrome, backend calls, error display."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, TypeVar

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header

from tui.backend import Backend, BackendError
from tui.messages import BackendFailed
from tui.widgets.screen_tabs import ScreenTabs
from tui.widgets.sync_banner import SyncBanner

if TYPE_CHECKING:
    from tui.app import SegsyncApp

T = TypeVar("T")


def describe_error(error: BaseException) -> str:
    """One readable line for the user: the backend's own message when it has
    one (it already says what to do), otherwise the exception's text."""
    if isinstance(error, BackendError):
        return str(error)
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class SegsyncScreen(Screen[None]):
    """A main screen: header, screen tabs, the screen's body, footer."""

    MODE: ClassVar[str] = ""
    PURPOSE: ClassVar[str] = ""
    """What the screen is for, in a sentence or two: the top of its help (`?`)."""

    @property
    def segsync(self) -> SegsyncApp:
        return self.app  # type: ignore[return-value]

    @property
    def backend(self) -> Backend:
        return self.segsync.backend

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield SyncBanner()  # hidden unless scheduled syncs failed
        yield ScreenTabs(self.MODE)
        yield from self.compose_body()
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        raise NotImplementedError

    def call_backend(self, action: str, call: Callable[[], T]) -> T | None:
        """Run a backend call inside a worker; on failure post `BackendFailed`
        (shown as a notification) and return None instead of raising."""
        try:
            return call()
        except Exception as error:  # every failure reaches the user as text
            self.post_message(BackendFailed(action, describe_error(error)))
            return None
