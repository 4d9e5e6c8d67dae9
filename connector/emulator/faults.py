"""Fault injection for the SendGrid emulator.

Real SendGrid rate-limits, has bad minutes (5xx), drops connections and keeps
jobs pending for a long time. A client that is only ever tested against a
perfect server breaks on the first of these, so every one of them can be
switched on per run: at construction, from Python while the server runs, or
over HTTP (`POST /_emulator/faults`) for out-of-process users such as the
benchmarks and the demo.

Shares are probabilities in 0..1 drawn from a seeded RNG so a failing test
can be replayed. `script` lists exact faults for the next requests, in order,
for tests that need "one 429, then success" without relying on chance.

Removals from a list have their own knobs, because what matters there is
whether a removal that looks accepted really happened: `removal_job` makes
every removal job end `failed`, stay `pending` forever, or claim `completed`
while nothing changed (as one SendGrid user reported); `removal_script` lists
exact faults (429, 5xx, drop) for the next removal DELETEs only, so a test can
fail the removals while the searches and polls around them behave.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

FaultKind = Literal["429", "500", "503", "drop", "ok"]
FAULT_KINDS: frozenset[str] = frozenset({"429", "500", "503", "drop", "ok"})
# A scripted fault (a string, checked against FAULT_KINDS when it was set) as a FaultKind.
_SCRIPTED: dict[str, FaultKind] = {
    "429": "429",
    "500": "500",
    "503": "503",
    "drop": "drop",
    "ok": "ok",
}
REMOVAL_JOB_OUTCOMES: frozenset[str] = frozenset({"ok", "failed", "pending", "ignored"})
REMOVAL_ENDPOINT = "DELETE /v3/marketing/lists/{id}/contacts"
_ALIASES = {"drop": "rate_drop", "delay": "job_delay"}


@dataclass
class Faults:
    """What goes wrong, and how often. All defaults mean "behave well".

    Every field is settable from Python (``emulator.set_faults(removal_job="failed")``)
    or over HTTP (``POST /_emulator/faults {"removal_script": ["503", "429"]}``); the
    comment beside each says what it does.
    """

    rate_limit: int | None = 600  # requests per key and endpoint per period; None: unlimited
    rate_period: float = 1.0  # seconds of one rate-limit window
    rate_429: float = 0.0  # share of requests answered 429 "too many requests"
    rate_limit_reset: int = 1  # X-RateLimit-Reset (seconds) sent with an injected 429
    rate_5xx: float = 0.0  # share of requests answered 500 or 503 (half each)
    latency: float = 0.0  # seconds added before every API response
    rate_drop: float = 0.0  # share of connections closed after reading the body, no answer
    job_delay: float = 0.0  # seconds a job stays `pending` after it was accepted
    row_error_rate: float = 0.0  # share of otherwise valid upserted rows that error
    error_emails: set[str] = field(default_factory=set)  # rows with these emails error
    discard: bool = False  # PUT contacts: read the body, answer 202, store nothing
    seed: int | None = None  # RNG seed for reproducible fault sequences
    script: list[str] = field(default_factory=list)  # exact faults for the next requests
    # How removal ("delete") jobs end. "ok": members removed, job completed.
    # "failed": nothing removed, job ends `failed` with every id in its errors
    # file. "pending": nothing removed, job stays `pending` forever (changing
    # the setting later does not finish the jobs already submitted).
    # "ignored": nothing removed, yet the job reports `completed` with every id
    # counted as deleted: only reading membership back can tell.
    removal_job: str = "ok"
    # Exact faults for the next removal DELETEs (same kinds as `script`); used
    # before `script` and the shares, and by removal DELETEs only.
    removal_script: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject settings that would silently do nothing or crash the server later."""
        for name in ("rate_429", "rate_5xx", "rate_drop", "row_error_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError("rate_limit must be at least 1 (or None for no limit)")
        for name in ("latency", "job_delay", "rate_period"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.rate_limit_reset < 0:
            raise ValueError("rate_limit_reset must not be negative")
        for name in ("script", "removal_script"):
            bad = [kind for kind in getattr(self, name) if kind not in FAULT_KINDS]
            if bad:
                raise ValueError(f"unknown fault kinds in {name}: {bad}; use {sorted(FAULT_KINDS)}")
        if self.removal_job not in REMOVAL_JOB_OUTCOMES:
            raise ValueError(
                f"removal_job must be one of {sorted(REMOVAL_JOB_OUTCOMES)},"
                f" got {self.removal_job!r}"
            )
        self.error_emails = {email.lower() for email in self.error_emails}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view (sets become sorted lists)."""
        data = asdict(self)
        data["error_emails"] = sorted(self.error_emails)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Faults:
        """Build from a JSON object; unknown keys are an error, not ignored.

        Short command-line style names (`drop`, `delay`) are accepted as aliases.
        """
        values = {_ALIASES.get(k, k): v for k, v in data.items()}
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        if "error_emails" in values:
            values["error_emails"] = set(values["error_emails"])
        for name in ("script", "removal_script"):
            if name in values:  # a copy: drawing pops from it, the caller's list stays whole
                values[name] = list(values[name])
        return cls(**values)


class FaultInjector:
    """Thread-safe holder of the current `Faults` and the RNG that draws them."""

    def __init__(self, faults: Faults | Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        if isinstance(faults, Mapping):
            faults = Faults.from_json(faults)
        self._faults = faults or Faults()
        self._rng = random.Random(self._faults.seed)

    @property
    def faults(self) -> Faults:
        return self._faults

    def update(self, **changes: Any) -> Faults:
        """Change some settings, keep the others."""
        with self._lock:
            data = self._faults.to_json()
            data.update(changes)
            new = Faults.from_json(data)
            if "seed" in changes:
                self._rng = random.Random(new.seed)
            self._faults = new
            return new

    def draw(self, endpoint: str = "") -> FaultKind:
        """Decide the fate of one API request: a scripted fault first, else by chance.

        ``endpoint`` ("METHOD /template") lets removal DELETEs take their faults
        from ``removal_script`` first.
        """
        with self._lock:
            f = self._faults
            if endpoint == REMOVAL_ENDPOINT and f.removal_script:
                return _SCRIPTED[f.removal_script.pop(0)]
            if f.script:
                return _SCRIPTED[f.script.pop(0)]
            roll = self._rng.random()
            if roll < f.rate_drop:
                return "drop"
            roll -= f.rate_drop
            if roll < f.rate_429:
                return "429"
            roll -= f.rate_429
            if roll < f.rate_5xx:
                return "500" if self._rng.random() < 0.5 else "503"
            return "ok"

    def has_row_faults(self) -> bool:
        """Whether any row can be errored by a fault (lets the upsert loop skip the check)."""
        f = self._faults
        return bool(f.error_emails) or f.row_error_rate > 0

    def row_errors(self, email: str) -> bool:
        """Whether an otherwise valid row should be reported as errored."""
        with self._lock:
            f = self._faults
            if email in f.error_emails:
                return True
            return f.row_error_rate > 0 and self._rng.random() < f.row_error_rate
