"""segsync benchmarks (issue 6): `uv run python -m tests.bench`.

Not part of the test run; tests/bench_smoke runs the same code at tiny sizes.
Modules: workloads (workspaces, emulator process, destinations), measure
(child-process timing), baseline (the official-library script), limit
(in-process serialisation floors), tui_probe, scenarios (the runs), report.
"""
