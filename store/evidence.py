"""Consent evidence for one run: what an auditor asks for under GDPR accountability.

For a run: who approved the destination's consent wording, when, and the
wording itself; who ran the export and from which host; the consent column
and the rule applied to it; how many profiles were left out for lack of
consent; and a digest of the people sent, with the recipe to recompute it.

It holds no API key and no profile values: the only personal data it is
computed from are the addresses the run put on the list, and those appear
only inside the digest. Everything comes from the history database and the
run's people record (``store.people``), read-only.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from store.safe_text import visible
from store.sql_plan import TRUTHY

SENT_OPS = ("added", "updated")
DIGEST_RECIPE = (
    "SHA-256 (hex) of the UTF-8 text made of the addresses this run's people record marks "
    "`added` or `updated`, each trimmed and lower-cased, sorted by Unicode code point "
    "(byte order, as `LC_ALL=C sort`), each once, joined with a newline (\\n), no newline "
    "at the end"
)
# Counts an auditor reads, in this order, when the run has them.
COUNT_KEYS = (
    "selected", "no_consent", "forgotten", "no_email", "invalid_email", "too_long",
    "duplicate", "unchanged", "to_send", "sent", "created", "updated", "errored", "removed",
)  # fmt: skip


def consent_rule(column: str | None, kind: str = "export") -> str:
    """The consent rule the plan applies (store.sql_plan.PlanSpec.consent_ok), in words."""
    if kind == "undo":
        return (
            "an undo of a run's membership changes selects no one from the profiles: it "
            "takes off the list those the undone run added and puts back those it removed "
            "(people earlier runs had put on the list under their own consent check: see "
            "the evidence of those runs)"
        )
    if not column:
        return (
            "no consent column was mapped: no per-person consent check was made; every "
            "selected profile was eligible"
        )
    words = ", ".join(f"'{t}'" for t in TRUTHY)
    return (
        f"a profile is sent only if its consent column is true (a BOOLEAN column), or, for "
        f"any other type, its value trimmed and lower-cased is one of {words}; empty (NULL) "
        "and any other value count as no consent"
    )


def people_digest(path: Path) -> dict[str, Any]:
    """Count and SHA-256 of the people a run sent, from its people record.

    A person erased since (``segsync forget``) appears as their token
    ``forgotten:…``: still counted, so the totals add up, and hashed as the
    token, which is said (``erased_since``).
    """
    if not Path(path).is_file():
        return {
            "available": False,
            "why": "this run has no record of the people it touched (it ran before segsync "
            "kept one, it was refused before sending, or its record was pruned with "
            "`segsync runs prune`)",
        }
    from store.people import read_people
    from store.redact import TOKEN_PREFIX

    emails = sorted(
        {(e or "").strip().lower() for e, _k, _op, _r in read_people(path, SENT_OPS) if e}
    )
    text = "\n".join(emails)
    return {
        "available": True,
        "count": len(emails),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "recipe": DIGEST_RECIPE,
        "erased_since": sum(1 for e in emails if e.startswith(TOKEN_PREFIX)),
    }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_evidence(history: Any, state: Path, run_id: int) -> dict[str, Any]:
    """The evidence of run ``run_id`` as plain JSON-ready data (raises NotFound)."""
    from store.operator import current_operator
    from store.people import people_file

    run = history.get_run(run_id)
    dest = history.get_destination(run.destination_id)
    config = dict(run.config or {})
    mapping = dict(config.get("mapping") or {})
    column = mapping.get("consent_column")
    counts = dict(run.counts or {})
    started = _utc(run.started_at)
    approvals = history.consent_approvals(dest.id)
    # The approval in force when the run started: the latest given before it.
    # None before it (an export is refused without one, so only a run from an
    # older segsync that kept the latest only): the first given after, flagged.
    before = [a for a in approvals if _utc(a.approved_at) <= started]
    approval = before[-1] if before else (approvals[0] if approvals else None)
    people = people_digest(people_file(state, run.id))
    basis = _plan_basis(history, run.plan_id)
    return {
        "run": run.id,
        "kind": run.kind,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "resumed_from": run.resumed_from,
        "undo_of": run.undo_of,
        "plan": run.plan_id,
        "destination": {
            "id": dest.id,
            "name": dest.name,
            "list_id": config.get("list_id", dest.list_id),
            "list_name": dest.list_name,
            "api_host": config.get("base_url", dest.base_url),
            "removed_at": _iso(dest.removed_at),
        },
        "consent": {
            "approved_by": approval.approved_by if approval else None,
            "approved_at": _iso(approval.approved_at) if approval else None,
            "wording": approval.wording if approval else None,
            "approved_after_run_started": bool(approval and not before),
            "approvals_since": sum(1 for a in approvals if _utc(a.approved_at) > started),
        },
        "operator": run.operator,
        "host": run.host,
        "workspace": config.get("workspace"),
        "segments": list(run.segments),
        # The segment definitions and the profile file (path, size, modified)
        # as the run's plan saw them: which rule selected whom, from what data.
        "predicates": basis.get("predicates"),
        "profile_source": basis.get("source"),
        "mode": run.mode,
        "incremental": run.incremental,
        "consent_column": column,
        "consent_rule": consent_rule(column, run.kind),
        "excluded_no_consent": counts.get("no_consent"),
        "counts": {k: counts[k] for k in COUNT_KEYS if k in counts},
        "people_sent": people,
        "generated_at": datetime.now(UTC).isoformat(),
        "generated_by": current_operator(),
    }


def _plan_basis(history: Any, plan_id: int | None) -> dict[str, Any]:
    """What the run's plan was computed from, or {} (a run from before plans)."""
    from store.history_errors import PlanNotFound

    if plan_id is None:
        return {}
    try:
        return dict(history.get_plan(plan_id).basis or {})
    except PlanNotFound:
        return {}


