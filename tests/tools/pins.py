"""Pin the tested set of packages: `uv run python -m tests.tools.pins`.

segsync's dependencies are declared as ranges (``textual>=1.0``), and a new
release must not break CI without a change of ours; a lock file would record
the package index address, which this project does not commit. So the exact
versions CI tested are kept as ``[tool.uv] constraint-dependencies`` in
pyproject.toml: names and versions only. This rewrites that block from what is
installed now (run it after ``uv sync --upgrade`` and a green test run).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
START = "# -- pins: written by `uv run python -m tests.tools.pins`; do not edit by hand --"
END = "# -- end of pins --"


def installed() -> list[str]:
    """`name==version` of every installed package but segsync itself."""
    out = subprocess.run(
        ["uv", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(line.strip() for line in out.splitlines() if "==" in line)


def render(pins: list[str]) -> str:
    body = "".join(f'    "{pin}",\n' for pin in pins)
    return f"{START}\n[tool.uv]\nconstraint-dependencies = [\n{body}]\n{END}\n"


def main() -> None:
    text = PYPROJECT.read_text()
    block = render(installed())
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END) + r"\n", re.DOTALL)
    text = pattern.sub(block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    PYPROJECT.write_text(text)
    print(f"pinned {block.count('==')} packages in {PYPROJECT}")


if __name__ == "__main__":
    main()
