"""`segsync destinations ...` and `segsync map`: set up where contacts go.

Destination and list names, column names and SendGrid's messages are printed
through `visible` (quoted with `_q`): a list name is whatever someone typed into
SendGrid, and it must not be able to drive the terminal. ``--json`` stays exact.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from store.safe_text import visible
from tui.cli import EXIT_FAILED, EXIT_OK, CliError
from tui.cli_commands import open_workspace, print_json, resolve_state_dir


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
    from store.history import NotFound

    try:
        return history.get_destination(name)
    except NotFound as exc:
        raise CliError(f"{exc}. See `segsync destinations list`.") from exc


def destination_dict(dest: Any) -> dict[str, Any]:
    """What `show`/`list` print; the key itself is never part of it."""
    return {
        "name": dest.name,
        "list_id": dest.list_id,
        "list_name": dest.list_name,
        "base_url": dest.base_url,
        "key_storage": dest.key_storage,
        "api_key_env": dest.api_key_env,
        "cap": dest.cap,
        "consent_by": dest.consent_by,
        "consent_at": dest.consent_at.isoformat() if dest.consent_at else None,
    }


def cmd_destinations(args: argparse.Namespace) -> int:
    command = args.dest_command or "list"
    history, keys = _stores(args)
    if command == "add":
        return _add(args, history, keys)
    if command == "list":
        rows = [destination_dict(d) for d in history.list_destinations()]
        if getattr(args, "json", False):
            print_json(rows)
        elif not rows:
            print("no destinations yet: add one with `segsync destinations add`")
        for row in rows if not getattr(args, "json", False) else []:
            consent = "consent recorded" if row["consent_at"] else "no consent yet"
            print(
                f"{visible(row['name'])}  list {_q(row['list_name'])} "
                f"({visible(row['list_id'])})  {consent}"
            )
        return EXIT_OK
    dest = _destination(history, args.name)
    if command == "show":
        data = destination_dict(dest)
        data["api_key"] = _masked_key(keys, dest)
        if args.json:
            print_json(data)
        else:
            for key, value in data.items():
                print(f"{key:12} {visible(value)}")
        return EXIT_OK
    if command == "remove":
        history.remove_destination(dest.name)
        keys.forget(dest.id)
        print(f"removed {_q(dest.name)}; its key is forgotten and its run history kept")
        return EXIT_OK
    if command == "consent":
        return _consent(args, history, dest)
    if command == "set-cap":
        if args.cap < 1:
            raise CliError("the cap must be at least 1")
        history.update_destination(dest.id, cap=args.cap)
        print(f"{_q(dest.name)} now exports at most {args.cap:,} contacts per run")
        return EXIT_OK
    if command == "test":
        return _test(keys, dest)
    raise CliError(f"unknown subcommand {command!r}")


def _masked_key(keys: Any, dest: Any) -> str:
    try:
        return str(keys.load(dest.id, dest.api_key_env, dest.name))
    except Exception as exc:
        return f"(not available: {exc})"


def _read_key(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The key from stdin, or the name of the env var that holds it."""
    if args.api_key_stdin:
        key = sys.stdin.readline().strip()
        if not key:
            raise CliError("no API key on standard input")
        return key, None
    var = args.api_key_env or "SENDGRID_API_KEY"
    if not os.environ.get(var):
        raise CliError(
            f"environment variable {var} is not set: give the key with --api-key-env VAR "
            "or --api-key-stdin"
        )
    return None, var


def _add(args: argparse.Namespace, history: Any, keys: Any) -> int:
    from connector.consent import CONSENT_STATEMENT
    from connector.destinations import verify_destination
    from connector.errors import SendGridError
    from connector.hosts import EU_URL, GLOBAL_URL
    from store.operator import current_operator
    from store.secrets import Secret

    base_url = args.base_url or (EU_URL if args.eu else GLOBAL_URL)
    key, env_var = _read_key(args)
    secret = Secret(key) if key is not None else Secret(os.environ[env_var or ""])
    try:
        found = asyncio.run(
            verify_destination(secret, base_url, list_id=args.list_id, create_list=args.create_list)
        )
    except SendGridError as exc:
        raise CliError(f"could not add {_q(args.name)}: {exc}") from exc
    if args.cap < 1:
        raise CliError("the cap must be at least 1")
    dest = history.add_destination(
        name=args.name,
        list_id=found.id,
        list_name=found.name,
        base_url=base_url,
        api_key_env=env_var,
        key_storage="env" if env_var else "pending",
        cap=args.cap,
    )
    if key is not None:
        storage = keys.save(dest.id, key)
        history.update_destination(dest.id, key_storage=storage)
    if args.agree:
        history.record_consent(dest.id, current_operator(), CONSENT_STATEMENT)
    print(f"added {_q(args.name)}: list {_q(found.name)} ({visible(found.id)})")
    if not args.agree:
        print(
            "no export until consent is recorded: "
            f"`segsync destinations consent {visible(args.name)}`"
        )
    return EXIT_OK


