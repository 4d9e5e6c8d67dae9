"""Every refusal names its problem, exits with its code, and sends nothing."""

from __future__ import annotations

import pytest

from tests.engine.conftest import run_cli
from tui.cli import EXIT_OK, EXIT_USAGE, main

pytestmark = pytest.mark.slow  # end to end against the emulator


def refused(capsys: pytest.CaptureFixture[str], export_env, *argv: str) -> str:
    capsys.readouterr()
    code = run_cli(main, *argv)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert export_env.emulator.state.stats()["contacts_received"] == 0
    return err


def test_no_consent_refuses(export_env, capsys, emulator):
    # The setup must succeed, or the refusal below could be the setup's own.
    assert (
        run_cli(
            main,
            "destinations",
            "add",
            "shy",
            "--list-id",
            export_env.list_id,
            "--api-key-env",
            "DEST_KEY",
            "--base-url",
            emulator.url,
        )
        == EXIT_OK
    )
    assert run_cli(main, "map", "shy", "email=email", "--no-consent-filter") == EXIT_OK
    err = refused(capsys, export_env, "export", "shy", "--segment", "germany")
    assert "data-privacy acknowledgment" in err
    assert run_cli(main, "export", "shy", "--segment", "germany", "--dry-run") == 0


def test_over_cap_refuses(export_env, capsys):
    assert run_cli(main, "destinations", "set-cap", "news", "10") == EXIT_OK
    err = refused(capsys, export_env, "export", "news", "--segment", "germany")
    assert "over the cap of 10" in err


def test_second_concurrent_export_refuses(export_env, capsys):
    from store.history import History
    from store.locks import export_lock
    from store.paths import history_path

    dest = History(history_path(export_env.state_dir)).get_destination("news")
    with export_lock(export_env.state_dir, dest.id):
        err = refused(capsys, export_env, "export", "news", "--segment", "germany")
    assert "news" in err and "already running" in err


def test_bad_key_refuses_without_showing_it(export_env, capsys, monkeypatch):
    bad = "SG." + "x" * 22 + "." + "y" * 43
    monkeypatch.setenv("DEST_KEY", bad)
    err = refused(capsys, export_env, "export", "news", "--segment", "germany")
    assert "key" in err.lower()
    assert bad not in err


def test_unknown_list_refuses(export_env, capsys, emulator):
    err = refused(
        capsys,
        export_env,
        "destinations",
        "add",
        "ghost",
        "--list-id",
        "00000000-0000-0000-0000-000000000000",
        "--api-key-env",
        "DEST_KEY",
        "--base-url",
        emulator.url,
    )
    assert "00000000-0000-0000-0000-000000000000" in err


def test_unknown_column_refuses(export_env, capsys):
    err = refused(capsys, export_env, "map", "news", "email=email", "city=no_such_column")
    assert "no_such_column" in err


def test_unknown_segment_refuses(export_env, capsys):
    err = refused(capsys, export_env, "export", "news", "--segment", "no_such_segment")
    assert "no_such_segment" in err
