"""`python -m connector.emulator [--port N] [--state-file PATH]`: serve the demo emulator."""

from __future__ import annotations

import argparse
from pathlib import Path

from connector.emulator.demo import run_emulator


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SendGrid Marketing Contacts emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3433)
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args()
    run_emulator(args.host, args.port, args.state_file)


if __name__ == "__main__":
    main()
