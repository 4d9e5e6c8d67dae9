"""`segsync syncs ...`: saved, scheduled exports on the command line.

``syncs add|list|show|edit|remove|pause|resume`` keep syncs in the history;
``syncs run NAME`` runs one now; ``syncs run-due`` (what a timer calls every
minute) runs what is due; ``syncs install|uninstall`` writes or removes that
timer; ``syncs alerts`` lists failures nobody acknowledged yet (``--ack``);
``syncs key-file DEST`` gives a timer a key it can read without a keyring.

Names, messages and commands come from users, files or the network: printed
through `visible`. ``--json`` stays exact.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from cli.common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    print_json,
    read_history,
    resolve_state_dir,
    split_names,
    workspace_path,
)
from store.safe_text import visible


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., None]
) -> None:
    """Register ``syncs`` and its subcommands (``common`` adds --workspace/--state-dir)."""
    syncs = sub.add_parser(
        "syncs",
        help="saved exports that run on a schedule or when the profiles are refreshed",
        description="Saved syncs: a workspace, a destination, segments and a trigger. "
        "`syncs install` sets up a timer that calls `syncs run-due` every minute.",
        epilog="example: segsync syncs add nightly --destination news --segment high_value "
        '--cron "0 2 * * *" && segsync syncs install --systemd-user --enable',
    )
    common(syncs, workspace=False)
    syncs.set_defaults(func=cmd_syncs)
    ssub = syncs.add_subparsers(dest="syncs_command", metavar="SUBCOMMAND")

    add = ssub.add_parser("add", help="save a new sync")
    common(add)
    add.add_argument("name", help="a name of your choice for the sync")
    add.add_argument("--destination", required=True, metavar="NAME", help="where it exports")
    _config_options(add, adding=True)

    lst = ssub.add_parser("list", help="syncs with their last run, result and next run")
    common(lst, workspace=False)
    lst.add_argument("--json", action="store_true", help="print them as JSON")

    show = ssub.add_parser("show", help="one sync: settings, state and recent events")
    common(show, workspace=False)
    show.add_argument("name", help="the sync")
    show.add_argument("--json", action="store_true", help="print it as JSON")

    edit = ssub.add_parser("edit", help="change a sync (a new trigger re-times it from now)")
    common(edit)
    edit.add_argument("name", help="the sync")
    edit.add_argument("--rename", default=None, metavar="NEW_NAME", help="give it a new name")
    edit.add_argument("--destination", default=None, metavar="NAME", help="export elsewhere")
    _config_options(edit, adding=False)

    for verb, text in (
        ("remove", "remove a sync (its runs and events stay on record)"),
        ("pause", "stop a sync from running until resumed"),
        ("resume", "let a paused sync run again (timed from now)"),
    ):
        p = ssub.add_parser(verb, help=text)
        common(p, workspace=False)
        p.add_argument("name", help="the sync")

    run = ssub.add_parser("run", help="run one sync now (its schedule stays as it is)")
    common(run, workspace=False)
    run.add_argument("name", help="the sync")
    run.add_argument("--json", action="store_true", help="print the attempt as JSON")

    due = ssub.add_parser(
        "run-due",
        help="run every sync that is due, once (what the timer calls every minute)",
        description="Run each due sync once, one at a time per destination. Keys come from "
        "the destination's environment variable (also read from <state>/syncs.env) or "
        "segsync's owner-only key file. Exit 0: nothing failed; 1: a sync failed; "
        "4: stopped.",
    )
    common(due, workspace=False)
    due.add_argument("--json", action="store_true", help="print the attempts as JSON")
    due.add_argument("--quiet", action="store_true", help="print only failures")

    alerts = ssub.add_parser("alerts", help="failures nobody has acknowledged yet")
    common(alerts, workspace=False)
    alerts.add_argument("--ack", nargs="?", const="*", default=None, metavar="NAME",
                        help="acknowledge them (all, or one sync's)")  # fmt: skip
    alerts.add_argument("--json", action="store_true", help="print them as JSON")

    install = ssub.add_parser("install", help="call run-due every minute (systemd or cron)")
    common(install, workspace=False)
    _scheduler_options(install)
    install.add_argument(
        "--enable", action="store_true", help="systemd: also daemon-reload and start the timer"
    )
    uninstall = ssub.add_parser("uninstall", help="remove what `syncs install` set up")
    common(uninstall, workspace=False)
    _scheduler_options(uninstall)

    key = ssub.add_parser(
        "key-file",
        help="give scheduled runs a destination's key in segsync's owner-only key file",
        description="Copy a destination's API key (from the keyring, where it is unlocked, "
        "or from standard input) into <state>/keys/, mode 0600, where `run-due` finds it "
        "without a keyring.",
    )
    common(key, workspace=False)
    key.add_argument("destination", help="the destination whose key scheduled runs need")
    key.add_argument("--api-key-stdin", action="store_true", help="read the key from stdin")
    handlers = _handlers()
    for name, parser in ssub.choices.items():
        parser.set_defaults(func=handlers[name])
        parser.epilog = parser.epilog or f"example: {EXAMPLES[name]}"


EXAMPLES = {
    "add": "segsync syncs add nightly --destination news --segment high_value,germany "
    '--cron "0 2 * * *"',
    "list": "segsync syncs list --json",
    "show": "segsync syncs show nightly",
    "edit": "segsync syncs edit nightly --every 6h --mode mirror",
    "remove": "segsync syncs remove nightly",
    "pause": "segsync syncs pause nightly",
    "resume": "segsync syncs resume nightly",
    "run": "segsync syncs run nightly",
    "run-due": "segsync syncs run-due --quiet",
    "alerts": "segsync syncs alerts --ack nightly",
    "install": "segsync syncs install --systemd-user --enable",
    "uninstall": "segsync syncs uninstall --cron",
    "key-file": "segsync syncs key-file news",
}


def _config_options(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    parser.add_argument(
        "--segment", action="append", default=[], dest="segments", metavar="NAME[,NAME]",
        help="segment to export: repeat it or separate names with commas",
    )  # fmt: skip
    parser.add_argument(
        "--mode", choices=("upsert", "mirror"), default=None,
        help="upsert (default): add and update; mirror: also REMOVE who left the segments",
    )  # fmt: skip
    incremental = parser.add_mutually_exclusive_group()
    incremental.add_argument(
        "--incremental", action="store_true", default=None,
        help="send only contacts that are new or changed since segsync last sent them",
    )  # fmt: skip
    if not adding:
        incremental.add_argument(
            "--no-incremental", dest="incremental", action="store_false",
            help="send every selected contact again at each run",
        )  # fmt: skip
    trigger = parser.add_mutually_exclusive_group(required=adding)
    trigger.add_argument("--every", metavar="INTERVAL", help="e.g. 30m, 6h, 1d")
    trigger.add_argument("--cron", metavar="EXPR", help='five fields, e.g. "0 6 * * *"')
    trigger.add_argument(
        "--on-refresh",
        action="store_true",
        default=None,
        help="run when the profile source changed since the last successful run",
    )
    parser.add_argument("--tz", default=None, help="time zone of --cron (default: the machine's)")
    parser.add_argument(
        "--allow-removals", type=int, default=None, metavar="N",
        help="mirror: allow up to N removals per run past the destination's guardrail",
    )  # fmt: skip
    parser.add_argument(
        "--max-rejected-share", type=float, default=None, metavar="SHARE",
        help="a run where SendGrid rejects more than this share of rows is a failure "
        "(default 0.05)",
    )  # fmt: skip
    parser.add_argument(
        "--on-failure", default=None, metavar="CMD",
        help="shell command run on failure with the run's JSON summary on stdin",
    )  # fmt: skip
    parser.add_argument(
        "--hook-timeout", type=float, default=None, metavar="SECONDS",
        help="stop the --on-failure command after this long (default 30)",
    )  # fmt: skip
    if not adding:
        parser.add_argument("--no-on-failure", action="store_true", help="drop the command")
    else:
        parser.add_argument("--paused", action="store_true", help="save it paused")


def _scheduler_options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--systemd-user", action="store_true", help="a systemd user timer")
    which.add_argument("--cron", action="store_true", help="a crontab line")
    parser.add_argument(
        "--unit-dir", type=Path, default=None, help="where to write units (default: ~/.config/"
        "systemd/user)",
    )  # fmt: skip


# -- dispatch ------------------------------------------------------------------------


def cmd_syncs(args: argparse.Namespace) -> int:
    """`segsync syncs` with no subcommand lists them."""
    return _list(args)


def _handlers() -> dict[str, Callable[[argparse.Namespace], int]]:
    return {
        "add": _add,
        "list": _list,
        "show": _show,
        "edit": _edit,
        "remove": _remove,
        "pause": _pause,
        "resume": _resume,
        "run": _run,
        "run-due": _run_due,
        "alerts": _alerts,
        "install": _install,
        "uninstall": _uninstall,
        "key-file": _key_file,
    }


def _now() -> datetime:
    from connector.syncs import utc_now

    return utc_now()


def _history(args: argparse.Namespace) -> Any:
    from store.history import History
    from store.paths import history_path

    return History(history_path(resolve_state_dir(args)))


def _sync(history: Any, name: str) -> Any:
    return history.get_sync(name)


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "-"


# -- add / edit ------------------------------------------------------------------------


def _add(args: argparse.Namespace) -> int:
    from connector.syncs import create_sync
    from store.history_errors import NotFound

    history = _history(args)
    try:
        sync = create_sync(
            history,
            name=args.name,
            destination=args.destination,
            segments=list(split_names(args.segments)),
            workspace=workspace_path(args),
            now=_now(),
            mode=args.mode or "upsert",
            incremental=bool(args.incremental),
            every=args.every,
            cron=args.cron,
            on_refresh=bool(args.on_refresh),
            timezone=args.tz,
            allow_removals=args.allow_removals,
            max_rejected_share=args.max_rejected_share,
            on_failure=args.on_failure,
            hook_timeout=args.hook_timeout,
        )
    except NotFound as exc:
        raise CliError(f"{exc}. See `segsync destinations list`.") from None
    if args.paused:
        history.update_sync(sync.id, updated_at=_now(), paused=True)
    print(f"added sync {visible(sync.name)}: {_describe(history, history.get_sync(sync.id))}")
    for warning in _not_ready(history, sync, resolve_state_dir(args)):
        print(f"warning: {warning}")
    if not _scheduler_installed(resolve_state_dir(args)):
        print("nothing calls run-due yet: `segsync syncs install --systemd-user --enable` "
              "(or --cron)")  # fmt: skip
    return EXIT_OK


def _edit(args: argparse.Namespace) -> int:
    from connector.syncs import edit_sync
    from store.history_errors import NotFound

    history = _history(args)
    sync = _sync(history, args.name)
    changes: dict[str, Any] = {}
    if args.rename:
        changes["name"] = args.rename
    if args.destination:
        changes["destination"] = args.destination
    if getattr(args, "workspace", None):
        changes["workspace"] = args.workspace
    if args.segments:
        changes["segments"] = list(split_names(args.segments))
    if args.mode:
        changes["mode"] = args.mode
    if args.incremental is not None:
        changes["incremental"] = args.incremental
    if args.every is not None:
        changes["every"] = args.every
    if args.cron is not None:
        changes["cron"] = args.cron
    if args.on_refresh:
        changes["on_refresh"] = True
    if args.tz is not None:
        changes["timezone"] = args.tz
    for name in ("allow_removals", "max_rejected_share", "on_failure", "hook_timeout"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.no_on_failure:
        changes["on_failure"] = None
    if not changes:
        raise CliError("nothing to change (see `segsync syncs edit --help`)")
    try:
        sync = edit_sync(history, sync, _now(), **changes)
    except NotFound as exc:
        raise CliError(f"{exc}. See `segsync destinations list`.") from None
    print(f"sync {visible(sync.name)}: {_describe(history, sync)}")
    return EXIT_OK


def _not_ready(history: Any, sync: Any, state: Path) -> list[str]:
    """What would make this sync's first run fail, said now rather than at 2 a.m."""
    dest = history.get_destination(sync.destination_id)
    name = visible(dest.name)
    out = []
    if history.get_mapping(dest.id) is None:
        out.append(f"{name} has no field mapping yet: `segsync map {name} email=COLUMN ...`")
    if not dest.consented:
        out.append(f"{name} has no data-privacy acknowledgment: "
                   f"`segsync destinations consent {name}`")  # fmt: skip
    key_file = state / "keys" / f"destination-{dest.id}.key"
    if dest.key_storage == "keyring" and not dest.api_key_env and not key_file.exists():
        out.append(f"{name} keeps its key in the OS keyring, which a timer cannot unlock: "
                   f"`segsync syncs key-file {name}`")  # fmt: skip
    return out


