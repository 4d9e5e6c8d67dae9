"""Turn benchmark results into a table, a pass/miss list against the targets, and JSON.

Results are plain dicts (JSON-ready) so a run can be rendered again later
from its file in bench_results/ without measuring anything.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True)
class Target:
    """One target: a measured value must stay under (or over) a limit.

    ``floor``: a (scenario, metric) measured in the same run that does less
    than the target's scenario must (a bare import, the plan alone, a bare
    Textual app): a target below its floor cannot be met on this machine
    without leaving out that work.
    """

    name: str
    scenario: str
    metric: str  # key in the scenario's summary, or a computed ratio in "derived"
    limit: float
    at_least: bool = False  # True: the value must be >= limit (speed-ups)
    unit: str = "s"
    floor: tuple[str, str] | None = None


def machine() -> dict[str, Any]:
    """What the numbers were measured on (they mean little without it)."""
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = match[1].strip() if match else cpu
    mem_kb = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        match = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.MULTILINE)
        mem_kb = int(match[1]) if match else 0
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.0f} ms"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "rows/s":
        return f"{value:,.0f}"
    return f"{value:,.0f}"


def _cell(summary: dict[str, Any] | None, key: str, unit: str) -> str:
    if not summary or key not in summary:
        return "-"
    s = summary[key]
    text = _fmt(s["median"], unit)
    if s["n"] > 1 and s["median"]:
        spread = (s["max"] - s["min"]) / s["median"] * 100
        text += f" ±{spread / 2:.0f}%"
    return text


COLUMNS = (
    ("wall", "wall", "s"),
    ("cpu", "CPU", "s"),
    ("peak_rss_mb", "peak RSS", "MB"),
    ("rows_per_s", "profiles/s", "rows/s"),
    ("requests", "requests", "n"),
    ("emulator_cpu", "emulator CPU", "s"),
    ("first_screen", "first screen", "s"),
)


def table(results: dict[str, Any]) -> str:
    """A Markdown table: one row per scenario, medians with half the min-max spread."""
    head = "| scenario | " + " | ".join(title for _k, title, _u in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    lines = [head, rule]
    for name, scenario in results["scenarios"].items():
        summary = scenario.get("summary")
        cells = [_cell(summary, key, unit) for key, _t, unit in COLUMNS]
        lines.append(f"| {scenario.get('title', name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_targets(results: dict[str, Any], targets: list[Target]) -> list[dict[str, Any]]:
    """Each target with its measured value and pass/miss (missing data counts as a miss)."""
    out = []
    for target in targets:
        value = _measured(results, target.scenario, target.metric)
        if value is None:
            ok = False
        else:
            ok = value >= target.limit if target.at_least else value < target.limit
        out.append(
            {
                "target": target.name,
                "value": value,
                "limit": target.limit,
                "unit": target.unit,
                "at_least": target.at_least,
                "pass": ok,
                "floor": _measured(results, *target.floor) if target.floor else None,
            }
        )
    return out


def _measured(results: dict[str, Any], key: str, metric: str) -> float | None:
    """A scenario's derived ratio or median, or None when it was not measured."""
    scenario = results["scenarios"].get(key, {})
    value = scenario.get("derived", {}).get(metric)
    if value is None:
        value = scenario.get("summary", {}).get(metric, {}).get("median")
    return None if value is None else float(value)


def targets_table(checked: list[dict[str, Any]]) -> str:
    """Targets with what was measured and, where one is measured, the floor
    under it; "floor above" marks a target that the floor alone misses."""
    lines = [
        "| target | measured | limit | floor here | result |",
        "|---|---:|---:|---:|---|",
    ]
    for row in checked:
        relation = ">=" if row["at_least"] else "<"
        floor = row.get("floor")
        result = "pass" if row["pass"] else "**miss**"
        if not (row["pass"] or row["at_least"]) and floor is not None and floor >= row["limit"]:
            result += " (floor above)"
        lines.append(
            f"| {row['target']} | {_fmt(row['value'], row['unit'])} | "
            f"{relation} {_fmt(row['limit'], row['unit'])} | "
            f"{_fmt(floor, row['unit'])} | {result} |"
        )
    return "\n".join(lines)


def ratios_table(results: dict[str, Any]) -> str:
    """The derived ratios (limit, baseline speed-ups) in one place."""
    lines = ["| ratio | value |", "|---|---:|"]
    for name, scenario in results["scenarios"].items():
        for key, value in scenario.get("derived", {}).items():
            if key.endswith("_x"):
                lines.append(f"| {scenario.get('title', name)}: {key[:-2]} | {value:.2f}x |")
    return "\n".join(lines)


def write_json(results: dict[str, Any], folder: Path) -> Path:
    """bench_results/bench-<UTC time>.json, plus latest.json pointing at the same data."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = results["started"].replace(":", "").replace("-", "")
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2)
    path = folder / f"bench-{stamp}.json"
    path.write_bytes(data)
    (folder / "latest.json").write_bytes(data)
    return path


def render(results: dict[str, Any]) -> str:
    """Everything a reader needs: machine, command, load, tables."""
    m = results["machine"]
    parts = [
        f"- Machine: {m['nproc']} cores, {m['cpu']}, {m['ram_gb']} GB RAM, Python {m['python']}",
        f"- Command: `{results['command']}`"
        + (f" (code at commit {results['commit']})" if results.get("commit") else ""),
        f"- Started {results['started']} UTC, took {results['seconds']:.0f} s; load average "
        f"{results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after",
        "",
        table(results),
        "",
        ratios_table(results),
        "",
        targets_table(results["targets"]),
    ]
    return "\n".join(parts)


START_MARK = "<!-- bench:results:start -->"
END_MARK = "<!-- bench:results:end -->"


def update_doc(doc: Path, results: dict[str, Any]) -> None:
    """Replace the generated part of docs/benchmarks.md (between the markers) with this run."""
    text = doc.read_text(encoding="utf-8")
    head, start, rest = text.partition(START_MARK)
    _old, end, tail = rest.partition(END_MARK)
    if not (start and end):
        raise ValueError(f"{doc} lacks the {START_MARK} ... {END_MARK} markers")
    doc.write_text(f"{head}{START_MARK}\n{render(results)}\n{END_MARK}{tail}", encoding="utf-8")
