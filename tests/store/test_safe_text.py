"""Untrusted text shown on a terminal: controls become visible escapes."""

import pytest

from store.safe_text import visible


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]52;c;REFUQQ==\x1b\\Ann", "\\x1b]52;c;REFUQQ==\\x1b\\Ann"),
        ("\x1b]0;pwned\x07title", "\\x1b]0;pwned\\x07title"),
        ("\x1b]8;;file:///etc/passwd\x1b\\link", "\\x1b]8;;file:///etc/passwd\\x1b\\link"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("\x9b2K", "\\x9b2K"),
        ("a\x7fb", "a\\x7fb"),
        ("line\nbreak", "line\\x0abreak"),
        ("Müller [DE] 日本", "Müller [DE] 日本"),
    ],
)
def test_controls_are_shown_escaped(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert "\x1b" not in visible(raw)


def test_multiline_keeps_newlines_but_not_escapes() -> None:
    assert visible("a\nb\t\x1b[2K", multiline=True) == "a\nb\t\\x1b[2K"
