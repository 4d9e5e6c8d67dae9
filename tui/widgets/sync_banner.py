"""The line at the top of every screen naming scheduled syncs that failed.

A sync fails unattended (under a timer, at night): the next person to open
the app must see it without looking for it. The app reads the failures
nobody acknowledged in a worker after the first paint and holds them in its
`sync_alerts` reactive; every screen's banner watches that one attribute, so
acknowledging (k) hides it everywhere at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from tui.widgets.formatting import safe_content
from tui.widgets.screen_tabs import SCREENS

if TYPE_CHECKING:
    from store.records import SyncAlert

ACKNOWLEDGE_KEY = "k"
"""Acknowledges the failures the banner names (`syncs alerts --ack` on the command line).
Not d, which removes a destination on the screen the app opens on."""

SYNCS_KEY = next(key for key, mode, _title in SCREENS if mode == "syncs")


class SyncAlertsLoaded(Message):
    """The failures nobody acknowledged, read at start (empty: no banner)."""

    def __init__(self, alerts: list[SyncAlert]) -> None:
        super().__init__()
        self.alerts = alerts


class SyncAlertsAcknowledged(Message):
    """The backend recorded these syncs' failures as seen (k on the banner)."""

    def __init__(self, sync_ids: tuple[int, ...]) -> None:
        super().__init__()
        self.sync_ids = sync_ids


def _local(value: datetime) -> datetime:
    return value.astimezone() if value.tzinfo is not None else value


def describe_alerts(alerts: Sequence[SyncAlert], today: datetime) -> Content:
    """The newest failure ("Sync nightly refused at 02:00 (run 12); 1 more"),
    and how many other syncs failed too. A time not of `today` gets its date.
    Sync names and results are data: never parsed as markup."""
    newest: dict[int, SyncAlert] = {}
    for alert in sorted(alerts, key=lambda a: _local(a.event.at).replace(tzinfo=None)):
        newest[alert.sync_id] = alert
    latest = max(newest.values(), key=lambda a: _local(a.event.at).replace(tzinfo=None))
    at = _local(latest.event.at)
    when = f"at {at:%H:%M}" if at.date() == today.date() else f"on {at:%m-%d %H:%M}"
    run = f" (run {latest.event.run_id})" if latest.event.run_id is not None else ""
    parts = [
        Content("Sync "),
        safe_content(latest.sync_name, "bold"),
        safe_content(f" {latest.event.result.replace('_', ' ')}"),
        Content(f" {when}{run}"),
    ]
    others = len(newest) - 1
    if others:
        parts.append(Content(f"; {others} more"))
    return Content.assemble(*parts)


class SyncBanner(Horizontal):
    """Hidden while there is nothing to say; one line when syncs failed."""

    DEFAULT_CSS = """
    SyncBanner {
        height: 1;
        display: none;
        background: $error-muted;
        color: $text;
    }
    SyncBanner.-shown { display: block; }
    SyncBanner #sync-banner-text { width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    SyncBanner #sync-banner-keys { width: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="sync-banner-text")
        # short enough that a sync's name and its failure fit beside it at 80 columns
        keys = Content.assemble(
            " — ",
            Content.assemble((SYNCS_KEY, "bold"), " syncs").stylize("@click=app.goto('syncs')"),
            ", ",
            Content.assemble((ACKNOWLEDGE_KEY, "bold"), " dismiss ").stylize(
                "@click=app.acknowledge_sync_alerts"
            ),
        )
        yield Static(keys, id="sync-banner-keys")

    def on_mount(self) -> None:
        self.watch(self.app, "sync_alerts", self._show, init=True)

    def _show(self, alerts: tuple[SyncAlert, ...]) -> None:
        self.set_class(bool(alerts), "-shown")
        if alerts:
            text = Content.assemble(("! ", "bold"), describe_alerts(alerts, datetime.now()))
            self.query_one("#sync-banner-text", Static).update(text)
