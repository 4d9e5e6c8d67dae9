"""The API key stays secret; private files stay private; the key never travels in clear.

The tests use the key they know and search every place a key could end up:
the SQLite file and its -wal/-shm, everything else in the state directory,
captured logs at DEBUG, the messages, reprs and tracebacks (with locals) of
every error the client raises, the `--json` outputs, and the stderr of a
crash printed with SEGSYNC_DEBUG=1. A substring of the key's hidden middle
counts as found: a masked key shows only its first 5 and last 4 characters.
"""

from __future__ import annotations

import io
import logging
import stat
import subprocess
import sys
import traceback

import pytest

from connector.client import SendGridClient
from connector.errors import InsecureURL, SendGridError
from store.history import History
from store.paths import history_path
from tests.engine.conftest import run_cli
from tests.reliability.conftest import FIGURES, Env, cli_json, export_json
from tui.cli import main

pytestmark = pytest.mark.slow  # exports searched for the key in every output


def leaks(text: str | bytes, key: str) -> str:
    """The context of the key, or of any 12 characters of its hidden middle, in
    `text` ("" when absent: the test passes)."""
    data = text.encode() if isinstance(text, str) else text
    hidden = key[5:-4]
    pieces = [key] + [hidden[i : i + 12] for i in range(0, max(len(hidden) - 11, 1))]
    for piece in pieces:
        at = data.find(piece.encode())
        if at >= 0:
            return data[max(at - 200, 0) : at + 200].decode("utf-8", "replace")
    return ""


def error_texts(exc: BaseException) -> str:
    """Everything an error could show: message, repr, and its traceback with locals."""
    formatted = traceback.TracebackException.from_exception(exc, capture_locals=True)
    return "\n".join([str(exc), repr(exc), *formatted.format()])


async def raised(coro) -> SendGridError:
    try:
        await coro
    except SendGridError as exc:
        return exc
    raise AssertionError("no error raised")


