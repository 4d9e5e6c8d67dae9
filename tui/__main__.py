"""`python -m tui` runs the command line (used by tests that kill a real process)."""

from tui.cli import main

main()