def _describe(history: Any, sync: Any) -> str:
    from connector.syncs import describe_trigger

    dest = history.get_destination(sync.destination_id).name
    kind = sync.mode + (", incremental" if sync.incremental else "")
    when = describe_trigger(sync)
    nxt = f", next {_when(sync.next_due_at)}" if sync.next_due_at and not sync.paused else ""
    paused = " (paused)" if sync.paused else ""
    return (
        f"{visible(', '.join(sync.segments))} of {visible(sync.workspace)} to "
        f"{visible(dest)} ({kind}), {when}{nxt}{paused}"
    )


# -- list / show / remove / pause / resume -------------------------------------------------


def status_json(status: Any) -> dict[str, Any]:
    """A `connector.syncs.SyncStatus` as JSON (what `syncs list --json` prints)."""
    out = dict(status.__dict__)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    out["segments"] = list(status.segments)
    return out


def _list(args: argparse.Namespace) -> int:
    from connector.syncs import sync_overview

    with read_history(args) as history:
        rows = sync_overview(history, _now())
    as_json = getattr(args, "json", False)  # plain `segsync syncs` lists too
    if as_json:
        print_json([status_json(s) for s in rows])
        return EXIT_OK
    if not rows:
        print("no syncs yet: `segsync syncs add NAME --destination D --segment S --every 6h`")
    for s in rows:
        result = "running" if s.running else (s.last_result or "never ran")
        if s.paused:
            nxt = "paused"
        elif s.waiting_for is not None:
            nxt = s.waiting_for + (f" (retry {_when(s.next_run_at)})" if s.next_run_at else "")
        else:
            nxt = f"next {_when(s.next_run_at)}"
        run = f" (run {s.last_run_id})" if s.last_run_id else ""
        flag = "!" if s.alerts else " "
        print(
            f"{flag} {visible(s.name):<16} {visible(s.destination):<14} {s.trigger:<28} "
            f"last {_when(s.last_attempt_at)} {result}{run}; {nxt}"
        )
    alerts = sum(s.alerts for s in rows)  # counted by sync_overview, as `syncs alerts` lists them
    if alerts:
        print(f"{alerts} failure(s) not acknowledged: `segsync syncs alerts`")
    return EXIT_OK


