"""A local, stateful emulator of SendGrid's Marketing Contacts API.

Used by the demo (no account needed) and by the tests (real loopback HTTP,
with fault injection). See `server.Emulator` for the entry point.
"""

from connector.emulator.demo import demo_api_key, run_emulator, seed_demo, tune_gc_for_bulk_ingest
from connector.emulator.faults import Faults
from connector.emulator.rules import ApiError
from connector.emulator.server import Emulator, Exchange
from connector.emulator.state import EmulatorState

__all__ = [
    "ApiError",
    "Emulator",
    "EmulatorState",
    "Exchange",
    "Faults",
    "demo_api_key",
    "run_emulator",
    "seed_demo",
    "tune_gc_for_bulk_ingest",
]
