"""A DataTable whose rows are the things to pick, as every list screen has,
with columns that use the terminal's width."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

Row = tuple[str | None, Sequence[object]]
"""(row key, cells): one row as `RowTable.show_rows` takes it."""

OPTIONAL_MIN = 6
"""An optional column narrower than this is left out rather than shown as a stub."""


@dataclass(frozen=True)
class Column:
    """One column: `width` is what it gets when the terminal is narrow (80
    columns); `grow` says who takes the room left over when it is wider:
    0 never, then 1 before 2, each up to the width of its longest value.
    `optional` columns get only what is left after all the others, and are
    left out when that is too little (the preview's Detail at 80 columns).
    `label` is plain text, never markup."""

    label: str
    key: str
    width: int
    grow: int = 0
    optional: bool = False


def fit_widths(
    columns: Sequence[Column], natural: Sequence[int], room: int, padding: int = 0
) -> list[int]:
    """Widths for `columns` in `room` cells, each column also taking `padding`
    (optional ones only when shown); 0 for an optional column left out.

    Every column gets its `width`; what is left goes to the growing columns,
    lowest `grow` first, shared equally among those of one level, none beyond
    its longest value; then to the optional ones. So at 80 columns a table
    looks as it was designed, and at 120 long names and values are shown
    instead of cut."""
    widths = [0 if column.optional else column.width for column in columns]
    left = room - sum(widths) - padding * sum(not c.optional for c in columns)
    levels = sorted({c.grow for c in columns if c.grow and not c.optional})

    def share_out(members: list[int]) -> None:
        nonlocal left
        while left > 0:
            wanting = [i for i in members if widths[i] < natural[i]]
            if not wanting:
                return
            share = max(1, left // len(wanting))
            for i in wanting:
                extra = min(share, natural[i] - widths[i], left)
                widths[i] += extra
                left -= extra

    for level in levels:
        share_out([i for i, c in enumerate(columns) if c.grow == level and not c.optional])
    optional = [i for i, c in enumerate(columns) if c.optional]
    left -= padding * len(optional)
    share_out(optional)
    for i in optional:
        if widths[i] < min(OPTIONAL_MIN, natural[i]):
            widths[i] = 0
    return widths


def _cell_width(cell: object) -> int:
    if isinstance(cell, Text):
        return max((cell_len(line) for line in cell.plain.splitlines()), default=0)
    return cell_len(str(cell))


class RowTable(DataTable[object]):
    """A list of things, one per row.

    Home and End go to the first and last row when the cursor selects rows
    (Textual binds them to the first and last column, which with a row cursor
    only scrolled sideways: End on a list of destinations did not reach the
    last one). `show_rows` lays out columns for the current width, and the
    table lays them out again when its width changes.
    """

    _columns: Sequence[Column] = ()
    _rows: Sequence[Row] = ()
    _fitted_width = -1

    def action_scroll_home(self) -> None:
        if self.show_cursor and self.cursor_type == "row" and self.row_count:
            self.move_cursor(row=0)
        else:
            super().action_scroll_home()

    def action_scroll_end(self) -> None:
        if self.show_cursor and self.cursor_type == "row" and self.row_count:
            self.move_cursor(row=self.row_count - 1)
        else:
            super().action_scroll_end()

    def show_rows(self, columns: Sequence[Column], rows: Sequence[Row]) -> None:
        """Replace columns and rows, sizing the columns to the table's width,
        and keep the cursor on the same row number (a reload keeps the
        user's place). Cells are given for every column, shown or not."""
        self._columns, self._rows = columns, rows
        self._fitted_width = self.size.width
        cursor = self.cursor_row
        natural = [
            max([cell_len(c.label), *(_cell_width(cells[i]) for _key, cells in rows)])
            for i, c in enumerate(columns)
        ]
        room = self.size.width
        if len(rows) + 1 > self.size.height:  # a vertical scrollbar takes its place
            room -= self.styles.scrollbar_size_vertical
        widths = fit_widths(columns, natural, room, 2 * self.cell_padding)
        shown = [i for i, width in enumerate(widths) if width or not columns[i].optional]
        self.clear(columns=True)
        for i in shown:  # labels are plain words: as Text, not parsed as markup, which
            # loads rich's emoji table (~4 ms here, before the first screen's paint)
            self.add_column(Text(columns[i].label), key=columns[i].key, width=widths[i])
        for key, cells in rows:
            self.add_row(*(cells[i] for i in shown), key=key)
        if self.row_count and cursor > 0:
            self.move_cursor(row=min(cursor, self.row_count - 1))

    def on_resize(self) -> None:
        """The terminal (or the layout) changed: fit the columns to the new width."""
        if self._columns and self.size.width != self._fitted_width:
            self.show_rows(self._columns, self._rows)
