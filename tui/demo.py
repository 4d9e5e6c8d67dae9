"""`segsync demo`: the whole product on bundled data, with no account and no network.

A local SendGrid emulator runs inside the process, with its state kept in
the demo's own state directory so contacts exported in one demo are still
there in the next. A demo destination is prepared without consent, so the
user meets that step as a real user would.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tui.cli import EXIT_OK

DEMO_DESTINATION = "demo"


def bundled_workspace(state_dir: Path) -> Path:
    """sample_data/ from the source tree, or the same data regenerated when installed."""
    bundled = Path(__file__).resolve().parents[1] / "sample_data"
    if (bundled / "segments.toml").is_file():
        return bundled
    from store.sample import generate_workspace

    target = state_dir / "sample_data"
    if not (target / "segments.toml").is_file():
        generate_workspace(target, 5000)
    return target


def demo_state_dir(explicit: Path | None) -> Path:
    import platformdirs

    from store.paths import state_dir

    if explicit is not None:
        return state_dir(explicit)
    return state_dir(Path(platformdirs.user_data_dir("segsync", appauthor=False)) / "demo")


def prepare_demo(
    state: Path, workspace: Path, emulator_url: str, api_key: str, list_id: str
) -> Any:
    """Create (or refresh) the demo destination, its key, mapping and segments."""
    from store.history import History, NotFound
    from store.paths import history_path
    from store.plan import suggest_mapping
    from store.secrets import KeyStore
    from store.workspace import Workspace

    history = History(history_path(state))
    keys = KeyStore(state)
    try:
        dest = history.get_destination(DEMO_DESTINATION)
        history.update_destination(dest.id, base_url=emulator_url, list_id=list_id)
    except NotFound:
        dest = history.add_destination(
            name=DEMO_DESTINATION,
            list_id=list_id,
            list_name="segsync demo",
            base_url=emulator_url,
            api_key_env=None,
            key_storage="pending",
            cap=100_000,
        )
        ws = Workspace.open(workspace)
        history.set_mapping(dest.id, suggest_mapping(ws.columns(), ("loyalty_tier",)))
        history.set_segments(dest.id, [s.name for s in ws.segments()[:2]])
    storage = keys.save(dest.id, api_key)
    history.update_destination(dest.id, key_storage=storage)
    return history.get_destination(dest.id)


def run_demo(args: argparse.Namespace) -> int:
    import shutil

    from connector.emulator import Emulator, seed_demo

    state = demo_state_dir(getattr(args, "state_dir", None))
    if args.reset:
        shutil.rmtree(state, ignore_errors=True)
        state = demo_state_dir(getattr(args, "state_dir", None))
    workspace = bundled_workspace(state)
    emulator = Emulator(state_file=state / "emulator.json")
    emulator.start()
    try:
        api_key, list_id = seed_demo(emulator.state)
        prepare_demo(state, workspace, emulator.url, api_key, list_id)
        from tui.app import run_app

        run_app(workspace=workspace, state_dir=state, demo=True)
    finally:
        emulator.stop()
    return EXIT_OK