def sync_json(history: Any, sync: Any) -> dict[str, Any]:
    from connector.syncs import describe_trigger

    data: dict[str, Any] = {
        key: (value.isoformat() if isinstance(value, datetime) else value)
        for key, value in sync.__dict__.items()
    }
    data["segments"] = list(sync.segments)
    data["destination"] = history.get_destination(sync.destination_id).name
    data["trigger_text"] = describe_trigger(sync)
    data["events"] = [
        {
            key: (value.isoformat() if isinstance(value, datetime) else value)
            for key, value in event.__dict__.items()
        }
        for event in history.sync_events(sync.id)
    ]
    return data


def _show(args: argparse.Namespace) -> int:
    with read_history(args) as history:
        return _show_sync(args, history)


def _show_sync(args: argparse.Namespace, history: Any) -> int:
    sync = _sync(history, args.name)
    if args.json:
        print_json(sync_json(history, sync))
        return EXIT_OK
    print(f"sync {visible(sync.name)}: {_describe(history, sync)}")
    for key in ("last_attempt_at", "last_success_at", "next_due_at"):
        print(f"  {key:<18} {_when(getattr(sync, key))}")
    run = (
        f" (run {sync.last_run_id}: `segsync runs show {sync.last_run_id}`)"
        if (sync.last_run_id)
        else ""
    )
    print(f"  {'last_result':<18} {sync.last_result or 'never ran'}{run}")
    if sync.last_message:
        print(f"  {'last_message':<18} {visible(sync.last_message)}")
    if sync.on_failure:
        print(f"  {'on_failure':<18} {visible(sync.on_failure)}")
    if sync.running_pid:
        print(f"  {'running':<18} process {sync.running_pid} since {_when(sync.running_since)}")
    events = history.sync_events(sync.id)
    if events:
        print("  events (newest first):")
    for event in events:
        times = f" x{event.count} until {_when(event.last_at)}" if event.count > 1 else ""
        run = f" run {event.run_id}" if event.run_id else ""
        alert = " !" if event.alert and event.acknowledged_at is None else ""
        message = f": {visible(event.message)}" if event.message else ""
        print(f"    {_when(event.at)} {event.kind} {event.result}{run}{times}{alert}{message}")
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    history = _history(args)
    sync = _sync(history, args.name)
    history.remove_sync(sync.id, _now())
    print(f"removed sync {visible(sync.name)}; its runs and events stay on record")
    return EXIT_OK