def _consent(args: argparse.Namespace, history: Any, dest: Any) -> int:
    from connector.consent import CONSENT_STATEMENT
    from store.operator import current_operator

    print(CONSENT_STATEMENT)
    agreed = args.agree
    if not agreed and sys.stdin.isatty():
        agreed = input("Type 'I agree' to record it: ").strip().lower() == "i agree"
    if not agreed:
        raise CliError("consent not recorded (pass --agree, or type 'I agree')")
    history.record_consent(dest.id, current_operator(), CONSENT_STATEMENT)
    print(f"consent recorded for {_q(dest.name)} by {visible(current_operator())}")
    return EXIT_OK


def _test(keys: Any, dest: Any) -> int:
    from connector.destinations import test_connection

    try:
        key = keys.load(dest.id, dest.api_key_env, dest.name)
    except Exception as exc:
        raise CliError(str(exc)) from exc
    checks = asyncio.run(test_connection(key, dest.base_url, dest.list_id))
    for check in checks:
        detail = visible(check.detail, multiline=True)
        print(f"{'pass' if check.ok else 'FAIL'}  {visible(check.name)}: {detail}")
    return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED


def cmd_map(args: argparse.Namespace) -> int:
    from store.plan import (
        RESERVED_FIELD_LIMITS,
        FieldMapping,
        MappingError,
        suggest_mapping,
        validate_mapping,
    )

    history, keys = _stores(args)
    dest = _destination(history, args.destination)
    ws = open_workspace(args)
    columns = ws.columns()
    pairs: dict[str, str] = {}
    for pair in args.pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field or not column:
            raise CliError(f"expected FIELD=COLUMN, got {_q(pair)}")
        pairs[field.strip()] = column.strip()
    consent = args.consent_column
    if args.suggest:
        suggested = suggest_mapping(columns)
        base = {"email": suggested.email, **suggested.reserved, **suggested.custom}
        pairs = {**{k: v for k, v in base.items() if v}, **pairs}
        consent = consent or suggested.consent_column
    if "email" not in pairs:
        raise CliError("the mapping needs email=COLUMN")
    reserved = {f: c for f, c in pairs.items() if f in RESERVED_FIELD_LIMITS}
    custom = {f: c for f, c in pairs.items() if f != "email" and f not in RESERVED_FIELD_LIMITS}
    mapping = FieldMapping(
        email=pairs["email"], reserved=reserved, custom=custom, consent_column=consent
    )
    try:
        validate_mapping(mapping, columns)
    except MappingError as exc:
        raise CliError(str(exc)) from exc
    if args.create_fields and custom:
        _create_fields(keys, dest, mapping, columns)
    history.set_mapping(dest.id, mapping)
    for field, column in pairs.items():
        print(f"{visible(field):24} <- {visible(column)}")
    shown = visible(consent) if consent else "(none: every selected profile is sent)"
    print(f"consent column: {shown}")
    return EXIT_OK


def _create_fields(keys: Any, dest: Any, mapping: Any, columns: list[Any]) -> None:
    """Create the mapped custom fields that the account lacks, typed from the column."""
    from connector.client import SendGridClient
    from connector.errors import SendGridError

    types = {c.name: c.type.upper() for c in columns}

    def field_type(column: str) -> str:
        kind = types.get(column, "")
        if any(t in kind for t in ("INT", "DOUBLE", "DECIMAL", "FLOAT", "REAL", "NUMERIC")):
            return "Number"
        if "DATE" in kind or "TIMESTAMP" in kind:
            return "Date"
        return "Text"

    async def create() -> list[str]:
        made = []
        async with SendGridClient(
            keys.load(dest.id, dest.api_key_env, dest.name), dest.base_url
        ) as client:
            custom, _reserved = await client.field_definitions()
            existing = {f.name.lower() for f in custom}
            for name, column in mapping.custom.items():
                if name.lower() not in existing:
                    await client.create_field(name, field_type(column))
                    made.append(name)
        return made

    try:
        made = asyncio.run(create())
    except SendGridError as exc:
        raise CliError(f"could not create custom fields: {exc}", EXIT_FAILED) from exc
    for name in made:
        print(f"created custom field {_q(name)} on SendGrid")
