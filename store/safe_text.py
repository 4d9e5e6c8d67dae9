"""Make untrusted text safe to show on a terminal.

Profile values, segment names and predicates, DuckDB errors and SendGrid
messages all reach the screen. A terminal obeys control characters wherever
they come from: ``ESC ] 52`` writes the clipboard, ``ESC ] 0`` the window
title, ``ESC ] 8`` makes hidden links, and bidi overrides make text read
differently from what it is. So every string from data, files or the network
goes through `visible()` before a human sees it: each such character is
replaced by its escape (``\\x1b``, ``\\u202e``), visible and harmless. Machine
output (``--json``) stays exact and never goes through here.

It lives in store/ (imported by nothing heavy) so the command line, the
engine's messages and the TUI all use the same rule.
"""

from __future__ import annotations

_BIDI_AND_SEPARATORS = (
    "\u061c",  # Arabic letter mark
    "\u200e",  # left-to-right mark
    "\u200f",  # right-to-left mark
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    *(chr(c) for c in range(0x202A, 0x202F)),  # embeddings and overrides
    *(chr(c) for c in range(0x2066, 0x206A)),  # isolates
)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _table(keep: str) -> dict[int, str]:
    unsafe = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))]
    unsafe += _BIDI_AND_SEPARATORS
    return {ord(c): _escape(c) for c in unsafe if c not in keep}


_ONE_LINE = _table("")
_MULTI_LINE = _table("\n\t")


def visible(text: object, *, multiline: bool = False) -> str:
    """`text` as a string with every control, escape and bidi character made visible.

    `multiline` keeps newlines and tabs (for multi-line messages such as a
    DuckDB error); by default they are escaped too, so one value stays one line
    and cannot forge another row of output.
    """
    return str(text).translate(_MULTI_LINE if multiline else _ONE_LINE)
