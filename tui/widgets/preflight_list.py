"""The Preview's preflight: what an export would meet, each with its fix key.

The findings are the connector's own (`connector.preflight`), computed by
the backend; this module only words the fix in the TUI's keys and draws them,
one line each, problems (✗, refused before sending) before warnings (!).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from connector.findings import Finding
from tui.widgets.formatting import safe

FIXES: dict[str, str] = {
    "mapping": "m opens Mapping",
    "consent_choice": "m: choose on the consent row of Mapping",
    "no_consent_filter": "m to change it",
    "segments": "2 opens Segments",
    "privacy": "x asks for it first",
    "destination": "1, then e edits the destination",
    "unreachable": "r checks again",
    "custom_fields": "f creates them",
    "field_types": "m to map another column",
    "cap": "c raises the cap",
    "max_adds": "2 to narrow the segments",
    "removals": "a allows them for this run (asks first)",
    "drift": "r plans again",
}
"""What to press, per kind of finding (the keys of the Preview or the screen keys)."""

MAPPING_KINDS = frozenset({"mapping", "consent_choice", "no_consent_filter", "field_types"})


def stops_x(finding: Finding) -> bool:
    """Whether x must not start the export: a refusal other than the
    data-privacy acknowledgment, which x itself asks for."""
    return finding.blocking and finding.kind != "privacy"


def render_findings(findings: Sequence[Finding]) -> Text:
    """One line per finding: what is wrong (data: made safe), then its fix."""
    text = Text()
    ordered = sorted(findings, key=lambda f: not stops_x(f))
    for index, finding in enumerate(ordered):
        if index:
            text.append("\n")
        mark, style = ("✗ ", "bold red") if stops_x(finding) else ("! ", "bold yellow")
        text.append(mark, style=style)
        text.append(safe(finding.title))
        fix = FIXES.get(finding.kind)
        if fix:
            text.append(" · ", style="dim")
            text.append(fix, style="bold")
    return text


def fix_for(finding: Finding) -> str:
    return FIXES.get(finding.kind, "")