def add_stored_key_destination(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A destination whose key segsync stores itself (the 0600 key file)."""
    list_id = env.emulator.state.create_list("stored")["id"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(env.emulator.api_key + "\n"))
    argv = ["destinations", "add", "stored", "--list-id", list_id, "--api-key-stdin"]
    assert run_cli(main, *argv, "--base-url", env.emulator.url, "--agree") == 0
    assert run_cli(main, "map", "stored", "email=email", "--consent-column", "email_opt_in") == 0
    env.lists["stored"] = list_id


def test_key_is_in_no_file_log_output_or_error(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    key = env.emulator.api_key
    assert leaks(f"x{key}y", key) and leaks(key[6:20], key) and not leaks(key[:5], key)
    caplog.set_level(logging.DEBUG)
    add_stored_key_destination(env, monkeypatch)
    env.add_destination("news")
    outputs: list[str] = []

    code, summary, err = export_json(capsys, "stored", "--segment", "everyone")
    assert code == 0, (summary, err)
    outputs += [str(summary), err]
    env.emulator.set_faults(row_error_rate=0.05, seed=3)  # SendGrid rejects rows: errors file
    code, summary, err = export_json(capsys, "news", "--segment", "germany", "--batch-size", "200")
    assert code == 3, (summary, err)
    outputs += [str(summary), err]
    env.emulator.set_faults(row_error_rate=0.0)
    capsys.readouterr()  # a dry-run prints its preview, with the first request body
    assert run_cli(main, "export", "news", "--segment", "everyone", "--dry-run") == 0
    preview = capsys.readouterr()
    assert "first request body" in preview.out  # the preview is data: stdout
    outputs += [preview.out, preview.err]
    monkeypatch.setenv("DEST_KEY", "SG." + "w" * 66)  # a wrong key: 401 from SendGrid
    code, summary, err = export_json(capsys, "news", "--segment", "everyone")
    assert code == 2 and "key" in err.lower(), err
    outputs += [str(summary), err]
    monkeypatch.setenv("DEST_KEY", key)
    for argv in (
        ("runs", "--json"),
        ("runs", "show", "1", "--json"),
        ("runs", "show", "2", "--json"),
        ("destinations", "list", "--json"),
        ("destinations", "show", "stored", "--json"),
    ):
        code, data = cli_json(capsys, *argv)
        assert code == 0, argv
        outputs.append(str(data))
    csv_file = env.state_dir.parent / "rejected.csv"
    assert run_cli(main, "runs", "rejected", "2", "--csv", str(csv_file)) == 0
    outputs.append(csv_file.read_text())
    outputs.append(capsys.readouterr().out)

    assert History(history_path(env.state_dir)).rejected_rows(2, limit=1)  # SendGrid's rows
    for text in outputs:
        assert not leaks(text, key), leaks(text, key)
    assert caplog.records, "no logs were captured: the check would prove nothing"
    assert not leaks(caplog.text, key), leaks(caplog.text, key)

    files = [p for p in env.state_dir.rglob("*") if p.is_file()]
    db_files = [p for p in files if p.name.startswith("history.db")]
    assert {p.name for p in db_files} >= {"history.db", "history.db-wal"}
    key_files = [p for p in files if p.parent.name == "keys"]
    assert len(key_files) == 1  # the stored key: the one file allowed to hold it
    for path in files:
        if path not in key_files:
            assert not leaks(path.read_bytes(), key), (path, leaks(path.read_bytes(), key))
    FIGURES["secret_places_searched"] += len(outputs) + len(files) + 1


def test_private_files_are_mode_0600_in_0700_dirs(env: Env, monkeypatch, capsys) -> None:
    add_stored_key_destination(env, monkeypatch)
    code, summary, err = export_json(capsys, "stored", "--segment", "everyone")
    assert code == 0, (summary, err)
    state = env.state_dir
    private_files = [
        history_path(state),
        history_path(state).with_name("history.db-wal"),
        history_path(state).with_name("history.db-shm"),
        *sorted((state / "keys").iterdir()),
        *sorted((state / "ledgers").glob("*.parquet")),
    ]
    assert len(private_files) >= 5
    for path in private_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (state, state / "keys", state / "ledgers", state / "locks"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


async def test_client_errors_never_carry_the_key(emulator) -> None:
    key = emulator.api_key
    list_id = emulator.state.create_list("x")["id"]
    errors: list[SendGridError] = []
    async with SendGridClient(key, emulator.url, backoff_initial=0.01, max_attempts=3) as client:
        errors.append(await raised(client.get_list("no-such-list")))  # ListNotFound
        errors.append(await raised(client.upsert_body(b'{"contacts": 5}')))  # RequestRejected
        emulator.set_faults(rate_5xx=1.0)
        errors.append(await raised(client.get_list(list_id)))  # SendGridUnavailable
        emulator.set_faults(rate_5xx=0.0, rate_429=1.0, rate_limit_reset=0)
        errors.append(await raised(client.get_list(list_id)))  # RateLimited
        emulator.set_faults(rate_429=0.0, rate_drop=1.0)
        errors.append(await raised(client.get_list(list_id)))  # NetworkError
        emulator.set_faults(rate_drop=0.0)
    async with SendGridClient(emulator.read_only_key, emulator.url) as client:
        errors.append(await raised(client.upsert_contacts([list_id], [{"email": "a@b.co"}])))
    wrong = key[:-1] + ("x" if key[-1] != "x" else "y")  # one character off
    async with SendGridClient(wrong, emulator.url) as client:
        errors.append(await raised(client.validate_key()))  # BadApiKey (401)
    async with SendGridClient(key, "http://127.0.0.1:9", max_attempts=1) as client:
        errors.append(await raised(client.validate_key()))  # connection refused
    kinds = {type(e).__name__ for e in errors}
    assert kinds >= {
        "ListNotFound",
        "RequestRejected",
        "SendGridUnavailable",
        "RateLimited",
        "NetworkError",
        "MissingScope",
        "BadApiKey",
    }, kinds
    for exc in errors:
        assert not leaks(error_texts(exc), key), (type(exc), leaks(error_texts(exc), key))
        for other in (emulator.read_only_key, wrong):
            found = leaks(error_texts(exc), other)
            assert not found, (type(exc), found)
    FIGURES["secret_places_searched"] += len(errors)


def test_crash_output_with_debug_traceback_holds_no_key(env: Env) -> None:
    """SEGSYNC_DEBUG=1 prints the traceback of an unexpected error: no key in it."""
    env.add_destination("news")
    crash = (
        "import store.history, tui.cli\n"
        "def broken(*args, **kwargs):\n"
        "    raise RuntimeError('history disk vanished')\n"
        "store.history.History.finish_run = broken\n"
        "tui.cli.main(['export', 'news', '--segment', 'germany'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", crash],
        env={**env.subprocess_env(), "SEGSYNC_DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" in proc.stderr and "history disk vanished" in proc.stderr
    assert not leaks(proc.stderr + proc.stdout, env.emulator.api_key)
    FIGURES["secret_places_searched"] += 1


@pytest.mark.parametrize(
    "url",
    [
        "http://api.sendgrid.com",
        "http://10.0.0.7:3030",
        "http://0.0.0.0:3030",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "ftp://127.0.0.1",
    ],
)
def test_plain_http_to_another_host_is_refused(url: str, env: Env, capsys) -> None:
    list_id = env.emulator.state.create_list("x")["id"]
    capsys.readouterr()
    argv = ["destinations", "add", "x", "--list-id", list_id, "--api-key-env", "DEST_KEY"]
    code = run_cli(main, *argv, "--base-url", url, "--agree")
    err = capsys.readouterr().err
    assert code == 2, err
    assert "https" in err.lower(), err
    assert not leaks(err, env.emulator.api_key)
    with pytest.raises((InsecureURL, ValueError)):
        SendGridClient(env.emulator.api_key, url)
    FIGURES["insecure_urls_refused"] += 1


async def test_loopback_http_is_allowed_for_the_emulator(emulator) -> None:
    for host in ("127.0.0.1", "localhost"):
        url = emulator.url.replace("127.0.0.1", host)
        async with SendGridClient(emulator.api_key, url) as client:
            assert await client.validate_key()
