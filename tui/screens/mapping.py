"""Mapping and consent: which profile column feeds each SendGrid field."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from store.records import Column as ProfileColumn
from store.records import FieldMapping
from tui.backend import FIELD_LIMITS, RESERVED_FIELDS
from tui.messages import BackendFailed, MappingLoaded, MappingSaved, SampleRowsLoaded
from tui.screens.base import SegsyncScreen, describe_error
from tui.screens.confirm import ConfirmScreen
from tui.screens.pickers import NOT_MAPPED, ColumnPicker
from tui.widgets.formatting import safe
from tui.widgets.row_table import Column, RowTable

SAMPLE_ROWS = 3
CONSENT_ROW = "\x00consent"


COLUMNS = (
    Column("SendGrid field", "field", 24, grow=SAMPLE_ROWS + 2),
    Column("Column", "column", 14, grow=SAMPLE_ROWS + 1),
    *(
        Column(f"row {index + 1}", f"row{index}", 10, grow=index + 1)
        for index in range(SAMPLE_ROWS)
    ),
)
"""At 80 columns as designed; wider, the sample values are shown in full
first, row 1 before row 2 (one whole example beats three cut ones), then
long column and field names."""


class MappingScreen(SegsyncScreen):
    """One row per SendGrid field: the column feeding it and its values for the
    first rows of the source, cut-off values highlighted. Enter picks a column;
    every change is saved at once so Preview always uses what is shown. A
    suggestion nobody saved yet says so (s saves it). Sending without a consent
    column is a choice asked for and recorded (n), never what unmapping does."""

    MODE = "mapping"
    PURPOSE = (
        "Which profile column feeds each SendGrid field, beside the values of the first rows. "
        "Values too long for SendGrid are highlighted. Every change is saved at once, so "
        "Preview uses what you see; a suggestion is saved only with s. Without a consent "
        "column exports are refused until you record, with n, that everyone selected may "
        "be sent."
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "space",
            "pick",
            "Pick column",
            tooltip="choose the column for the highlighted field (also Enter)",
        ),
        Binding(
            "u",
            "suggest",
            "Suggest",
            tooltip="map the unmapped fields to columns by their names (what is mapped "
            "stays; saved at once)",
        ),
        Binding(
            "n",
            "no_consent_filter",
            "No consent filter",
            tooltip="record that everyone selected may be sent without a consent column "
            "(asks first; n again withdraws it)",
            show=False,  # the consent row names it; the footer has no room at 80 columns
        ),
        Binding("s", "save", "Save", tooltip="save the suggested mapping shown (not saved yet)"),
        Binding("p", "preview", "Preview", tooltip="dry-run with this mapping"),
        Binding(
            "r",
            "refresh",
            "Reload",
            tooltip="read the columns, custom fields and sample rows again",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.columns: list[ProfileColumn] = []
        self.custom_fields: list[str] = []
        self.mapping: FieldMapping | None = None
        self.rows: list[dict[str, object]] = []
        self.loaded_for: int | None = None
        self.custom_fields_error: str | None = None
        self.saved = True  # False: the mapping shown is a suggestion nobody saved yet

    def compose_body(self) -> ComposeResult:
        yield Static("", id="mapping-status", classes="status")
        yield RowTable(id="mapping", cursor_type="row", zebra_stripes=True)
        yield Static("", id="mapping-detail", classes="detail")

    def on_mount(self) -> None:
        self.query_one(RowTable).show_rows(COLUMNS, [])
        self.on_screen_resume()

    def on_screen_resume(self) -> None:
        destination = self.segsync.destination
        if destination is None:
            self.query_one("#mapping-status", Static).update(
                Text("Pick a destination first: 1, then Enter on a row.", style="bold")
            )
            self.query_one(DataTable).clear()
            self.loaded_for = None
        elif destination.id != self.loaded_for:
            self.loaded_for = destination.id
            self.query_one(DataTable).loading = True
            self._load(destination.id)
        else:
            self._go_to_requested_row()
            self._show_detail()

    # -- workers -----------------------------------------------------------------

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="mapping",
        description="load the mapping",
    )
    def _load(self, destination_id: int) -> None:
        columns = self.call_backend("read the profile columns", self.backend.columns)
        if columns is None:
            return
        try:
            custom, custom_error = self.backend.custom_fields(destination_id), None
        except Exception as error:  # the mapping still works for reserved fields
            custom, custom_error = [], describe_error(error)
        try:
            saved = self.backend.saved_mapping(destination_id)
        except Exception as error:
            self.post_message(BackendFailed("load the mapping", describe_error(error)))
            return
        mapping = saved or self.call_backend(
            "suggest a mapping", lambda: self.backend.suggested_mapping(destination_id, custom)
        )
        if mapping is None:
            return
        self.post_message(MappingLoaded(columns, custom, mapping, custom_error, saved is not None))
        rows = self.call_backend(
            "read sample rows",
            lambda: self.backend.sample_rows(tuple(c.name for c in columns), SAMPLE_ROWS),
        )
        if rows is not None:
            self.post_message(SampleRowsLoaded(rows))

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="mapping-save",
        description="save the mapping",
    )
    def _save(self, destination_id: int, mapping: FieldMapping) -> None:
        def save() -> bool:
            self.backend.save_mapping(destination_id, mapping)
            return True

        if self.call_backend("save the mapping", save):
            self.post_message(MappingSaved(mapping))

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="mapping",
        description="suggest a mapping",
    )
    def _suggest(self, destination_id: int) -> None:
        def suggest_and_save() -> FieldMapping:
            # As `segsync map --suggest`: only unmapped fields take a suggested
            # column; what the user chose (a no-consent-filter choice too) stays.
            suggested = self.backend.suggested_mapping(destination_id)
            saved = self.backend.saved_mapping(destination_id)
            mapping = saved.filled_from(suggested) if saved is not None else suggested
            self.backend.save_mapping(destination_id, mapping)
            return mapping

        mapping = self.call_backend("suggest a mapping", suggest_and_save)
        if mapping is not None:
            self.post_message(MappingSaved(mapping))

    # -- handlers ----------------------------------------------------------------

    def on_mapping_loaded(self, message: MappingLoaded) -> None:
        self.columns = message.columns
        self.custom_fields = message.custom_fields
        self.custom_fields_error = message.custom_fields_error
        self.mapping = message.mapping
        self.saved = message.saved
        self.segsync.mapping = message.mapping if message.saved else None
        self._fill()

    def on_sample_rows_loaded(self, message: SampleRowsLoaded) -> None:
        self.rows = message.rows
        self._fill()

    def on_mapping_saved(self, message: MappingSaved) -> None:
        self.mapping = message.mapping
        self.saved = True
        self.segsync.mapping = message.mapping
        self._fill()

    def _show_status(self) -> None:
        status = Text(f"{len(self.columns)} columns · {len(self.custom_fields)} custom fields")
        if self.mapping is not None and not self.saved:
            status.append(" · suggested, not saved: s saves it", style="bold yellow")
        if self.custom_fields_error:
            status.append(" · custom fields unavailable: ", style="bold red")
            status.append(safe(self.custom_fields_error))
        self.query_one("#mapping-status", Static).update(status)
        self.refresh_bindings()  # s is offered only for an unsaved suggestion

    # -- rendering ---------------------------------------------------------------

    def _fields(self) -> list[tuple[str, str, str | None]]:
        """(row key, label, mapped column) for every row of the table."""
        mapping = self.mapping or FieldMapping(email="")
        fields: list[tuple[str, str, str | None]] = [
            ("email", "email (required)", mapping.email or None)
        ]
        fields += [(name, name, mapping.reserved.get(name)) for name in RESERVED_FIELDS]
        fields += [
            (f"custom:{name}", f"{name} (custom)", mapping.custom.get(name))
            for name in sorted(set(self.custom_fields) | set(mapping.custom))
        ]
        fields.append((CONSENT_ROW, "consent filter", mapping.consent_column))
        return fields

    def _cell(self, field: str, value: object) -> Text:
        if value is None:
            return Text("∅", style="dim")
        text = str(value)
        limit = FIELD_LIMITS.get(field)
        if limit is not None and len(text) > limit:
            return safe(
                f"{len(text)}>{limit} {text}",
                "bold reverse red",
                no_wrap=True,
                overflow="ellipsis",
            )
        return safe(text, no_wrap=True, overflow="ellipsis")

    def _fill(self) -> None:
        """(Re)draw the fields for the mapping, samples and width."""
        table = self.query_one(RowTable)
        table.loading = False
        rows: list[tuple[str | None, tuple[Text, ...]]] = []
        for key, label, column in self._fields():
            values = [
                self._cell(key, r.get(column)) if column else Text("")
                for r in self.rows[:SAMPLE_ROWS]
            ]
            values += [Text("")] * (SAMPLE_ROWS - len(values))
            style = "bold red" if key == "email" and column is None else ""
            shown = safe(column or "-", "" if column else "dim", no_wrap=True, overflow="ellipsis")
            if key == CONSENT_ROW and column is None:
                shown = self._consent_choice_cell()
                style = shown.style if isinstance(shown.style, str) else ""
            cells = (safe(label, style, no_wrap=True, overflow="ellipsis"), shown, *values)
            rows.append((key, cells))
        table.show_rows(COLUMNS, rows)
        self._go_to_requested_row()
        self._show_status()
        self._show_detail()

    def _go_to_requested_row(self) -> None:
        """Another screen (Preview's m) asked for a row: the consent row, or a
        custom field's; once the fields are loaded, the cursor goes there."""
        wanted = self.segsync.mapping_row
        if wanted is None or not self.columns:
            return
        self.segsync.mapping_row = None
        key = CONSENT_ROW if wanted == "consent" else wanted
        keys = [k for k, _label, _column in self._fields()]
        if key in keys:
            self.query_one(DataTable).move_cursor(row=keys.index(key))

    def _consent_choice_cell(self) -> Text:
        """No consent column: the recorded choice, or that one must be made."""
        if self.mapping is not None and self.mapping.no_consent_filter:
            return Text("off: everyone", style="bold yellow", no_wrap=True, overflow="ellipsis")
        return Text("- choose", style="bold red", no_wrap=True, overflow="ellipsis")

    def _highlighted(self) -> tuple[str, str, str | None] | None:
        fields = self._fields()
        table = self.query_one(DataTable)
        if not self.columns or table.row_count == 0:
            return None
        return fields[max(0, min(table.cursor_row, len(fields) - 1))]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_pick()

    def _show_detail(self) -> None:
        current = self._highlighted()
        if current is None:
            return
        key, label, column = current
        limit = FIELD_LIMITS.get(key)
        text = Text()
        if key == CONSENT_ROW:
            if column:
                text.append(
                    "Only rows whose consent column is true are sent; the rest count as "
                    "no_consent. n sends without a consent filter instead (asks first)."
                )
            elif self.mapping is not None and self.mapping.no_consent_filter:
                text.append("No consent filter: ", style="bold yellow")
                text.append(
                    "every selected profile is sent, opted in or not (your choice, recorded "
                    "with the mapping). n withdraws it; Enter picks a consent column."
                )
            else:
                text.append("No consent column: ", style="bold red")
                text.append(
                    "exports are refused until you choose. Enter picks the column that says "
                    "who opted in; n records that everyone selected may be sent."
                )
        else:
            text.append(safe(label, "bold"))
            text.append(safe(f" ← {column or 'not mapped'}"))
            if limit:
                text.append(
                    f" · SendGrid keeps at most {limit} characters;"
                    " longer values are rejected as too_long"
                )
        over = 0
        if column and limit:
            over = sum(1 for r in self.rows if len(str(r.get(column) or "")) > limit)
        if over:
            text.append(
                f"\n{over} of the sample rows are too long for this field.", style="bold red"
            )
        self.query_one("#mapping-detail", Static).update(text)

    # -- actions -----------------------------------------------------------------

    def action_pick(self) -> None:
        current = self._highlighted()
        destination = self.segsync.destination
        if current is None or destination is None:
            return
        key, label, column = current
        columns = [(c.name, c.type) for c in self.columns]

        def picked(choice: str | None) -> None:
            if choice is None or self.mapping is None:
                return
            if key == CONSENT_ROW and choice == NOT_MAPPED:
                self.action_no_consent_filter()  # a choice to ask for, not a silent unmap
                return
            self._change(_with_column(self.mapping, key, None if choice == NOT_MAPPED else choice))

        none_label = (
            "(no consent filter: send everyone selected)" if key == CONSENT_ROW else "(not mapped)"
        )
        self.app.push_screen(
            ColumnPicker(label, columns, column, required=key == "email", none_label=none_label),
            picked,
        )

    def _change(self, mapping: FieldMapping) -> None:
        """Show and save a changed mapping (saving makes a suggestion the saved one)."""
        destination = self.segsync.destination
        if destination is None:
            return
        self.mapping = mapping
        self._fill()
        self._save(destination.id, mapping)

    def action_no_consent_filter(self) -> None:
        """Record, after an explicit yes, that everyone selected may be sent with
        no consent column; pressed again, withdraw it and ask for a column."""
        destination = self.segsync.destination
        mapping = self.mapping
        if destination is None or mapping is None:
            return
        if mapping.no_consent_filter:
            self._change(replace(mapping, no_consent_filter=False))
            self._pick_consent_column()
            return
        question = (
            f"Send without a consent filter? Every profile selected for {destination.name} "
            "will be sent, whether or not they opted in. The choice is saved with the "
            "mapping and every Preview shows it."
        )

        def answered(yes: bool | None) -> None:
            if yes and self.mapping is not None:
                self._change(replace(self.mapping, consent_column=None, no_consent_filter=True))

        self.app.push_screen(
            ConfirmScreen(question, yes="Send without consent filter", no="Keep the filter"),
            answered,
        )

    def _pick_consent_column(self) -> None:
        fields = self._fields()
        table = self.query_one(DataTable)
        table.move_cursor(row=len(fields) - 1)
        self.action_pick()

    def action_save(self) -> None:
        if self.mapping is not None:
            self._change(self.mapping)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "save":  # only a suggestion nobody saved yet needs it
            return self.mapping is not None and not self.saved
        return True

    def action_suggest(self) -> None:
        if self.segsync.destination is not None:
            self._suggest(self.segsync.destination.id)

    def action_refresh(self) -> None:
        self.loaded_for = None
        self.on_screen_resume()

    def action_preview(self) -> None:
        self.segsync.action_goto("preview")


def _with_column(mapping: FieldMapping, key: str, column: str | None) -> FieldMapping:
    """The mapping with one row's column changed (None: not mapped)."""
    if key == "email":
        return replace(mapping, email=column or "")
    if key == CONSENT_ROW:  # a consent column ends a recorded no-consent-filter choice
        return replace(mapping, consent_column=column, no_consent_filter=False)
    if key.startswith("custom:"):
        name = key.removeprefix("custom:")
        custom = {k: v for k, v in mapping.custom.items() if k != name}
        if column is not None:
            custom[name] = column
        return replace(mapping, custom=custom)
    reserved = {k: v for k, v in mapping.reserved.items() if k != key}
    if column is not None:
        reserved[key] = column
    return replace(mapping, reserved=reserved)
