"""Scheduled syncs: when one is due, running what is due, and telling someone when it fails.

A sync (stored by `store.history_syncs`) is an export with a trigger: every N,
a cron expression, or "when the profile source was refreshed". `segsync syncs
run-due`, called every minute by a systemd timer or cron, runs each due sync
once through the ordinary export engine, so a scheduled run is a run like any
other: planned, guarded, applied, recorded, resumable.

What this module decides, and why:

- **Due, once.** A scheduled sync stores its next due time. After an attempt
  the next time is computed from *now*, so a machine that was off for a week
  runs a nightly sync once when it wakes, never seven times. A sync "on
  refresh" is due when the profile source's fingerprint (size, mtime and
  Parquet footer or DuckDB checkpoint: a few kilobytes read, never the rows)
  differs from the one its last successful run started from.
- **One at a time per destination.** `run-due` holds a per-destination lock
  (``locks/syncs-<id>.lock``) while it decides and runs that destination's
  syncs, and claims each sync in the history before it runs: an overlapping
  `run-due` neither runs it again nor calls it skipped. A destination busy
  with another export is skipped and the skip recorded; the sync stays due
  and runs at the next minute the destination is free.
- **Keys without a keyring.** Under a timer there is usually no unlocked
  keyring: `UnattendedKeys` takes the destination's environment variable or
  segsync's owner-only key file, tries a keyring only if it answers at once,
  and otherwise refuses naming the destination and the fix.
- **Someone hears about it.** A failed run, a guardrail refusal, or SendGrid
  rejecting more than the sync's share of rows is a failure: recorded as an
  alert (the TUI's banner) and handed to the sync's ``on_failure`` command
  with the run's JSON summary on stdin, under a timeout, without the key in
  its environment. A hook that fails is recorded; it never stops `run-due`.

The clock is a parameter (``now``) everywhere, so tests move time by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import re
import signal
import stat
import subprocess
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from connector.models import SyncStatus
from store.fingerprint import configured_source, refresh_fingerprint
from store.history_errors import SyncError, check_sync_name
from store.postgres_source import PostgresSource
from store.records import SyncRecord
from store.safe_text import visible
from store.secrets import KeyNotFound, KeyStore, Secret

if TYPE_CHECKING:
    from connector.client import SendGridClient
    from connector.engine import EngineSettings, ExportEngine, ExportRequest
    from connector.events import Event, RunFinished
    from store.history import History
    from store.history_read import RunReader

__all__ = [
    "DEFAULT_HOOK_TIMEOUT",
    "DEFAULT_MAX_REJECTED_SHARE",
    "Attempt",
    "SyncBusy",
    "SyncError",  # from store.history_syncs: front ends catch it from here
    "SyncRunner",
    "UnattendedKeys",
    "create_sync",
    "describe_trigger",
    "due_reason",
    "edit_sync",
    "load_env_file",
    "next_due",
    "parse_every",
    "run_hook",
    "sync_overview",
]

Clock = Callable[[], datetime]

DEFAULT_MAX_REJECTED_SHARE = 0.05  # SendGrid refusing more than 5 % of a run's rows is news
DEFAULT_HOOK_TIMEOUT = 30.0
MIN_EVERY = 60  # run-due is called once a minute; a shorter interval cannot be kept
# A sync on refresh whose run *failed* (not refused, not rejected) tries the
# same source again after this long: a network blip at 3 a.m. should not wait
# for tomorrow's refresh, and a broken setup should not page every minute.
REFRESH_RETRY = timedelta(hours=1)
KEYRING_TIMEOUT = 5.0  # an unlocked keyring answers at once; a locked one may prompt forever
ENV_FILE = "syncs.env"
HOOK_OUTPUT_KEPT = 2000  # characters of a hook's output kept in its event

SUCCESS_RESULTS = ("succeeded", "partial")
FAILURE_RESULTS = ("failed", "refused", "rejected")
RESUMABLE_RESULTS = ("running", "cancelled", "interrupted")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_EVERY = re.compile(r"\s*(\d+)\s*([smhdw])\s*", re.IGNORECASE)


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- triggers -------------------------------------------------------------------


def parse_every(text: str) -> int:
    """``"6h"``, ``"30m"``, ``"1d"``, ``"1h30m"`` -> seconds (at least a minute)."""
    pos, total = 0, 0
    for match in _EVERY.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2).lower()]
        pos = match.end()
    if pos != len(text) or not text.strip():
        raise SyncError(f"--every {text!r}: use a number and a unit, e.g. 30m, 6h, 1d or 1h30m")
    if total < MIN_EVERY:
        raise SyncError(f"--every {text!r}: at least 1m (run-due is called once a minute)")
    return total


def check_cron(expression: str) -> str:
    """A five-field cron expression (minute hour day month weekday), normalised."""
    expression = " ".join(expression.split())
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise SyncError(
            f"--cron {expression!r} is not a five-field cron expression "
            '(minute hour day-of-month month day-of-week), e.g. "0 6 * * *"'
        )
    return expression


def zone(name: str | None) -> ZoneInfo:
    """The zone a cron expression is read in: ``name``, else the machine's (TZ,
    /etc/localtime), else UTC. Cron itself reads crontabs in local time."""
    candidates = [name] if name else [os.environ.get("TZ", "").lstrip(":"), _localtime_name()]
    for candidate in candidates:
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            if name:
                raise SyncError(
                    f"--tz {name!r} is not a known time zone (e.g. Europe/Berlin)"
                ) from exc
    return ZoneInfo("UTC")


def _localtime_name() -> str | None:
    with contextlib.suppress(OSError):
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    return None


def next_due(sync: SyncRecord, after: datetime) -> datetime | None:
    """The first scheduled time strictly after ``after`` (None: on refresh).

    "every" keeps its phase (slots at created + k * interval) so runs do not
    creep later by the minute run-due takes to notice them; after a gap it
    jumps to the next slot after now (catch-up happens once, by the caller).
    """
    if sync.trigger == "every":
        step = timedelta(seconds=int(sync.every_seconds or MIN_EVERY))
        anchor = sync.next_due_at or after
        if anchor > after:
            return anchor
        behind = (after - anchor) // step + 1
        return anchor + behind * step
    if sync.trigger == "cron":
        local = after.astimezone(zone(sync.timezone))
        found = croniter(_expression(sync.cron), local).get_next(datetime)
        return found.astimezone(UTC)
    return None


def first_due(trigger: str, every_seconds: int | None, cron: str | None, tz: str | None,
              now: datetime) -> datetime | None:  # fmt: skip
    """When a new (or resumed, or re-timed) sync first runs: one interval from
    now, or the cron expression's next time; on refresh, at the next change."""
    if trigger == "every":
        return now + timedelta(seconds=int(every_seconds or MIN_EVERY))
    if trigger == "cron":
        local = now.astimezone(zone(tz))
        return croniter(_expression(cron), local).get_next(datetime).astimezone(UTC)
    return None


