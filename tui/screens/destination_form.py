"""Add or edit a destination: key, base URL, list, cap; test the connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from connector.hosts import GLOBAL_URL
from store.limits import DEFAULT_CAP
from store.safe_text import visible
from tui.backend import Backend, DestinationForm, DestinationRow
from tui.messages import AccountListsLoaded, BackendFailed, ConnectionChecked, DestinationSaved
from tui.screens.base import describe_error
from tui.widgets.check_lines import CheckLines
from tui.widgets.formatting import safe

if TYPE_CHECKING:
    from connector.models import ContactList

NEW_LIST = "\x00new-list"


class DestinationFormScreen(ModalScreen[DestinationRow | None]):
    """Dismisses with the saved destination, or None when cancelled.

    Lists are fetched live from the account once a key and URL are filled in
    (ctrl+l); "test connection" (ctrl+t) checks key, scopes and list and shows
    each as a pass/fail line with SendGrid's own message.
    """

    HELP_TITLE = "Destination"
    PURPOSE = (
        "A SendGrid destination: its name, API key (kept in the keyring, never in history), "
        "API address, list and cap. ctrl+l fetches the account's lists; ctrl+t checks the "
        "key, its scopes and the list, each with SendGrid's own words."
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+l",
            "fetch_lists",
            "Fetch lists",
            tooltip="read the account's lists with the key and address given",
        ),
        Binding("ctrl+t", "test", "Test", tooltip="check the key, its scopes and the list"),
        Binding(
            "ctrl+s", "save", "Save", tooltip="save the destination (the key goes to the keyring)"
        ),
        Binding("escape", "cancel", "Cancel", tooltip="close without saving"),
        # a dialog does not see the app's keys; ? would be typed into a field
        Binding("f1", "app.help", "Help", show=False),
    ]

    def __init__(self, backend: Backend, existing: DestinationRow | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.existing = existing.destination if existing else None
        self.key_hint = existing.key_hint if existing else None

    def compose(self) -> ComposeResult:
        existing = self.existing
        with Vertical(classes="dialog form"):
            title = f"Edit {existing.name}" if existing else "Add a destination"
            yield Static(safe(title, "bold"))
            with VerticalScroll():
                # stored values are shown made visible; read_form maps an
                # untouched one back to what is stored
                yield from self._row(
                    "Name",
                    Input(visible(existing.name) if existing else "", id="name", compact=True),
                )
                key_hint = (
                    f"stored {visible(self.key_hint)}; empty keeps it" if self.key_hint else "SG.…"
                )
                yield from self._row(
                    "API key",
                    Input(password=True, placeholder=key_hint, id="api_key", compact=True),
                )
                yield from self._row(
                    "Base URL",
                    Input(
                        visible(existing.base_url) if existing else GLOBAL_URL,
                        id="base_url",
                        compact=True,
                    ),
                )
                yield from self._row(
                    "List",
                    Select(
                        self._list_options([]),
                        id="list",
                        prompt="ctrl+l to fetch lists",
                        compact=True,
                    ),
                )
                yield from self._row(
                    "New list",
                    Input(placeholder="name, to create a list", id="new_list", compact=True),
                )
                yield from self._row(
                    "Cap",
                    Input(
                        str(existing.cap if existing else DEFAULT_CAP),
                        type="integer",
                        id="cap",
                        compact=True,
                    ),
                )
            yield CheckLines(id="checks")
            yield Static("", id="form-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Lists ^l", id="fetch", compact=True)
                yield Button("Test ^t", id="test", compact=True)
                yield Button("Save ^s", id="save", variant="primary", compact=True)
                yield Button("Cancel esc", id="cancel", compact=True)

    @staticmethod
    def _row(label: str, widget: Input | Select[str]) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label(label)
            yield widget

    def _list_options(self, lists: list[ContactList]) -> list[tuple[Text, str]]:
        """List names come from the account: Text, never markup (a str prompt
        in a Select is parsed, and "[/]x" crashed the form)."""
        options = [(safe(f"{item.name} ({item.contact_count or 0:,})"), item.id) for item in lists]
        existing = self.existing
        if existing and existing.list_id and all(item.id != existing.list_id for item in lists):
            options.insert(0, (safe(existing.list_name or existing.list_id), existing.list_id))
        options.append((Text("Create the list named below"), NEW_LIST))
        return options

    def on_mount(self) -> None:
        if self.existing and self.existing.list_id:
            self.query_one("#list", Select).value = self.existing.list_id
        self.query_one("#name", Input).focus()

    # -- reading the form ------------------------------------------------------

    def _value(self, widget_id: str) -> str:
        value = self.query_one(f"#{widget_id}", Input).value.strip()
        existing = self.existing
        if existing is not None and widget_id in ("name", "base_url"):
            stored = existing.name if widget_id == "name" else existing.base_url
            if value == visible(stored).strip():
                return stored.strip()  # shown made visible, left as it was
        return value

    def read_form(self, require_list: bool = True) -> DestinationForm:
        """The form as data; raises ValueError naming the field to fix.
        Lists can be fetched before one is chosen, hence `require_list`."""
        name = self._value("name")
        if not name:
            raise ValueError("Give the destination a name.")
        api_key = self.query_one("#api_key", Input).value.strip() or None
        if api_key is None and self.existing is None:
            raise ValueError("Enter the SendGrid API key (it starts with SG.).")
        choice = self.query_one("#list", Select).value
        new_list = self._value("new_list") or None
        list_id = choice if isinstance(choice, str) and choice != NEW_LIST else None
        if require_list and list_id is None and new_list is None:
            raise ValueError("Pick a list (ctrl+l fetches them) or type a new list name.")
        try:
            cap = int(self._value("cap"))
        except ValueError:
            raise ValueError("The cap must be a whole number of profiles.") from None
        if cap <= 0:
            raise ValueError("The cap must be above zero.")
        return DestinationForm(
            name=name,
            base_url=self._value("base_url") or GLOBAL_URL,
            api_key=api_key,
            list_id=list_id,
            new_list_name=new_list if list_id is None else None,
            cap=cap,
            id=self.existing.id if self.existing else None,
        )

    def _show_error(self, text: str) -> None:
        self.query_one("#form-error", Static).update(safe(text, multiline=True))

    def _form_or_error(self, require_list: bool = True) -> DestinationForm | None:
        try:
            form = self.read_form(require_list)
        except ValueError as error:
            self._show_error(str(error))
            return None
        self._show_error("")
        return form

    # -- actions ---------------------------------------------------------------

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        actions = {
            "fetch": self.action_fetch_lists,
            "test": self.action_test,
            "save": self.action_save,
            "cancel": self.action_cancel,
        }
        actions[event.button.id or "cancel"]()

    def action_fetch_lists(self) -> None:
        form = self._form_or_error(require_list=False)
        if form is not None:
            self.query_one("#list", Select).prompt = "fetching lists…"
            self._fetch_lists(form)

    def action_test(self) -> None:
        form = self._form_or_error(require_list=False)
        if form is not None:
            self.query_one(CheckLines).show_running()
            self._test(form)

    def action_save(self) -> None:
        form = self._form_or_error()
        if form is not None:
            self._save(form)

    def action_cancel(self) -> None:
        self.dismiss(None)

    # -- workers (never touch widgets) -----------------------------------------

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="form-lists",
        description="fetch the account's lists",
    )
    def _fetch_lists(self, form: DestinationForm) -> None:
        try:
            self.post_message(AccountListsLoaded(self.backend.account_lists(form)))
        except Exception as error:
            self.post_message(BackendFailed("fetch lists", describe_error(error)))

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="form-test",
        description="test the connection",
    )
    def _test(self, form: DestinationForm) -> None:
        try:
            self.post_message(ConnectionChecked(self.backend.test_connection(form)))
        except Exception as error:
            self.post_message(BackendFailed("test the connection", describe_error(error)))

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="form-save",
        description="save the destination",
    )
    def _save(self, form: DestinationForm) -> None:
        try:
            self.post_message(DestinationSaved(self.backend.save_destination(form)))
        except Exception as error:
            self.post_message(BackendFailed("save", describe_error(error)))

    # -- handlers --------------------------------------------------------------

    def on_account_lists_loaded(self, message: AccountListsLoaded) -> None:
        select = self.query_one("#list", Select)
        current = select.value
        select.set_options(self._list_options(message.lists))
        select.prompt = f"{len(message.lists)} lists: pick one"
        if isinstance(current, str) and any(
            o[1] == current for o in self._list_options(message.lists)
        ):
            select.value = current

    def on_connection_checked(self, message: ConnectionChecked) -> None:
        self.query_one(CheckLines).show(message.checks)

    def on_destination_saved(self, message: DestinationSaved) -> None:
        self.dismiss(message.destination)

    def on_backend_failed(self, message: BackendFailed) -> None:
        message.stop()
        if message.action == "fetch lists":
            self.query_one("#list", Select).prompt = "ctrl+l to fetch lists"
        if message.action == "test the connection":
            self.query_one(CheckLines).update("")
        self._show_error(f"Could not {message.action}: {message.error}")