def _pause(args: argparse.Namespace) -> int:
    history = _history(args)
    sync = _sync(history, args.name)
    history.update_sync(sync.id, updated_at=_now(), paused=True)
    print(f"paused sync {visible(sync.name)}: it does not run until `segsync syncs resume`")
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    from connector.syncs import edit_sync

    history = _history(args)
    sync = edit_sync(history, _sync(history, args.name), _now(), paused=False)
    print(f"resumed sync {visible(sync.name)}: {_describe(history, sync)}")
    return EXIT_OK


# -- running ------------------------------------------------------------------------------


def attempt_json(attempt: Any) -> dict[str, Any]:
    hook = attempt.hook
    return {
        "sync": attempt.sync,
        "destination": attempt.destination,
        "result": attempt.result,
        "failed": attempt.failed,
        "run": attempt.run_id,
        "message": attempt.message,
        "counts": attempt.counts,
        "hook": None if hook is None else {"status": hook.status, "code": hook.code},
    }


def _say(line: str) -> None:
    print(visible(line, multiline=True), file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    """Run one sync now, from a terminal: the ordinary key store (keyring included)."""
    from connector.syncs import SyncBusy, SyncRunner
    from store.secrets import KeyStore

    state = resolve_state_dir(args)
    history = _history(args)
    sync = _sync(history, args.name)
    runner = SyncRunner(history, state, keys=KeyStore(state), log=_say)
    try:
        attempt = runner.run_now(sync)
    except SyncBusy as exc:
        raise CliError(f"{exc}; try again when it is done") from None
    if args.json:
        print_json(attempt_json(attempt))
    if runner.stopping:
        return EXIT_CANCELLED
    return EXIT_FAILED if attempt.failed else EXIT_OK


def _run_due(args: argparse.Namespace) -> int:
    """What the timer calls: every due sync once; exit 1 when any failed."""
    from connector.syncs import SyncRunner, load_env_file

    state = resolve_state_dir(args)
    loaded = load_env_file(state)
    history = _history(args)

    quiet = args.quiet or args.json
    runner = SyncRunner(history, state, log=None if quiet else _say, strip_env=loaded)
    attempts = runner.run_due()
    if args.quiet:  # cron mails (or logs) only what someone must read
        for attempt in attempts:
            if attempt.failed:
                _say(_failure_line(attempt))
    if args.json:
        print_json([attempt_json(a) for a in attempts])
    if runner.stopping:
        return EXIT_CANCELLED
    return EXIT_FAILED if any(a.failed for a in attempts) else EXIT_OK


def _failure_line(attempt: Any) -> str:
    run = f" (run {attempt.run_id})" if attempt.run_id else ""
    hook = f"; {attempt.hook.message}" if attempt.hook is not None else ""
    return f"sync {attempt.sync}: {attempt.result}{run}: {attempt.message}{hook}"


def _alerts(args: argparse.Namespace) -> int:
    if args.ack is not None:
        history = _history(args)
        ids = None if args.ack == "*" else [_sync(history, args.ack).id]
        done = history.acknowledge_sync_alerts(_now(), ids)
        print(f"acknowledged {done} failure(s)")
        return EXIT_OK
    with read_history(args) as reader:
        alerts = reader.sync_alerts()
    if args.json:
        print_json(
            [
                {
                    "sync": a.sync_name,
                    "kind": a.event.kind,
                    "result": a.event.result,
                    "run": a.event.run_id,
                    "at": a.event.at.isoformat(),
                    "message": a.event.message,
                }
                for a in alerts
            ]
        )
        return EXIT_OK
    if not alerts:
        print("no unacknowledged failures")
    for a in alerts:
        run = f" run {a.event.run_id}" if a.event.run_id else ""
        print(f"{_when(a.event.at)} {visible(a.sync_name)}: {a.event.kind} {a.event.result}"
              f"{run}: {visible(a.event.message or '')}")  # fmt: skip
    if alerts:
        print("acknowledge with `segsync syncs alerts --ack` (or --ack NAME)")
    return EXIT_OK


# -- key file -------------------------------------------------------------------------------


def _key_file(args: argparse.Namespace) -> int:
    from store.history_errors import NotFound
    from store.secrets import KeyStore, Secret

    state = resolve_state_dir(args)
    history = _history(args)
    try:
        dest = history.get_destination(args.destination)
    except NotFound as exc:
        raise CliError(f"{exc}. See `segsync destinations list`.") from None
    keys = KeyStore(state)
    if args.api_key_stdin:
        text = sys.stdin.readline().strip()
        if not text:
            raise CliError("no API key on standard input")
        secret = Secret(text)
    else:
        try:
            secret = keys.load(dest.id, None, dest.name)
        except Exception as exc:
            raise CliError(f"{exc}; or pass the key with --api-key-stdin") from None
    keys._write_file(dest.id, secret)  # the same 0600 file KeyStore reads last
    print(f"scheduled runs of {visible(dest.name)} now read its key from segsync's owner-only "
          f"key file ({secret}); the keyring copy, if any, stays for interactive use")  # fmt: skip
    return EXIT_OK


# -- install / uninstall ---------------------------------------------------------------------


def _scheduler_installed(state: Path) -> bool:
    from connector.schedule_units import unit_name, user_unit_dir

    return (user_unit_dir() / f"{unit_name(state)}.timer").exists()


def _install(args: argparse.Namespace) -> int:
    from connector.schedule_units import cron_line, systemd_units, user_unit_dir
    from store.atomic import write_atomic

    state = resolve_state_dir(args)
    if args.cron:
        print(cron_line(state))
        _say(
            "add this line with `crontab -e`, or in one go: "
            "(crontab -l 2>/dev/null; segsync syncs install --cron) | crontab -\n"
            f"run-due writes to {state / 'syncs.log'}"
        )
        return EXIT_OK
    folder = args.unit_dir or user_unit_dir()
    folder.mkdir(parents=True, exist_ok=True)
    units = systemd_units(state)
    files = units.files(folder)
    for path, text in files.items():
        write_atomic(path, _writer(text.encode()))
        os.chmod(path, 0o644)  # systemd reads units; they hold no secret
        print(f"wrote {path}")
    problems = verify_units(list(files))
    if problems:
        _say(f"systemd-analyze verify reports:\n{problems}")
    enable = ["systemctl", "--user", "enable", "--now", f"{units.name}.timer"]
    if args.enable:
        for argv in (["systemctl", "--user", "daemon-reload"], enable):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise CliError(
                    f"`{' '.join(argv)}` failed: {visible(done.stderr.strip())}", EXIT_FAILED
                )
        print(f"timer {units.name}.timer started: run-due every minute")
    else:
        print(f"start it with: systemctl --user daemon-reload && {' '.join(enable)}")
    print(f"logs: journalctl --user -u {units.name}.service; "
          "failures: `segsync syncs alerts`")  # fmt: skip
    return EXIT_OK


def _writer(data: bytes) -> Callable[[BinaryIO], object]:
    """What write_atomic calls with the open temp file."""

    def write(handle: BinaryIO) -> object:
        return handle.write(data)

    return write


def verify_units(paths: list[Path]) -> str:
    """What `systemd-analyze verify` says about the units ('' when fine or absent)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return ""
    done = subprocess.run(
        [tool, "verify", *map(str, paths)], capture_output=True, text=True, check=False
    )
    return "" if done.returncode == 0 else (done.stdout + done.stderr).strip()


def _uninstall(args: argparse.Namespace) -> int:
    from connector.schedule_units import systemd_units, user_unit_dir, without_cron_line

    state = resolve_state_dir(args)
    if args.cron:
        if shutil.which("crontab") is None:
            print("no crontab command here: remove the line ending in "
                  "'# segsync-syncs' from your crontab by hand")  # fmt: skip
            return EXIT_OK
        current = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
        text, removed = without_cron_line(current.stdout if current.returncode == 0 else "", state)
        if removed:
            subprocess.run(["crontab", "-"], input=text, text=True, check=True)
        print(f"removed {removed} crontab line(s)")
        return EXIT_OK
    folder = args.unit_dir or user_unit_dir()
    units = systemd_units(state)
    if args.unit_dir is None and shutil.which("systemctl"):
        subprocess.run(
            ["systemctl", "--user", "disable", "--now", f"{units.name}.timer"],
            capture_output=True,
            check=False,
        )
    removed = 0
    for path in units.files(folder):
        if path.exists():
            path.unlink()
            removed += 1
            print(f"removed {path}")
    if args.unit_dir is None and shutil.which("systemctl"):
        subprocess.run(["systemctl", "--user", "daemon-reload"], capture_output=True, check=False)
    if not removed:
        print(f"no {units.name} units in {folder}")
    return EXIT_OK
