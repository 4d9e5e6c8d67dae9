"""The `segsync` command line (headless commands; with no command it opens the TUI).

Apart from `tui/`: the command line is not the app. Both call `connector/`
(its `services` module for the actions they share). `cli.main.main` is the
console script; `python -m cli` runs it too.
"""
