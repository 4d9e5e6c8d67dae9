"""What the emulator was sent, read from its own exchange log.

Resume tests need the addresses of the batches a killed run had confirmed, to
check none is sent again. The emulator's log is the record of what crossed
the wire; segsync's history says only which jobs it saw finish.
"""

from __future__ import annotations

from typing import Any

CONFIRMED = ("completed", "errored")


def confirmed_emails(emulator: Any, history: Any, run_id: int) -> set[str]:
    """Addresses in the upserts whose jobs the run recorded as finished."""
    jobs = {b.job_id for b in history.get_run(run_id).batches if b.status in CONFIRMED and b.job_id}
    out: set[str] = set()
    for exchange in emulator.exchanges:
        if exchange.method != "PUT" or exchange.endpoint != "/v3/marketing/contacts":
            continue
        answer = exchange.response_json
        if exchange.status == 202 and isinstance(answer, dict) and answer.get("job_id") in jobs:
            out.update(c["email"] for c in exchange.request_json["contacts"])
    return out
