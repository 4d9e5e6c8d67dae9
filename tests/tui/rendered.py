"""What the terminal would receive, read back as text, for tests that check
what a screen shows rather than what a widget was given.

`app.export_screenshot()` composes the screen exactly as it is drawn
(every layer, toasts included) into an SVG; its text elements carry their
column in `x`. Rebuilding the character grid from them gives the screen as
plain text, so a test can look for a literal ("Customers [DE]") or check that
no raw control character was ever drawn.
"""

from __future__ import annotations

import html
import re

from textual.app import App

_TEXT = re.compile(r'<text class="[^"]*-r\d+"[^>]*? x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)</text>')
_CELL_WIDTH = 12.2  # pixels per terminal column in Rich's SVG export

UNSAFE = ("\x1b", "\x9b", "\x9d", "\x07", "\u202e", "\u2066", "\x00")
"""Characters that must never be drawn raw: ESC, 8-bit CSI and OSC, BEL
(ends an OSC), a bidi override and isolate, NUL."""


def screen_svg(app: App[object]) -> str:
    return app.export_screenshot()


def screen_text(app: App[object]) -> str:
    """The current screen as lines of text (trailing spaces trimmed)."""
    rows: dict[float, dict[int, str]] = {}
    for x, y, text in _TEXT.findall(screen_svg(app)):
        column = round(float(x) / _CELL_WIDTH)
        row = rows.setdefault(float(y), {})
        for offset, char in enumerate(html.unescape(text).replace("\xa0", " ")):
            row[column + offset] = char
    lines = []
    for y in sorted(rows):
        row = rows[y]
        lines.append("".join(row.get(c, " ") for c in range(max(row) + 1)).rstrip())
    return "\n".join(lines)


def raw_controls(app: App[object]) -> list[str]:
    """Unsafe characters found anywhere in what the screen draws (empty: safe)."""
    svg = screen_svg(app)
    return [repr(char) for char in UNSAFE if char in svg]
