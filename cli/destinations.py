"""`segsync destinations ...`, `segsync lists` and `segsync map`: set up where contacts go.

The actions themselves (verify and save a destination, merge, check and save a
mapping, create custom fields, suggest one) are `connector.services`, which
the TUI calls too; this module reads the command line and prints the result.

Destination and list names, column names and SendGrid's messages are printed
through `visible` (quoted with `_q`): a list name is whatever someone typed into
SendGrid, and it must not be able to drive the terminal. ``--json`` stays exact.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    open_workspace,
    print_json,
    read_history,
    resolve_state_dir,
    retry_printer,
    saved_mapping,
    say,
)
from store.history_read import destination_json
from store.limits import DEFAULT_CAP
from store.safe_text import visible

RAW = argparse.RawDescriptionHelpFormatter


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., None]
) -> None:
    """destinations (and its subcommands), lists, map."""
    dest = sub.add_parser(
        "destinations",
        help="manage SendGrid destinations (a list on an account, with its key)",
        description="A destination is a SendGrid contact list, the API key that reaches it, "
        "a volume cap and the recorded data-privacy statement. Without a subcommand, lists "
        "them.",
        epilog="examples:\n"
        "  segsync destinations add news --list-id ID --api-key-env SENDGRID_API_KEY --agree\n"
        "  segsync destinations add news --create-list Newsletter --api-key-stdin < key.txt\n"
        "  segsync destinations test news\n  segsync destinations list --json",
        formatter_class=RAW,
    )
    common(dest, workspace=False)
    dest.set_defaults(func=cmd_list)
    dsub = dest.add_subparsers(dest="dest_command", metavar="SUBCOMMAND")
    add = dsub.add_parser(
        "add",
        help="add a destination (checks the key and list with SendGrid first)",
        description="Check the API key and the list with SendGrid, then save the "
        "destination. Nothing is saved if SendGrid says no. The key is kept in the OS "
        "keyring (else a mode-0600 file) when given on stdin, or read from the environment "
        "variable at every run with --api-key-env.",
        epilog="examples:\n"
        "  segsync lists --api-key-env SENDGRID_API_KEY        # find the list id first\n"
        "  segsync destinations add news --list-id 0b1c... --api-key-env SENDGRID_API_KEY --agree\n"
        "  echo $KEY | segsync destinations add news --create-list News --api-key-stdin --eu",
        formatter_class=RAW,
    )
    common(add, workspace=False)
    add.add_argument("name", help="a name of your choice for the destination")
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--list-id", metavar="ID", help="the SendGrid list to fill (`segsync lists` shows them)"
    )
    target.add_argument(
        "--create-list", metavar="LIST_NAME",
        help="use the list of this name, creating it if the account has none",
    )  # fmt: skip
    _key_options(add)
    add.add_argument(
        "--cap", type=int, default=DEFAULT_CAP, metavar="N",
        help=f"refuse exports of more than N contacts (default: {DEFAULT_CAP:,})",
    )  # fmt: skip
    add.add_argument(
        "--agree", action="store_true",
        help="record that you agree to the data-privacy statement (`destinations consent` "
        "shows it); no export runs until it is recorded",
    )  # fmt: skip
    add.set_defaults(func=cmd_add)

    lst = dsub.add_parser(
        "list", help="list destinations", epilog="example: segsync destinations list --json"
    )
    common(lst, workspace=False)
    lst.add_argument("--json", action="store_true", help="print them as JSON (never the key)")
    lst.set_defaults(func=cmd_list)

    show = dsub.add_parser(
        "show", help="one destination, with its key masked",
        epilog="example: segsync destinations show news",
    )  # fmt: skip
    common(show, workspace=False)
    show.add_argument("name", help="the destination")
    show.add_argument("--json", action="store_true", help="print it as JSON")
    show.set_defaults(func=cmd_show)

    remove = dsub.add_parser(
        "remove", help="remove a destination (its run history is kept, its key forgotten)",
        epilog="example: segsync destinations remove news",
    )  # fmt: skip
    common(remove, workspace=False)
    remove.add_argument("name", help="the destination")
    remove.set_defaults(func=cmd_remove)

    consent = dsub.add_parser(
        "consent", help="show and record the data-privacy statement",
        description="Print the data-privacy statement and record that you agree to it "
        "(your user name, the time and the wording are kept). Asks on a terminal.",
        epilog="example: segsync destinations consent news --agree",
    )  # fmt: skip
    common(consent, workspace=False)
    consent.add_argument("name", help="the destination")
    consent.add_argument("--agree", action="store_true", help="agree without being asked")
    consent.set_defaults(func=cmd_consent)

    cap = dsub.add_parser(
        "set-cap", help="change the volume cap", epilog="example: segsync destinations set-cap "
        "news 200000",
    )  # fmt: skip
    common(cap, workspace=False)
    cap.add_argument("name", help="the destination")
    cap.add_argument("cap", type=int, help="the most contacts one export may send")
    cap.set_defaults(func=cmd_set_cap)

    test = dsub.add_parser(
        "test", help="test key, scopes and list (one pass/FAIL line each)",
        epilog="example: segsync destinations test news",
    )  # fmt: skip
    common(test, workspace=False)
    test.add_argument("name", help="the destination")
    test.set_defaults(func=cmd_test)

    lists = sub.add_parser(
        "lists",
        help="the contact lists of a SendGrid account (to find a list id)",
        description="Print the account's contact lists: id, contacts and name. Name a "
        "destination to use its key, or give a key with --api-key-env / --api-key-stdin "
        "before any destination exists.",
        epilog="examples:\n  segsync lists news\n"
        "  segsync lists --api-key-env SENDGRID_API_KEY\n"
        "  segsync lists --api-key-env SENDGRID_API_KEY --eu --json",
        formatter_class=RAW,
    )
    common(lists, workspace=False)
    lists.add_argument("destination", nargs="?", help="use this destination's key and host")
    _key_options(lists)
    lists.add_argument("--json", action="store_true", help="print the lists as JSON")
    lists.set_defaults(func=cmd_lists)

    mapping = sub.add_parser(
        "map",
        help="show or change which profile column feeds which SendGrid field",
        description="Change a destination's field mapping: FIELD=COLUMN pairs are added to "
        "what is saved (nothing else is dropped; --replace starts over). FIELD is email, a "
        "reserved field (first_name, last_name, city, country, postal_code, ...) or a custom "
        "field of the account, which must exist (--create-fields makes it). With no pairs "
        "and no options, prints the mapping. An export needs a consent column or an explicit "
        "--no-consent-filter.",
        epilog="examples:\n"
        "  segsync map news                                       # show it\n"
        "  segsync map news --suggest --consent-column email_opt_in\n"
        "  segsync map news email=email first_name=fname tier=loyalty_tier --create-fields\n"
        "  segsync map news --unset city\n"
        "  segsync map news --replace email=email --no-consent-filter",
        formatter_class=RAW,
    )
    common(mapping)
    mapping.add_argument("destination", help="the destination")
    mapping.add_argument(
        "pairs", nargs="*", metavar="FIELD=COLUMN",
        help="map SendGrid field FIELD from profile column COLUMN",
    )  # fmt: skip
    # FIELD=COLUMN pairs may also come after options (see cli.main._parse).
    mapping.set_defaults(_loose_pairs="pairs", func=cmd_map)
    consent_choice = mapping.add_mutually_exclusive_group()
    consent_choice.add_argument(
        "--consent-column", default=None, metavar="COLUMN",
        help="send only profiles whose COLUMN says yes (true, t, yes, y, 1)",
    )  # fmt: skip
    consent_choice.add_argument(
        "--no-consent-filter", action="store_true",
        help="record that every selected profile may be sent, with no consent column",
    )  # fmt: skip
    mapping.add_argument(
        "--suggest", action="store_true",
        help="also map still-unmapped fields by column name (the account's custom fields "
        "included), as the app's `u` does",
    )  # fmt: skip
    mapping.add_argument(
        "--unset", action="append", default=[], metavar="FIELD",
        help="drop FIELD from the mapping (repeatable; `consent` drops the consent column)",
    )  # fmt: skip
    mapping.add_argument(
        "--replace", action="store_true", help="start from an empty mapping, not the saved one"
    )
    mapping.add_argument(
        "--create-fields", action="store_true",
        help="create mapped custom fields the account lacks (typed from the column)",
    )  # fmt: skip
    mapping.add_argument("--json", action="store_true", help="print the mapping as JSON")


def _key_options(parser: argparse.ArgumentParser) -> None:
    key = parser.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key-env", metavar="VAR",
        help="read the API key from this environment variable (for `add`: at every run, "
        "the key is not stored)",
    )  # fmt: skip
    key.add_argument(
        "--api-key-stdin", action="store_true", help="read the API key from standard input"
    )
    parser.add_argument(
        "--base-url", default=None, metavar="URL",
        help="SendGrid API address (default: the global host; an emulator's URL for trials)",
    )  # fmt: skip
    parser.add_argument("--eu", action="store_true", help="use SendGrid's EU host")


def _q(text: object) -> str:
    """A name from data, quoted and made safe to print."""
    return f"'{visible(text)}'"


def _stores(args: argparse.Namespace) -> tuple[Any, Any]:
    from store.history import History
    from store.paths import history_path
    from store.secrets import KeyStore

    state = resolve_state_dir(args)
    return History(history_path(state)), KeyStore(state)


def _destination(history: Any, name: str) -> Any:
    from store.history_errors import NotFound

    try:
        return history.get_destination(name)
    except NotFound as exc:
        raise CliError(f"{exc}. See `segsync destinations list`.") from exc


def cmd_list(args: argparse.Namespace) -> int:
    with read_history(args) as history:
        rows = [destination_json(d) for d in history.list_destinations()]
    if getattr(args, "json", False):
        print_json(rows)
        return EXIT_OK
    if not rows:
        say("no destinations yet: add one with `segsync destinations add`")
    for row in rows:
        consent = "consent recorded" if row["consent_at"] else "no consent yet"
        print(
            f"{visible(row['name'])}  list {_q(row['list_name'])} "
            f"({visible(row['list_id'])})  {consent}"
        )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from store.secrets import KeyStore

    with read_history(args) as history:
        dest = _destination(history, args.name)
    data = destination_json(dest)
    data["api_key"] = _masked_key(KeyStore(resolve_state_dir(args)), dest)
    if args.json:
        print_json(data)
    else:
        for key, value in data.items():
            print(f"{key:12} {visible(value)}")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    history, keys = _stores(args)
    dest = _destination(history, args.name)
    history.remove_destination(dest.name)
    keys.forget(dest.id)
    print(f"removed {_q(dest.name)}; its key is forgotten and its run history kept")
    return EXIT_OK


def cmd_set_cap(args: argparse.Namespace) -> int:
    history, _keys = _stores(args)
    dest = _destination(history, args.name)
    if args.cap < 1:
        raise CliError("the cap must be at least 1")
    history.update_destination(dest.id, cap=args.cap)
    print(f"{_q(dest.name)} now exports at most {args.cap:,} contacts per run")
    return EXIT_OK


def _masked_key(keys: Any, dest: Any) -> str:
    try:
        return str(keys.load(dest.id, dest.api_key_env, dest.name))
    except LookupError as exc:
        return f"(not available: {exc})"


def _read_key(args: argparse.Namespace, *, required_env: bool = True) -> tuple[Any, str | None]:
    """The key (a Secret) and the env var it came from (None: from stdin)."""
    from store.secrets import Secret

    if args.api_key_stdin:
        key = sys.stdin.readline().strip()
        if not key:
            raise CliError("no API key on standard input")
        return Secret(key), None
    var = args.api_key_env or "SENDGRID_API_KEY"
    if not os.environ.get(var):
        raise CliError(
            f"environment variable {var} is not set: give the key with --api-key-env VAR "
            "or --api-key-stdin"
        )
    return Secret(os.environ[var]), var


def _base_url(args: argparse.Namespace) -> str:
    from connector.hosts import EU_URL, GLOBAL_URL

    url: str = args.base_url or (EU_URL if args.eu else GLOBAL_URL)
    return url


def cmd_add(args: argparse.Namespace) -> int:
    from connector.errors import SendGridError
    from connector.services import save_destination
    from store.operator import current_operator

    history, keys = _stores(args)
    if args.cap < 1:
        raise CliError("the cap must be at least 1")
    key, env_var = _read_key(args)
    try:
        dest, found = save_destination(
            history,
            keys,
            name=args.name,
            key=key,
            base_url=_base_url(args),
            list_id=args.list_id,
            create_list=args.create_list,
            cap=args.cap,
            api_key_env=env_var,
            store_key=env_var is None,
            agreed_by=current_operator() if args.agree else None,
            on_retry=retry_printer("checking the key and list"),
        )
    except SendGridError as exc:
        raise CliError(f"could not add {_q(args.name)}: {exc}") from exc
    print(f"added {_q(dest.name)}: list {_q(found.name)} ({visible(found.id)})")
    if not args.agree:
        say(
            "no export until consent is recorded: "
            f"`segsync destinations consent {visible(dest.name)}`"
        )
    return EXIT_OK


def cmd_consent(args: argparse.Namespace) -> int:
    from connector.consent import CONSENT_STATEMENT
    from store.operator import current_operator

    history, _keys = _stores(args)
    dest = _destination(history, args.name)
    print(CONSENT_STATEMENT)
    agreed = args.agree
    if not agreed and sys.stdin.isatty():
        sys.stderr.write("Type 'I agree' to record it: ")
        sys.stderr.flush()
        agreed = sys.stdin.readline().strip().lower() == "i agree"
    if not agreed:
        raise CliError("consent not recorded (pass --agree, or type 'I agree')")
    history.record_consent(dest.id, current_operator(), CONSENT_STATEMENT)
    print(f"consent recorded for {_q(dest.name)} by {visible(current_operator())}")
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    import asyncio

    from connector.destinations import test_connection

    history, keys = _stores(args)
    dest = _destination(history, args.name)
    try:
        key = keys.load(dest.id, dest.api_key_env, dest.name)
    except LookupError as exc:
        raise CliError(str(exc)) from exc
    checks = asyncio.run(
        test_connection(key, dest.base_url, dest.list_id, on_retry=retry_printer("testing"))
    )
    for check in checks:
        detail = visible(check.detail, multiline=True)
        print(f"{'pass' if check.ok else 'FAIL'}  {visible(check.name)}: {detail}")
    return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED


def cmd_lists(args: argparse.Namespace) -> int:
    """The account's lists, by a destination's key or one given now."""
    from connector.errors import SendGridError
    from connector.services import account_lists

    if args.destination is not None:
        if args.api_key_env or args.api_key_stdin:
            raise CliError("name a destination or give a key (--api-key-env/--api-key-stdin)")
        history, keys = _stores(args)
        dest = _destination(history, args.destination)
        try:
            key = keys.load(dest.id, dest.api_key_env, dest.name)
        except LookupError as exc:
            raise CliError(str(exc)) from exc
        base_url = args.base_url or dest.base_url
    else:
        key, _var = _read_key(args)
        base_url = _base_url(args)
    try:
        lists = account_lists(key, base_url, on_retry=retry_printer("reading the lists"))
    except SendGridError as exc:
        raise CliError(f"could not read the lists: {exc}", EXIT_FAILED) from exc
    if args.json:
        print_json([{"id": x.id, "name": x.name, "contact_count": x.contact_count} for x in lists])
        return EXIT_OK
    if not lists:
        say("the account has no contact lists: `segsync destinations add NAME --create-list "
            "LIST_NAME` makes one")  # fmt: skip
    for x in lists:
        count = f"{x.contact_count:>10,}" if x.contact_count is not None else f"{'?':>10}"
        print(f"{visible(x.id)}  {count}  {visible(x.name)}")
    return EXIT_OK


# -- map -------------------------------------------------------------------------------


def _pairs(args: argparse.Namespace) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for pair in args.pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise CliError(f"expected FIELD=COLUMN, got {_q(pair)}")
        pairs[field.strip()] = column.strip()
    return pairs


def _show_mapping(args: argparse.Namespace) -> int:
    """`segsync map DEST`: the saved mapping, read without SQLAlchemy."""
    with read_history(args) as history:
        dest = _destination(history, args.destination)
        current = saved_mapping(history, dest)
    if args.json:
        print_json(mapping_dict(current))
    else:
        _print_mapping(current, dest.name)
    return EXIT_OK


def mapping_dict(mapping: Any) -> dict[str, Any]:
    return {
        "email": mapping.email,
        "reserved": dict(mapping.reserved),
        "custom": dict(mapping.custom),
        "consent_column": mapping.consent_column,
        "no_consent_filter": mapping.no_consent_filter,
    }


def _print_mapping(mapping: Any, dest_name: str) -> None:
    from connector.consent import consent_filter_refusal

    print(f"{'email':24} <- {visible(mapping.email)}")
    for fld, column in mapping.reserved.items():
        print(f"{visible(fld):24} <- {visible(column)}")
    for fld, column in mapping.custom.items():
        print(f"{visible(fld):24} <- {visible(column)}  (custom field)")
    if mapping.consent_column:
        print(f"consent column: {visible(mapping.consent_column)}")
    elif mapping.no_consent_filter:
        print("consent column: none, by choice (--no-consent-filter): every selected "
              "profile is sent")  # fmt: skip
    else:
        print("consent column: none chosen")
        say(f"warning: {consent_filter_refusal(mapping, dest_name)}")


def cmd_map(args: argparse.Namespace) -> int:
    pairs = _pairs(args)
    changing = bool(
        pairs
        or args.unset
        or args.replace
        or args.suggest
        or args.consent_column is not None
        or args.no_consent_filter
    )
    if not changing and not args.create_fields:
        return _show_mapping(args)
    from connector.errors import SendGridError
    from connector.services import (
        MissingCustomFields,
        ServiceError,
        merge_mapping,
        save_mapping,
        suggest_mapping_for,
    )

    history, keys = _stores(args)
    dest = _destination(history, args.destination)
    current = history.get_mapping(dest.id)
    ws = open_workspace(args)
    retry = retry_printer("checking custom fields")
    suggested = suggest_mapping_for(ws, keys, dest, on_retry=retry) if args.suggest else None
    try:
        mapping = merge_mapping(
            current,
            pairs,
            unset=args.unset,
            consent_column=args.consent_column,
            no_consent_filter=True if args.no_consent_filter else None,
            replace_all=args.replace,
            suggested=suggested,
        )
        saved = save_mapping(
            history, keys, ws, dest, mapping, create_fields=args.create_fields, on_retry=retry
        )
    except MissingCustomFields as exc:
        raise CliError(
            f"{exc}\nAdd --create-fields to create them (typed from their columns)."
        ) from None
    except ServiceError as exc:
        raise CliError(str(exc)) from None
    except SendGridError as exc:
        raise CliError(f"could not create custom fields: {exc}", EXIT_FAILED) from exc
    for name in saved.created:
        say(f"created custom field {_q(name)} on SendGrid")
    if saved.unchecked:
        say(f"warning: the custom fields could not be checked with SendGrid "
            f"({saved.unchecked}); the export checks again before sending")  # fmt: skip
    if args.json:
        print_json(mapping_dict(saved.mapping))
    else:
        _print_mapping(saved.mapping, dest.name)
    return EXIT_OK
