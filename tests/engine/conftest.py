"""A small, hand-built workspace whose right answer is known without segsync.

The expected contacts are computed here in plain Python from the rows we
wrote, so the end-to-end tests compare the engine against an independent
answer rather than against its own SQL.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SEGMENTS_TOML = """
[profiles]
path = "profiles.parquet"
key = "customer_id"

[segments.germany]
description = "Customers in Germany"
where = "country = 'DE'"

[segments.big_spenders]
description = "Lifetime value of 500 or more"
where = "lifetime_value >= 500"

[segments.france]
where = "country = 'FR'"
"""


def make_rows(n: int = 2400) -> list[dict]:
    """Profiles with known dirt: every 50th has no @, every 40th no consent,
    every 60th repeats the previous email in upper case, every 70th has a
    first name over 50 characters, every 90th has no email at all."""
    rows = []
    for i in range(n):
        email: str | None = f"person{i}@example.com"
        if i % 50 == 7:
            email = f"person{i}.example.com"
        elif i % 60 == 11 and i > 60:
            email = f"  PERSON{i - 1}@Example.com "
        elif i % 90 == 13:
            email = None
        rows.append(
            {
                "customer_id": i,
                "email": email,
                "first_name": ("X" * 60) if i % 70 == 5 else f"First{i}",
                "last_name": f"Last{i}",
                "country": ("DE", "FR", "US")[i % 3],
                "city": "Berlin",
                "lifetime_value": float((i * 37) % 1000),
                "email_opt_in": i % 40 != 3,
                "loyalty_tier": ("gold", "silver")[i % 2],
            }
        )
    for row in rows:  # a duplicate is in the same segments as the row it repeats
        i = row["customer_id"]
        if i % 60 == 11 and i > 60 and row["email"] is not None:
            row["country"] = rows[i - 1]["country"]
            row["lifetime_value"] = rows[i - 1]["lifetime_value"]
    return rows


def write_workspace(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "profiles.parquet")
    (folder / "segments.toml").write_text(SEGMENTS_TOML)
    return folder


SEGMENT_RULES = {
    "germany": lambda r: r["country"] == "DE",
    "big_spenders": lambda r: r["lifetime_value"] >= 500,
    "france": lambda r: r["country"] == "FR",
}


def expected_emails(rows: list[dict], segments: list[str]) -> set[str]:
    """The contacts that must end on the list, by the rules written down above."""
    out: set[str] = set()
    for row in rows:
        if not any(SEGMENT_RULES[s](row) for s in segments):
            continue
        if not row["email_opt_in"] or row["email"] is None:
            continue
        email = row["email"].strip().lower()
        if "@" not in email or len(row["first_name"]) > 50:
            continue
        out.add(email)
    return out


@dataclass
class ExportEnv:
    workspace: Path
    state_dir: Path
    rows: list[dict]
    emulator: object
    list_id: str

    def cli(self, *args: str) -> list[str]:
        """argv for running the CLI in a subprocess against this environment."""
        return [
            sys.executable,
            "-m",
            "tui",
            *args,
        ]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SEGSYNC_STATE_DIR": str(self.state_dir),
            "SEGSYNC_WORKSPACE": str(self.workspace),
            "SEGSYNC_NO_KEYRING": "1",
            "DEST_KEY": self.emulator.api_key,
        }


@pytest.fixture
def export_env(tmp_path: Path, emulator, monkeypatch: pytest.MonkeyPatch) -> ExportEnv:
    """A workspace, a state dir and a destination `news` on the emulator's list."""
    from tui.cli import main

    rows = make_rows()
    workspace = write_workspace(tmp_path / "ws", rows)
    state_dir = tmp_path / "state"
    list_id = emulator.state.create_list("newsletter")["id"]
    monkeypatch.setenv("SEGSYNC_STATE_DIR", str(state_dir))
    monkeypatch.setenv("SEGSYNC_WORKSPACE", str(workspace))
    monkeypatch.setenv("SEGSYNC_NO_KEYRING", "1")
    monkeypatch.setenv("DEST_KEY", emulator.api_key)
    assert (
        run_cli(
            main,
            "destinations",
            "add",
            "news",
            "--list-id",
            list_id,
            "--api-key-env",
            "DEST_KEY",
            "--base-url",
            emulator.url,
            "--agree",
        )
        == 0
    )
    assert (
        run_cli(
            main,
            "map",
            "news",
            "email=email",
            "first_name=first_name",
            "last_name=last_name",
            "country=country",
            "city=city",
            "--consent-column",
            "email_opt_in",
        )
        == 0
    )
    return ExportEnv(workspace, state_dir, rows, emulator, list_id)


def run_cli(main, *argv: str) -> int:
    """Run the CLI in-process; return its exit code."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    code = exit_info.value.code
    return 0 if code is None else int(code)
