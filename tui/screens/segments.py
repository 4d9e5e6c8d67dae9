"""Segments: pick which segments to export, with live counts and union size."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from store.records import Segment, SegmentCount
from tui.messages import SegmentCountsLoaded, SegmentsLoaded, UnionCounted
from tui.screens.base import SegsyncScreen
from tui.widgets import formatting
from tui.widgets.formatting import safe
from tui.widgets.row_table import Column, Row, RowTable

COLUMNS = (
    Column("", "picked", 3),
    Column("Segment", "name", 22, grow=2),
    Column("Members", "count", 9),
    Column("Definition", "where", 30, grow=1),
)
"""Wider, the definitions are shown in full first (the detail below always
shows the highlighted one whole), then long segment names."""


class SegmentsScreen(SegsyncScreen):
    """Names and definitions show at once; member counts (one DuckDB pass) and
    the deduplicated union size arrive from workers while the user picks."""

    MODE = "segments"
    PURPOSE = (
        "The segments of segments.toml with their member counts. Pick the ones to export with "
        "Space; the line under the table counts the distinct emails of everything picked. A "
        "segment whose definition fails says why below."
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "space",
            "toggle_segment",
            "Pick",
            tooltip="pick or unpick the highlighted segment (also Enter)",
        ),
        Binding("ctrl+a", "toggle_all", "All/none", tooltip="pick every segment, or none"),
        Binding("p", "preview", "Preview", tooltip="dry-run the picked segments"),
        Binding("m", "mapping", "Mapping", tooltip="which columns feed which SendGrid fields"),
        Binding(
            "r", "refresh", "Recount", tooltip="read segments.toml again and recount the members"
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.segments: list[Segment] = []
        self.counts: dict[str, SegmentCount] = {}
        self.union: int | None = None
        self.union_for: tuple[str, ...] = ()  # the selection the union line is about

    def compose_body(self) -> ComposeResult:
        yield RowTable(id="segments", cursor_type="row", zebra_stripes=True)
        yield Static("", id="union", classes="status")
        yield Static("", id="segment-detail", classes="detail")

    def on_mount(self) -> None:
        table = self.query_one(RowTable)
        table.show_rows(COLUMNS, [])
        table.loading = True
        self._load()

    def on_screen_resume(self) -> None:
        if self.segments:
            self._fill()
            if self.segsync.selection != self.union_for:  # restored or changed elsewhere
                self._selection_changed()

    # -- workers -----------------------------------------------------------------

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="segments",
        description="read the segments",
    )
    def _load(self) -> None:
        segments = self.call_backend("read the segments", self.backend.segments)
        selected: tuple[str, ...] = ()
        destination = self.segsync.destination
        if segments is not None and destination is not None and not self.segsync.selection:
            selected = (
                self.call_backend(
                    "read the saved selection", lambda: self.backend.saved_selection(destination.id)
                )
                or ()
            )
        self.post_message(SegmentsLoaded(segments or [], selected))
        if segments:
            counts = self.call_backend("count segment members", self.backend.segment_counts)
            if counts is not None:
                self.post_message(SegmentCountsLoaded(counts))

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="union",
        description="count the union",
    )
    def _count_union(self, names: tuple[str, ...]) -> None:
        count = self.call_backend("count the union", lambda: self.backend.union_count(names))
        if count is not None:
            self.post_message(UnionCounted(names, count))

    # -- handlers ----------------------------------------------------------------

    def on_segments_loaded(self, message: SegmentsLoaded) -> None:
        self.segments = message.segments
        known = {s.name for s in self.segments}
        if message.selected:
            self.segsync.selection = tuple(n for n in message.selected if n in known)
        else:
            self.segsync.selection = tuple(n for n in self.segsync.selection if n in known)
        self._fill()
        self._selection_changed()

    def on_segment_counts_loaded(self, message: SegmentCountsLoaded) -> None:
        self.counts = {c.segment: c for c in message.counts}
        self._fill()

    def on_union_counted(self, message: UnionCounted) -> None:
        if message.names == self.segsync.selection:
            self.union = message.count
            self._show_union()

    def _fill(self) -> None:
        """(Re)draw the segments for the selection, counts and width."""
        table = self.query_one(RowTable)
        table.loading = False
        rows: list[Row] = []
        picked = set(self.segsync.selection)
        for segment in self.segments:
            count = self.counts.get(segment.name)
            if count is None:
                members = Text("…", justify="right", style="dim")
            elif count.error is not None:
                members = Text("error", justify="right", style="bold red")
            else:
                members = Text(formatting.count(count.count), justify="right")
            cells = (
                Text("[x]" if segment.name in picked else "[ ]"),
                safe(
                    segment.name,
                    "bold" if segment.name in picked else "",
                    no_wrap=True,
                    overflow="ellipsis",
                ),
                members,
                safe(segment.where, no_wrap=True, overflow="ellipsis"),
            )
            rows.append((segment.name, cells))
        table.show_rows(COLUMNS, rows)
        if not self.segments:
            self.query_one("#segment-detail", Static).update(
                Text("This workspace defines no segments: add some to segments.toml.")
            )
        self._show_detail()

    def _highlighted(self) -> Segment | None:
        table = self.query_one(DataTable)
        if not self.segments:
            return None
        return self.segments[max(0, min(table.cursor_row, len(self.segments) - 1))]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_toggle_segment()

    def _show_detail(self) -> None:
        segment = self._highlighted()
        if segment is None:
            return
        text = Text()
        text.append(safe(segment.name, "bold"))
        if segment.description:
            text.append(safe(f"  {segment.description}"))
        text.append("\nwhere ", style="dim")
        text.append(safe(segment.where, multiline=True))
        count = self.counts.get(segment.name)
        if count is not None and count.error is not None:
            text.append("\nThis segment's definition fails: ", style="bold red")
            text.append(safe(count.error, multiline=True))
        self.query_one("#segment-detail", Static).update(text)

    def _show_union(self) -> None:
        selection = self.segsync.selection
        if not selection:
            text = Text("Nothing picked: Space picks the highlighted segment.")
        else:
            union = "counting…" if self.union is None else f"{self.union:,} distinct emails"
            text = Text.assemble(
                (f"{len(selection)} picked", "bold"), f" · union {union}", " · p previews"
            )
        self.query_one("#union", Static).update(text)

    def _selection_changed(self) -> None:
        self.union = None
        self.union_for = self.segsync.selection
        self._show_union()
        if self.segsync.selection:
            self._count_union(self.segsync.selection)

    # -- actions -----------------------------------------------------------------

    def action_toggle_segment(self) -> None:
        segment = self._highlighted()
        if segment is None:
            return
        picked = list(self.segsync.selection)
        if segment.name in picked:
            picked.remove(segment.name)
        else:
            picked.append(segment.name)
        order = [s.name for s in self.segments]
        self.segsync.selection = tuple(sorted(picked, key=order.index))
        self._fill()
        self._selection_changed()

    def action_toggle_all(self) -> None:
        everything = tuple(s.name for s in self.segments)
        self.segsync.selection = () if self.segsync.selection == everything else everything
        self._fill()
        self._selection_changed()

    def action_refresh(self) -> None:
        self.counts = {}
        self._fill()
        self._load()

    def action_preview(self) -> None:
        self.segsync.action_goto("preview")

    def action_mapping(self) -> None:
        self.segsync.action_goto("mapping")
