"""The parser itself: every option described, an example per command, the
exit-code rule stated, dispatch by `set_defaults(func=...)`, no import cycle."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from cli.main import build_parser, user_error_code


def _parsers(
    parser: argparse.ArgumentParser, name: str = "segsync"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += _parsers(sub, f"{name} {sub_name}")
    return found


ALL = _parsers(build_parser())


@pytest.mark.parametrize("name,parser", ALL, ids=[n for n, _ in ALL])
def test_every_option_and_argument_says_what_it_does(name, parser) -> None:
    undescribed = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction) and a.help is None
    ]
    assert undescribed == [], f"{name}: no help for {undescribed}"


@pytest.mark.parametrize("name,parser", ALL, ids=[n for n, _ in ALL])
def test_every_command_has_an_example_and_dispatches_by_func(name, parser) -> None:
    leaf = not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    if leaf or name == "segsync":
        assert parser.epilog and "example" in parser.epilog, f"{name}: no example"
    assert callable(parser.get_default("func")), f"{name}: no set_defaults(func=...)"


def test_the_exit_codes_and_the_partial_rule_are_in_help(capsys) -> None:
    for argv in (["--help"], ["export", "--help"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        text = " ".join(capsys.readouterr().out.split())
        assert "3 partial: rows SendGrid rejected, or removals it did not confirm" in text
        assert "invalid_email" in text and "do not change it" in text


def test_export_help_warns_that_mirror_removes_people(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--segment", "--mode", "--incremental", "--resume", "--dry-run"):
        assert option in text
    assert "REMOVE from the list" in text


def test_command_modules_do_not_import_the_entry_point() -> None:
    """The old `tui.cli` <-> `tui.cli_*` cycle: a command module loads without
    cli.main, and importing the parser loads nothing heavy."""
    code = (
        "import sys, cli.destinations, cli.export, cli.runs, cli.syncs\n"
        "print('cli.main' in sys.modules)\n"
        "import cli.main; cli.main.build_parser()\n"
        "print(sorted(m for m in ('duckdb', 'sqlalchemy', 'httpx', 'pyarrow', 'orjson',"
        " 'importlib.metadata') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["False", "[]"], out.stdout + out.stderr


def test_the_old_entry_points_still_work() -> None:
    import cli.main
    import tui.cli

    assert tui.cli.main is cli.main.main and tui.cli.EXIT_REJECTED == 3
    done = subprocess.run(
        [sys.executable, "-m", "tui", "where", "--json"], capture_output=True, text=True
    )
    assert done.returncode == 0 and '"history"' in done.stdout, done.stderr


def test_errors_are_classified_by_type_not_by_class_name() -> None:
    from connector.preflight import ExportRefused
    from store.history import NotFound

    class NotFoundLookalike(Exception):  # same name as store's, not store's
        pass

    NotFoundLookalike.__name__ = "NotFound"
    assert user_error_code(NotFound("no destination 'x'")) == 2
    assert user_error_code(NotFoundLookalike("?")) is None

    class Busy(ExportRefused):
        exit_code = 5

    assert user_error_code(ExportRefused("no")) == 2
    assert user_error_code(Busy("later")) == 5  # ExportRefused.exit_code is honoured


def test_each_command_is_registered_by_the_module_main_imports_for_it() -> None:
    from cli.main import COMMAND_MODULES, COMMANDS

    for module in COMMAND_MODULES:
        parser = build_parser((module,))
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert set(sub.choices) == {c for c, m in COMMANDS.items() if m == module}, module


@pytest.mark.parametrize(
    "argv,modules",
    [
        ([], ()),  # the app
        (["--workspace", "ws", "--state-dir=s"], ()),
        (["--version"], ()),
        (["runs", "--limit", "5"], ("runs",)),
        (["--workspace", "runs", "segments"], ("commands",)),  # a folder named like a command
        (["--workspace=runs", "export", "news"], ("export",)),
        (["--state", "s", "plan", "news"], ("changesets",)),  # an abbreviated option
        (["--help"], None),
        (["bogus"], None),
        (["--bogus", "runs"], None),
        (["-x"], None),
    ],
)
def test_only_the_named_commands_module_is_loaded(argv, modules) -> None:
    from cli.main import COMMAND_MODULES, modules_for

    assert modules_for(argv) == (COMMAND_MODULES if modules is None else modules)


@pytest.mark.parametrize(
    "argv",
    [
        ["runs", "--limit", "5", "--status", "failed"],
        ["--workspace", "ws", "segments", "--json"],
        ["export", "news", "--segment", "a,b", "--dry-run"],
        ["--state-dir", "s", "syncs", "list"],
        ["map", "news", "email=email"],
        [],
    ],
)
def test_a_command_parses_the_same_with_only_its_module(argv) -> None:
    from cli.main import _parse, modules_for

    assert _parse(build_parser(modules_for(argv)), argv) == _parse(build_parser(), argv)