def _expression(cron: str | None) -> str:
    """A cron sync's expression (the schema allows none; `_trigger` always sets one)."""
    if not cron:
        raise SyncError("a cron sync has no cron expression; set one with `syncs edit --cron`")
    return cron


def describe_trigger(sync: SyncRecord) -> str:
    """One phrase for lists and the TUI: ``every 6h``, ``cron 0 6 * * * (UTC)``, ``on refresh``."""
    if sync.trigger == "every":
        return f"every {format_every(int(sync.every_seconds or 0))}"
    if sync.trigger == "cron":
        return f"cron {sync.cron} ({zone(sync.timezone).key})"
    return "on refresh"


def format_every(seconds: int) -> str:
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


# -- the profile source -----------------------------------------------------------


def source_of(workspace: str | Path) -> Path | PostgresSource:
    """The profile source a workspace folder names, from its segments.toml alone
    (no DuckDB: this runs every minute for every sync on refresh)."""
    return configured_source(workspace)


def source_fingerprint_of(workspace: str | Path) -> dict[str, Any]:
    try:
        return refresh_fingerprint(source_of(workspace))
    except (OSError, KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as exc:
        return {"workspace": str(workspace), "unreadable": f"{type(exc).__name__}: {exc}"}


# -- due ----------------------------------------------------------------------------


def due_reason(sync: SyncRecord, now: datetime, *, locked: bool) -> str | None:
    """Why ``sync`` should run now, or None.

    ``locked``: the caller holds the destination's sync lock, so a claim left
    on the row (``running_pid``) belongs to a run-due that died: the sync is
    due again (and resumes its run). Without the lock a claim means another
    run-due is on it: not due here.
    """
    if sync.paused or sync.removed_at is not None:
        return None
    if sync.running_pid is not None:
        return "the previous attempt stopped before it finished" if locked else None
    if sync.last_result in RESUMABLE_RESULTS and sync.last_run_id is not None:
        return f"run {sync.last_run_id} was {sync.last_result}: resuming it"
    if sync.trigger in ("every", "cron"):
        if sync.next_due_at is not None and sync.next_due_at <= now:
            return f"scheduled for {sync.next_due_at:%Y-%m-%d %H:%M} UTC"
        return None
    fingerprint = source_fingerprint_of(sync.workspace)
    if fingerprint.get("incomplete"):
        return None  # a Parquet file still being written: wait for its footer
    if fingerprint == sync.success_fingerprint:
        return None
    if fingerprint == sync.attempt_fingerprint:
        retry = (
            sync.last_result == "failed"
            and sync.last_attempt_at is not None
            and now >= sync.last_attempt_at + REFRESH_RETRY
        )
        if not retry:
            return None  # this refresh was tried; a refusal or rejection needs a person
        return "the profile source changed; retrying the failed run"
    if sync.success_fingerprint is None:
        return "no successful run yet"
    return "the profile source changed"


# -- keys under a timer ----------------------------------------------------------------


class UnattendedKeys(KeyStore):
    """A `KeyStore` for runs nobody is watching: the destination's environment
    variable, else segsync's owner-only key file, else the OS keyring only if
    it answers within `KEYRING_TIMEOUT` (a locked one may wait for a prompt
    that nobody will ever see). Otherwise a refusal that names the destination
    and how to fix it."""

    def __init__(self, state_dir: Path, history: History, keyring_timeout: float = KEYRING_TIMEOUT):
        super().__init__(state_dir)
        self.history = history
        self.keyring_timeout = keyring_timeout

    def load(
        self, destination_id: int, env_var: str | None = None, label: str | None = None
    ) -> Secret:
        if env_var and os.environ.get(env_var, "").strip():
            return Secret(os.environ[env_var])
        path = self._file(destination_id)
        if path.is_file():
            info = path.stat()
            if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                raise KeyNotFound(
                    f"the key file of destination {label or destination_id!r} ({path}) can be "
                    f"read by others or is not yours; a scheduled run refuses it. Fix: chmod 600 "
                    f"{path} (and check who else could have read it)"
                )
            # Read here, not through KeyStore.load, which asks the keyring first.
            value = path.read_text(encoding="utf-8").strip()
            if value:
                return Secret(value)
        found = self._keyring(destination_id, label)
        if found is not None:
            return found
        raise KeyNotFound(self.refusal(destination_id, env_var, label))

    def _keyring(self, destination_id: int, label: str | None) -> Secret | None:
        box: list[Secret | None] = [None]

        def lookup() -> None:
            with contextlib.suppress(Exception):
                box[0] = KeyStore.load(self, destination_id, None, label)

        worker = threading.Thread(target=lookup, name="segsync-keyring", daemon=True)
        worker.start()
        worker.join(self.keyring_timeout)
        return box[0]

    def refusal(self, destination_id: int, env_var: str | None, label: str | None) -> str:
        name = label or f"#{destination_id}"
        storage = None
        with contextlib.suppress(Exception):
            storage = self.history.get_destination(destination_id).key_storage
        if storage == "keyring":
            what = (
                f"destination {name!r} keeps its API key in the OS keyring, which this "
                "scheduled run cannot reach (a timer or cron job has no unlocked keyring)"
            )
        else:
            what = f"destination {name!r} has no API key a scheduled run can read"
        fixes = [
            f"copy the key into segsync's owner-only key file with `segsync syncs key-file "
            f"{name}` (where the keyring is unlocked, or with --api-key-stdin)"
        ]
        env_file = self.state_dir / ENV_FILE
        if env_var:
            fixes.append(f"or put {env_var}=<key> in {env_file} (mode 0600), which run-due reads")
        return f"{what}. Fix: " + "; ".join(fixes)


def load_env_file(state_dir: Path) -> list[str]:
    """Read ``<state>/syncs.env`` (``NAME=VALUE`` lines) into the environment of
    this run-due, without overriding what is already set; returns the names read.

    This is where a timer's keys live when a destination reads its key from an
    environment variable: in the owner-only state folder, not in a unit file or
    a crontab. A file others could read or write is refused.
    """
    path = Path(state_dir) / ENV_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SyncError(f"{path}: cannot read it ({exc.strerror}); remove it or fix it") from None
    with os.fdopen(fd, encoding="utf-8") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise SyncError(f"{path}: not a plain file of yours; remove it (rm {path})")
        if info.st_mode & 0o077:
            raise SyncError(
                f"{path}: others can read or write it; make it private: chmod 600 {path}"
            )
        text = handle.read()
    names = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SyncError(f"{path}:{number}: expected NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ.setdefault(name, value)
        names.append(name)
    return names


# -- the hook ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HookResult:
    status: str  # ok | failed | timeout | error
    code: int | None
    output: str

    @property
    def message(self) -> str:
        what = {
            "ok": "the on-failure command ran",
            "failed": f"the on-failure command exited {self.code}",
            "timeout": "the on-failure command timed out and was stopped",
            "error": "the on-failure command could not be started",
        }[self.status]
        tail = " ".join(self.output.split())[-300:]
        return f"{what}: {tail}" if tail and self.status != "ok" else what


def hook_environment(strip: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment without anything that could be an API key:
    the variables destinations read keys from, those loaded from syncs.env,
    any name mentioning SENDGRID, and any value that looks like a SendGrid key."""
    dropped = set(strip)
    return {
        name: value
        for name, value in os.environ.items()
        if name not in dropped
        and "SENDGRID" not in name.upper()
        and not value.strip().startswith("SG.")
    }


def run_hook(
    command: str,
    summary: Mapping[str, Any],
    *,
    timeout: float,
    env: Mapping[str, str],
    cwd: Path | None = None,
) -> HookResult:
    """Run ``command`` with ``sh -c``, the summary as JSON on stdin, within
    ``timeout`` seconds. It gets its own process group, so a timeout stops
    whatever it started too (a shell's children would otherwise hold the pipes
    open and keep run-due waiting)."""
    import orjson

    payload = orjson.dumps(dict(summary), option=orjson.OPT_INDENT_2) + b"\n"
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return HookResult("error", None, str(exc))
    try:
        out, _ = proc.communicate(payload, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild left the group and kept the pipe
            proc.kill()
            out = b""
        return HookResult("timeout", None, _tail(out))
    except BrokenPipeError:  # it did not read stdin: fine
        out = proc.stdout.read() if proc.stdout else b""
        proc.wait()
    status = "ok" if proc.returncode == 0 else "failed"
    return HookResult(status, proc.returncode, _tail(out))


def _tail(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")[-HOOK_OUTPUT_KEPT:]


# -- the per-destination lock -----------------------------------------------------------------


class SyncBusy(RuntimeError):
    """Another segsync is running syncs of this destination."""

    def __init__(self, destination: str, pid: int | None) -> None:
        self.destination = destination
        self.pid = pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"destination {destination!r} is busy: {who} is running its syncs")


@contextlib.contextmanager
def sync_lock(state_dir: Path, destination_id: int, label: str) -> Iterator[None]:
    """Hold the destination's sync lock, or raise SyncBusy at once.

    Not the export lock itself: the engine takes that one inside the run, and
    flock locks per open file, so holding it here would refuse our own export.
    The lock file is opened like the export lock's (no links, ours, one name).
    """
    from store.locks import _holder_pid, _open_lock
    from store.paths import locks_dir

    fd = _open_lock(locks_dir(Path(state_dir)) / f"syncs-destination-{destination_id}.lock")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SyncBusy(label, _holder_pid(fd)) from None
        os.pwrite(fd, f"{os.getpid():<19}\n".encode(), 0)
        try:
            yield
        finally:
            os.pwrite(fd, b" " * 19 + b"\n", 0)
    finally:
        os.close(fd)


# -- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One sync's turn in run-due (or a run now)."""

    sync: str
    destination: str
    result: str  # succeeded | partial | rejected | failed | refused | cancelled | skipped
    run_id: int | None
    message: str
    counts: dict[str, Any] = field(default_factory=dict)
    hook: HookResult | None = None

    @property
    def failed(self) -> bool:
        return self.result in FAILURE_RESULTS


def classify(status: str, counts: Mapping[str, Any], max_share: float) -> tuple[str, str]:
    """A run's status as the sync sees it: (result, extra message). A partial run
    is a failure when SendGrid rejected more than ``max_share`` of what was sent."""
    if status == "partial":
        sent = int(counts.get("sent") or 0)
        errored = int(counts.get("errored") or 0)
        if sent and errored / sent > max_share:
            return "rejected", (
                f"SendGrid rejected {errored:,} of {sent:,} contacts ({errored / sent:.1%}), "
                f"over this sync's limit of {max_share:.1%}"
            )
        return "partial", ""
    if status in ("succeeded", "failed", "refused"):
        return status, ""
    if status in ("cancelled", "interrupted"):
        return "cancelled", ""
    return "failed", f"the run ended {status}"


class SyncRunner:
    """Runs syncs through `connector.engine.ExportEngine`, recording each attempt.

    ``now`` is the clock every decision and record uses; ``keys`` defaults to
    `UnattendedKeys`; ``settings``/``client_factory`` pass through to the
    engine (tests shrink them). ``log`` receives one line per thing worth
    saying (the CLI prints them); ``on_event`` every engine event of the run
    in progress (a front end's progress bar). `cancel` stops from any thread.
    """

    def __init__(
        self,
        history: History,
        state_dir: Path,
        *,
        now: Clock = utc_now,
        keys: KeyStore | None = None,
        settings: EngineSettings | None = None,
        client_factory: Callable[..., SendGridClient] | None = None,
        log: Callable[[str], None] | None = None,
        strip_env: Sequence[str] = (),
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.history = history
        self.state_dir = Path(state_dir)
        self.now = now
        self.keys = keys if keys is not None else UnattendedKeys(self.state_dir, history)
        self.settings = settings
        self.client_factory = client_factory
        self.log = log or (lambda _line: None)
        self.strip_env = tuple(strip_env)
        self.on_event = on_event
        self.stopping = False
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def cancel(self) -> None:
        """Stop: the run in progress ends cancelled (resumable), no further
        sync starts. Safe from any thread (the TUI's cancel button)."""
        self.stopping = True
        running = self._running
        if running is not None:
            loop, event = running
            with contextlib.suppress(RuntimeError):  # the loop just ended
                loop.call_soon_threadsafe(event.set)

    # -- run-due ------------------------------------------------------------

    def run_due(self) -> list[Attempt]:
        """Run every due sync once, destination by destination; skip (and record)
        those whose destination another segsync is busy with."""
        attempts: list[Attempt] = []
        groups: dict[int, list[SyncRecord]] = {}
        for sync in self.history.list_syncs():
            if not sync.paused:
                groups.setdefault(sync.destination_id, []).append(sync)
        for destination_id, group in groups.items():
            if self.stopping:
                break
            now = self.now()
            # A claim may be stale (its run-due was killed): only the lock tells,
            # so a claimed group is looked at too; a live claimant keeps the lock.
            if not any(s.running_pid or due_reason(s, now, locked=False) for s in group):
                continue
            label = self._destination_name(destination_id)
            try:
                with sync_lock(self.state_dir, destination_id, label):
                    attempts.extend(self._run_group(destination_id))
            except SyncBusy as busy:
                attempts.extend(self._skip_busy(group, str(busy)))
        return attempts

    def _run_group(self, destination_id: int) -> list[Attempt]:
        """Under the destination's lock: claim every due sync at once (so an
        overlapping run-due sees them taken, not skipped), then run them in turn."""
        now = self.now()
        claimed: list[tuple[SyncRecord, str]] = []
        for sync in self.history.list_syncs():
            if sync.destination_id != destination_id:
                continue
            reason = due_reason(sync, now, locked=True)
            if reason is not None:
                self.history.set_sync_state(sync.id, running_pid=os.getpid(), running_since=now)
                claimed.append((sync, reason))
        out = []
        for index, (sync, reason) in enumerate(claimed):
            if self.stopping:
                for rest, _ in claimed[index:]:
                    self.history.set_sync_state(rest.id, running_pid=None, running_since=None)
                break
            out.append(self._attempt(self.history.get_sync(sync.id), reason, scheduled=True))
        return out

    def _skip_busy(self, group: Sequence[SyncRecord], why: str) -> list[Attempt]:
        """Record a skip for each sync still due and not claimed by the holder."""
        now = self.now()
        out = []
        for sync in group:
            fresh = self.history.get_sync(sync.id)
            if due_reason(fresh, now, locked=False) is None:
                continue
            self.history.add_sync_event(fresh.id, "skip", "busy", now, message=why)
            self.log(f"sync {fresh.name}: skipped, {why}")
            dest = self._destination_name(fresh.destination_id)
            out.append(Attempt(fresh.name, dest, "skipped", None, why))
        return out

    # -- one sync -------------------------------------------------------------

    def run_now(self, sync: SyncRecord) -> Attempt:
        """Run one sync at once (`syncs run NAME`, the TUI's "run now"): its
        schedule is left as it is. Raises SyncBusy if run-due is on its destination."""
        label = self._destination_name(sync.destination_id)
        with sync_lock(self.state_dir, sync.destination_id, label):
            sync = self.history.get_sync(sync.id)
            self.history.set_sync_state(sync.id, running_pid=os.getpid(), running_since=self.now())
            return self._attempt(self.history.get_sync(sync.id), "run now", scheduled=False)

    def _attempt(self, sync: SyncRecord, reason: str, *, scheduled: bool) -> Attempt:
        """Run the claimed ``sync`` once and record everything about it."""
        from store.locks import ExportInProgress

        started = self.now()
        fingerprint = source_fingerprint_of(sync.workspace)
        resume = self._resumable_run(sync)
        before = {
            "next_due_at": sync.next_due_at,
            "last_attempt_at": sync.last_attempt_at,
            "attempt_fingerprint": sync.attempt_fingerprint,
        }
        self.history.set_sync_state(
            sync.id,
            last_attempt_at=started,
            attempt_fingerprint=fingerprint,
            next_due_at=next_due(sync, started) if scheduled else sync.next_due_at,
        )
        dest = self._destination_name(sync.destination_id)
        self.log(f"sync {sync.name}: starting ({reason})")
        try:
            status, run_id, counts, message = self._execute(sync, resume)
        except ExportInProgress as busy:
            # Someone else's export holds the list: not an attempt. Put the
            # schedule back so the sync runs at the next minute it is free.
            self.history.set_sync_state(sync.id, running_pid=None, running_since=None, **before)
            self.history.add_sync_event(sync.id, "skip", "busy", started, message=str(busy))
            self.log(f"sync {sync.name}: skipped, {busy}")
            return Attempt(sync.name, dest, "skipped", None, str(busy))
        except BaseException:
            self.history.set_sync_state(
                sync.id, running_pid=None, running_since=None, last_result="cancelled",
                last_message="run-due was stopped",
            )  # fmt: skip
            raise
        share = sync.max_rejected_share
        result, extra = classify(
            status, counts, DEFAULT_MAX_REJECTED_SHARE if share is None else share
        )
        message = "; ".join(m for m in (message, extra) if m)
        ended = self.now()
        success = result in SUCCESS_RESULTS
        state: dict[str, Any] = {
            "running_pid": None,
            "running_since": None,
            "last_result": result,
            "last_run_id": run_id,
            "last_message": message or None,
        }
        if success:
            state.update(last_success_at=ended, success_fingerprint=fingerprint)
        self.history.set_sync_state(sync.id, **state)
        alert = result in FAILURE_RESULTS
        self.history.add_sync_event(
            sync.id, "run", result, ended, run_id=run_id, message=message or None, alert=alert
        )
        shown = f"run {run_id} " if run_id else ""
        self.log(f"sync {sync.name}: {shown}{result}" + (f": {message}" if message else ""))
        attempt = Attempt(sync.name, dest, result, run_id, message, dict(counts))
        if alert and sync.on_failure:
            summary = self.summary(sync, attempt, started, ended)
            hook = self._hook(sync, summary)
            attempt = Attempt(sync.name, dest, result, run_id, message, dict(counts), hook)
        return attempt

    def _resumable_run(self, sync: SyncRecord) -> int | None:
        """The sync's last run, if it stopped part way and can be taken up again."""
        if sync.last_run_id is None:
            return None
        if sync.running_pid is None and sync.last_result not in RESUMABLE_RESULTS:
            return None
        try:
            run = self.history.get_run(sync.last_run_id)
        except LookupError:
            return None
        if run.status in ("interrupted", "cancelled", "running") and not run.dry_run:
            return run.id
        return None

    def _execute(
        self, sync: SyncRecord, resume: int | None
    ) -> tuple[str, int | None, dict[str, Any], str]:
        """(engine status, run id, counts, message). Anything that stops the
        run before or outside the engine's own recording is a failure here."""
        from connector.engine import EngineSettings, ExportEngine, ExportRefused, ExportRequest
        from connector.preflight import run_mode
        from store.workspace import Workspace, WorkspaceError

        try:
            destination = self.history.get_destination(sync.destination_id)
        except LookupError:
            return "failed", None, {}, f"destination #{sync.destination_id} no longer exists"
        if destination.removed_at is not None:
            return (
                "failed",
                None,
                {},
                (f"destination {destination.name!r} was removed; remove or edit this sync"),
            )
        try:
            workspace = Workspace.open(sync.workspace)
        except WorkspaceError as exc:
            return "failed", None, {}, str(exc)
        except Exception as exc:  # a vanished or unreadable folder, say
            return "failed", None, {}, f"{sync.workspace}: {type(exc).__name__}: {exc}"
        kwargs: dict[str, Any] = {}
        if self.client_factory is not None:
            kwargs["client_factory"] = self.client_factory
        engine = ExportEngine(
            workspace=workspace,
            history=self.history,
            keys=self.keys,
            state_dir=self.state_dir,
            settings=self.settings or EngineSettings(),
            **kwargs,
        )
        request = ExportRequest(
            destination=destination.id,
            segments=tuple(sync.segments),
            mode=run_mode(sync.mode),
            incremental=sync.incremental,
            resume_run=resume,
            allow_removals=sync.allow_removals,
        )
        try:
            finished = asyncio.run(self._drive(engine, request, sync))
        except ExportRefused as exc:
            return "failed", None, {}, str(exc)
        except SyncError as exc:
            return "failed", None, {}, str(exc)
        except Exception as exc:
            names = {cls.__name__ for cls in type(exc).__mro__}
            if "ExportInProgress" in names:
                raise
            return "failed", None, {}, f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                workspace.interrupt()
        if finished is None:
            return "failed", None, {}, "the run ended without a result"
        return finished.status, finished.run_id or None, dict(finished.counts), finished.message

    async def _drive(
        self, engine: ExportEngine, request: ExportRequest, sync: SyncRecord
    ) -> RunFinished | None:
        """Consume the engine's events; SIGINT/SIGTERM cancel the run cleanly
        (it ends ``cancelled`` and the next run-due resumes it)."""
        from connector import events as ev

        cancel = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                    loop.add_signal_handler(sig, self._stop, cancel)
                    handled.append(sig)
        finished: RunFinished | None = None
        self._running = (loop, cancel)
        if self.stopping:
            cancel.set()
        try:
            async for event in engine.run(request, cancel):
                if self.on_event is not None:
                    self.on_event(event)
                if isinstance(event, ev.RunStarted):
                    await asyncio.to_thread(  # history I/O off the event loop
                        functools.partial(
                            self.history.set_sync_state,
                            sync.id,
                            last_run_id=event.run_id,
                            last_result="running",
                        )
                    )
                elif isinstance(event, ev.RunFinished):
                    finished = event
        finally:
            self._running = None
            for sig in handled:
                loop.remove_signal_handler(sig)
        return finished

    def _stop(self, cancel: asyncio.Event) -> None:
        self.stopping = True
        cancel.set()

    # -- reporting -------------------------------------------------------------

    def summary(
        self, sync: SyncRecord, attempt: Attempt, started: datetime, ended: datetime
    ) -> dict[str, Any]:
        """The JSON a hook reads: what ran, how it ended, where to look. No key."""
        import socket

        return {
            "sync": sync.name,
            "sync_id": sync.id,
            "destination": attempt.destination,
            "workspace": sync.workspace,
            "segments": list(sync.segments),
            "mode": sync.mode,
            "incremental": sync.incremental,
            "trigger": describe_trigger(sync),
            "result": attempt.result,
            "failed": attempt.failed,
            "run": attempt.run_id,
            "message": attempt.message,
            "counts": attempt.counts,
            "started_at": started.isoformat(),
            "ended_at": ended.isoformat(),
            "host": socket.gethostname(),
            "state_dir": str(self.state_dir),
            "see": (
                f"segsync runs show {attempt.run_id}"
                if attempt.run_id
                else f"segsync syncs show {sync.name}"
            ),
        }

    def _hook(self, sync: SyncRecord, summary: Mapping[str, Any]) -> HookResult:
        """Run the on-failure command; its failure is recorded, never raised."""
        strip = set(self.strip_env)
        with contextlib.suppress(Exception):
            strip.update(d.api_key_env for d in self.history.list_destinations() if d.api_key_env)
        env = hook_environment(sorted(strip))
        env.update(
            SEGSYNC_SYNC=sync.name,
            SEGSYNC_RESULT=str(summary["result"]),
            SEGSYNC_RUN=str(summary["run"] or ""),
        )
        timeout = sync.hook_timeout or DEFAULT_HOOK_TIMEOUT
        try:
            result = run_hook(sync.on_failure or "", summary, timeout=timeout, env=env)
        except Exception as exc:  # never let the notifier take run-due down
            result = HookResult("error", None, f"{type(exc).__name__}: {exc}")
        self.history.add_sync_event(
            sync.id, "hook", result.status, self.now(), run_id=summary.get("run"),
            message=result.message, alert=result.status != "ok",
        )  # fmt: skip
        self.log(f"sync {sync.name}: {visible(result.message)}")
        return result

    def _destination_name(self, destination_id: int) -> str:
        try:
            return str(self.history.get_destination(destination_id).name)
        except LookupError:
            return f"#{destination_id}"


# -- creating and editing --------------------------------------------------------------------


def _workspace_segments(workspace: Path) -> set[str]:
    """Segment names of a workspace, from its segments.toml (the source is not read)."""
    config_path = workspace / "segments.toml"
    if not config_path.is_file():
        raise SyncError(f"{workspace}: not a workspace folder (no segments.toml)")
    try:
        config = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SyncError(f"{config_path}: {exc}") from None
    segments = config.get("segments", {})
    return set(segments) if isinstance(segments, dict) else set()


def _trigger(
    every: str | None, cron: str | None, on_refresh: bool
) -> tuple[str, int | None, str | None]:
    given = [t for t in (every is not None, cron is not None, on_refresh) if t]
    if len(given) != 1:
        raise SyncError('give exactly one trigger: --every 6h, --cron "0 6 * * *" or --on-refresh')
    if every is not None:
        return "every", parse_every(every), None
    if cron is not None:
        return "cron", None, check_cron(cron)
    return "refresh", None, None


def _check_share(value: float | None) -> float | None:
    if value is not None and not 0 <= value <= 1:
        raise SyncError("--max-rejected-share is a share between 0 and 1, e.g. 0.05 for 5 %")
    return value


def create_sync(
    history: History,
    *,
    name: str,
    destination: str,
    segments: Sequence[str],
    workspace: str | Path,
    now: datetime,
    mode: str = "upsert",
    incremental: bool = False,
    every: str | None = None,
    cron: str | None = None,
    on_refresh: bool = False,
    timezone: str | None = None,
    allow_removals: int | None = None,
    max_rejected_share: float | None = None,
    on_failure: str | None = None,
    hook_timeout: float | None = None,
) -> SyncRecord:
    """Check and store a new sync (the CLI's `syncs add`, the TUI's form).

    The workspace is stored as an absolute path: a timer does not start in the
    folder the user was in. Segments default to the destination's saved selection.
    """
    check_sync_name(name)
    dest = history.get_destination(destination)
    folder = Path(workspace).expanduser().resolve()
    known = _workspace_segments(folder)
    chosen = tuple(dict.fromkeys(segments)) or tuple(history.get_segments(dest.id))
    if not chosen:
        raise SyncError("name at least one --segment (see `segsync segments`)")
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise SyncError(
            f"unknown segment(s) {', '.join(map(repr, unknown))} in {folder / 'segments.toml'}"
        )
    if mode not in ("upsert", "mirror"):
        raise SyncError(f"unknown mode {mode!r}: upsert or mirror")
    trigger, every_seconds, expression = _trigger(every, cron, on_refresh)
    if timezone is not None:
        zone(timezone)
    if hook_timeout is not None and not hook_timeout > 0:
        raise SyncError("--hook-timeout must be more than 0 seconds")
    return history.add_sync(
        created_at=now,
        name=name,
        destination_id=dest.id,
        workspace=str(folder),
        segments=chosen,
        mode=mode,
        incremental=incremental,
        trigger=trigger,
        every_seconds=every_seconds,
        cron=expression,
        timezone=timezone,
        allow_removals=allow_removals,
        max_rejected_share=_check_share(max_rejected_share),
        on_failure=on_failure or None,
        hook_timeout=hook_timeout,
        next_due_at=first_due(trigger, every_seconds, expression, timezone, now),
    )


def edit_sync(history: History, sync: SyncRecord, now: datetime, **changes: Any) -> SyncRecord:
    """Change a sync. Changing its trigger (or time zone) or resuming it
    re-times it from now: a change never fires a run by itself."""
    values: dict[str, Any] = {}
    if "destination" in changes:
        values["destination_id"] = history.get_destination(changes.pop("destination")).id
    if "workspace" in changes:
        values["workspace"] = str(Path(changes.pop("workspace")).expanduser().resolve())
    folder = Path(values.get("workspace", sync.workspace))
    if "segments" in changes or "workspace" in values:
        chosen = tuple(dict.fromkeys(changes.pop("segments", None) or sync.segments))
        unknown = [s for s in chosen if s not in _workspace_segments(folder)]
        if unknown:
            raise SyncError(f"unknown segment(s) {', '.join(map(repr, unknown))} in {folder}")
        values["segments"] = chosen
    triggers = {k: changes.pop(k) for k in ("every", "cron", "on_refresh") if k in changes}
    retime = bool(triggers) or "timezone" in changes or changes.get("paused") is False
    trigger, every_seconds, expression = sync.trigger, sync.every_seconds, sync.cron
    if triggers:
        trigger, every_seconds, expression = _trigger(
            triggers.get("every"), triggers.get("cron"), bool(triggers.get("on_refresh"))
        )
        values.update(trigger=trigger, every_seconds=every_seconds, cron=expression)
    if "timezone" in changes and changes["timezone"] is not None:
        zone(changes["timezone"])
    if "max_rejected_share" in changes:
        _check_share(changes["max_rejected_share"])
    if "mode" in changes and changes["mode"] not in ("upsert", "mirror"):
        raise SyncError(f"unknown mode {changes['mode']!r}: upsert or mirror")
    values.update(changes)
    if retime:
        tz = values.get("timezone", sync.timezone)
        values["next_due_at"] = first_due(trigger, every_seconds, expression, tz, now)
    return history.update_sync(sync.id, updated_at=now, **values)


# -- what the TUI and `syncs list` show ----------------------------------------------------------


def sync_overview(history: History | RunReader, now: datetime) -> list[SyncStatus]:
    """Every active sync with its last run, result and next run, for a table
    (`segsync syncs` reads it without SQLAlchemy: `store.history_read`)."""
    alerts: dict[int, int] = {}
    for alert in history.sync_alerts():
        alerts[alert.sync_id] = alerts.get(alert.sync_id, 0) + 1
    names = {d.id: d.name for d in history.list_destinations(include_removed=True)}
    out = []
    for sync in history.list_syncs():
        next_run: datetime | None = None
        waiting = None
        if not sync.paused:
            if sync.trigger == "refresh":
                if due_reason(sync, now, locked=False):
                    waiting = "due: runs at the next minute"
                elif sync.last_result == "failed" and sync.last_attempt_at is not None:
                    next_run = sync.last_attempt_at + REFRESH_RETRY
                    waiting = "a retry of the failed run, or the next change of the profiles"
                else:
                    waiting = "the next change of the profile source"
            else:
                next_run = sync.next_due_at
        out.append(
            SyncStatus(
                id=sync.id,
                name=sync.name,
                destination=names.get(sync.destination_id, f"#{sync.destination_id}"),
                workspace=sync.workspace,
                segments=sync.segments,
                mode=sync.mode,
                incremental=sync.incremental,
                trigger=describe_trigger(sync),
                paused=sync.paused,
                running=sync.running_pid is not None,
                last_attempt_at=sync.last_attempt_at,
                last_result=sync.last_result,
                last_run_id=sync.last_run_id,
                last_message=sync.last_message,
                last_success_at=sync.last_success_at,
                next_run_at=next_run,
                waiting_for=waiting,
                alerts=alerts.get(sync.id, 0),
            )
        )
    return out