def _code(text: object) -> str:
    """A Markdown code span of untrusted text: shown literally, never as markup."""
    value = visible(text)
    longest = max((len(m) for m in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") or not value.strip() else ""
    return f"{fence}{pad}{value}{pad}{fence}"


_MARKUP = re.compile(r"([\\`*_\[\]<>|#!])")


def _prose(text: object, *, multiline: bool = False) -> str:
    """Untrusted text as Markdown prose: controls made visible, markup escaped."""
    return _MARKUP.sub(r"\\\1", visible(text, multiline=multiline))


def _or_none(value: object, render: Any = _prose) -> str:
    return "*not recorded*" if value in (None, "") else render(value)


def render_markdown(evidence: dict[str, Any]) -> str:
    """The evidence as a Markdown page; every data-derived string through `visible`."""
    e = evidence
    dest, consent, people = e["destination"], e["consent"], e["people_sent"]
    lines = [
        f"# Consent evidence: run {e['run']}",
        "",
        f"- Destination: {_code(dest['name'])} (id {dest['id']}), SendGrid list "
        f"{_or_none(dest['list_id'], _code)} on {_or_none(dest['api_host'], _code)}"
        + (f"; destination removed {_prose(dest['removed_at'])}" if dest["removed_at"] else ""),
        f"- Run: {_prose(e['kind'])}, {_prose(e['mode'])}"
        + (", incremental" if e["incremental"] else "")
        + f", status {_code(e['status'])}"
        + (f", undoing run {e['undo_of']}" if e["undo_of"] else "")
        + (f", resuming run {e['resumed_from']}" if e["resumed_from"] else "")
        + (f", applying plan {e['plan']}" if e["plan"] else ""),
        f"- Started {_or_none(e['started_at'])}, ended {_or_none(e['ended_at'])}",
        f"- Segments: {', '.join(_code(s) for s in e['segments']) or '*none*'}",
        f"- Workspace: {_or_none(e['workspace'], _code)}",
        f"- Profile source: {_source(e['profile_source'])}",
    ]
    for name, where in (e["predicates"] or {}).items():
        shown = " ".join(str(where).split()) if where else where  # one line; --json is exact
        lines.append(f"- Segment {_code(name)} selects: {_or_none(shown, _code)}")
    lines += [
        "",
        "## Consent wording approved for the destination",
        "",
        f"- Approved by: {_or_none(consent['approved_by'])}",
        f"- Approved at: {_or_none(consent['approved_at'])}",
    ]
    if consent["approved_after_run_started"]:
        lines.append(
            "- Note: no approval is on record from before the run started (a run of an "
            "older segsync, which kept the latest approval only): this is the first after."
        )
    elif consent["approvals_since"]:
        lines.append(
            f"- The wording was approved again {consent['approvals_since']} time(s) after "
            "the run started; this is the approval in force when it started."
        )
    lines += ["", "Wording:", ""]
    wording = consent["wording"]
    if wording:
        lines += ["> " + line for line in _prose(wording, multiline=True).splitlines() or [""]]
    else:
        lines.append("> *no wording recorded: consent was not approved for this destination*")
    lines += [
        "",
        "## Who ran it",
        "",
        f"- Operator: {_or_none(e['operator'])}",
        f"- Host: {_or_none(e['host'])}",
        "",
        "## Consent check",
        "",
        f"- Consent column: {_or_none(e['consent_column'], _code)}",
        f"- Rule: {e['consent_rule']}",
        f"- Profiles excluded for no consent: {_count(e['excluded_no_consent'])}",
    ]
    counts = e["counts"]
    if "forgotten" in counts:
        lines.append(
            f"- Profiles left out because the person was erased (`segsync forget`): "
            f"{_count(counts['forgotten'])}"
        )
    if counts:
        lines.append("- Counts: " + ", ".join(f"{k} {_count(v)}" for k, v in counts.items()))
    lines += ["", "## People sent", ""]
    if people["available"]:
        lines += [
            f"- Number of people sent (added or updated): {people['count']:,}",
            f"- SHA-256: `{people['sha256']}`",
            f"- How to recompute: {people['recipe']}. The addresses: `segsync runs show "
            f"{e['run']} --people --op added --op updated --csv FILE`.",
        ]
        if people["erased_since"]:
            lines.append(
                f"- {people['erased_since']:,} of them were erased since (`segsync forget`): "
                "their address is replaced by a token `forgotten:…` in the record, and the "
                "digest is computed over the record as it is now."
            )
    else:
        lines.append(f"- Digest unavailable: {people['why']}.")
    lines += [
        "",
        f"*Generated {_prose(e['generated_at'])} by {_prose(e['generated_by'])}. "
        "No API key and no profile values are in this document.*",
        "",
    ]
    return "\n".join(lines)


def _source(fingerprint: dict[str, Any] | None) -> str:
    """The profile file as the plan saw it: path, size, modification time."""
    if not fingerprint:
        return "*not recorded*"
    if fingerprint.get("missing"):
        return f"{_code(fingerprint.get('path'))} (missing when planned)"
    parts = [_code(fingerprint.get("path"))]
    if isinstance(fingerprint.get("size"), int):
        parts.append(f"{fingerprint['size']:,} bytes")
    if isinstance(fingerprint.get("mtime_ns"), int):
        when = datetime.fromtimestamp(fingerprint["mtime_ns"] / 1e9, UTC).isoformat()
        parts.append(f"modified {when}")
    return ", ".join(parts)


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "*not recorded*"
