"""`python -m tui` runs the command line, as it always did (tests and benchmarks
start real processes this way); the command line itself lives in `cli/`."""

from cli.main import main

main()
