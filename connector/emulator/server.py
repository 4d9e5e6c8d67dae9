"""HTTP front of the emulator: SendGrid's routes, auth, rate limits and faults.

A stdlib `ThreadingHTTPServer` on loopback keeps full control of the socket,
which the faults need (a dropped connection is a socket closed without an
answer; a library server would answer 500 instead). The routes themselves
are in `routes.py`; this module adds what surrounds them on every request:
faults, latency, the key and its scopes, rate limits, and recording.

Besides SendGrid's `/v3/...` routes the server answers `/_emulator/...` for
out-of-process inspection (benchmarks, the demo): account state, list emails,
request statistics, fault settings, and the errors files that `errors_url`
points at. Those need no key, like the pre-signed URLs SendGrid hands out.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from connector.emulator.faults import FaultInjector, Faults
from connector.emulator.persist import load_state, save_state
from connector.emulator.routes import ROUTES, Request, Route, find_route
from connector.emulator.rules import FULL_SCOPES, READ_ONLY_SCOPES, ApiError
from connector.emulator.state import EmulatorState, LogEntry, key_digest

__all__ = ["BAD_KEY_MESSAGE", "ROUTES", "Emulator", "Exchange"]

BAD_KEY_MESSAGE = "The provided authorization grant is invalid, expired, or revoked"
_MAX_READ_BYTES = 64_000_000  # beyond this the body is not even read


@dataclass(frozen=True)
class Exchange:
    """One recorded request/response pair, for conformance checks (no headers: no key)."""

    method: str
    endpoint: str  # path template, e.g. "/v3/marketing/lists/{id}"
    path: str
    query: dict[str, list[str]]
    request_json: Any
    status: int
    response_json: Any


class RateLimiter:
    """Fixed windows per (key, endpoint), as SendGrid limits per endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def hit(self, who: str, endpoint: str, limit: int, period: float) -> tuple[bool, int, int]:
        """Count one request; return (allowed, remaining, seconds until the window resets)."""
        now = time.monotonic()
        with self._lock:
            start, count = self._windows.get((who, endpoint), (now, 0))
            if now - start >= period:
                start, count = now, 0
            count += 1
            self._windows[(who, endpoint)] = (start, count)
        reset = max(0, math.ceil(start + period - now))
        return count <= limit, max(0, limit - count), reset


# ------------------------------------------------------------------- handler
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a client opening its 10 connections at
    # once had the rest of its SYNs dropped and retried a full second later, so
    # requests "sent" together reached the server a second apart.
    request_queue_size = 128
    emulator: Emulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 60  # idle keep-alive connections are closed after this
    # BaseHTTPRequestHandler's own buffer of header lines (set by send_header,
    # written by flush_headers), undeclared in its stubs; see _send.
    _headers_buffer: list[bytes]

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a log line could carry a request path, and tests read stderr."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_READ_BYTES:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> bytes:
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        # Headers and body in one write: two small writes meet Nagle and delayed
        # ACKs and cost ~40 ms per response on loopback.
        self._headers_buffer.extend((b"\r\n", body))
        self.flush_headers()
        return body

    def _handle(self) -> None:
        emu = self.server.emulator
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query, keep_blank_values=True)
        body = self._read_body()
        if path.startswith("/_emulator/"):
            status, payload, ctype = emu.internal(self.command, path, body)
            self._send(status, payload, content_type=ctype)
            return
        route, params, path_known = find_route(self.command, path)
        endpoint = f"{self.command} {route.template if route else path}"
        size = max(len(body), int(self.headers.get("Content-Length") or 0))
        req = Request(self.command, path, query, body, params, size)
        status, payload, headers = emu.respond(route, req, self.headers.get("Authorization"))
        if status and route is None:
            status = 405 if path_known else 404
            message = "method not allowed" if path_known else "resource not found"
            payload = {"errors": [{"field": None, "message": message}]}
        # Recorded before answering, so a test that has its response sees its record.
        contacts = 0
        if route is not None and route.template == "/v3/marketing/contacts":
            contacts = body.count(b'"email"')
        emu.state.record_request(LogEntry(self.command, path, endpoint, status, contacts))
        if emu.record and route is not None:
            emu.exchanges.append(
                Exchange(
                    self.command,
                    route.template,
                    path,
                    query,
                    _maybe_json(body),
                    status,
                    payload if status else None,
                )
            )
        if status == 0:  # dropped: no answer at all
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
        else:
            self._send(status, payload, headers)


def _maybe_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body


# ------------------------------------------------------------------ emulator
class Emulator:
    """A running emulator: `url`, `state`, `faults`, and an API key with every scope.

    Use as a context manager (or `start()`/`stop()`). Port 0 picks a free port.
    With `state_file` the account is loaded at start and saved (debounced) after
    changes and at stop. With `record=True` every API exchange is kept in
    `exchanges` for the conformance tests.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        state: EmulatorState | None = None,
        faults: Faults | Mapping[str, Any] | None = None,
        state_file: Path | None = None,
        record: bool = False,
        save_interval: float = 1.0,
    ) -> None:
        self._injector = FaultInjector(faults)
        self.state = state or EmulatorState(self._injector)
        self.state.faults = self._injector
        self.state_file = state_file
        self.record = record
        self.exchanges: list[Exchange] = []
        self.limiter = RateLimiter()
        self._save_interval = save_interval
        self._saved_version = -1
        self._stop = threading.Event()
        if state_file is not None and state_file.exists():
            load_state(self.state, state_file)
            self._saved_version = self.state.version
        self.api_key = self.state.add_key(FULL_SCOPES)
        self.read_only_key = self.state.add_key(READ_ONLY_SCOPES)
        self._server = _HTTPServer((host, port), _Handler)
        self._server.emulator = self
        host_name, bound_port = self._server.server_address[:2]
        if isinstance(host_name, bytes):  # an AF_UNIX-style address; never for TCP
            host_name = host_name.decode()
        self.url = f"http://{host_name}:{bound_port}"
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:  # keys stay out of reprs
        return f"Emulator(url={self.url!r})"

    # -------------------------------------------------------------- faults
    @property
    def faults(self) -> Faults:
        """The live fault settings; assigning attributes takes effect at once."""
        return self._injector.faults

    def set_faults(self, **changes: Any) -> Faults:
        """Change some fault settings (validated; a new `seed` reseeds the RNG)."""
        return self._injector.update(**changes)

    # ----------------------------------------------------------- lifecycle
    def start(self) -> Emulator:
        serve = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="emulator-http",
            daemon=True,
        )
        serve.start()
        self._threads.append(serve)
        if self.state_file is not None:
            saver = threading.Thread(target=self._save_loop, name="emulator-save", daemon=True)
            saver.start()
            self._threads.append(saver)
        return self

    def stop(self) -> None:
        """Stop serving and save; safe to call twice or without `start()`."""
        self._stop.set()
        if self._threads:
            self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self.save()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Block serving until `request_stop()` or Ctrl-C, then stop and save."""
        self.start()
        try:
            self.wait()
        finally:
            self.stop()

    def wait(self) -> None:
        """Block until `request_stop()` is called (wakes twice a second for Ctrl-C)."""
        while not self._stop.wait(0.5):
            pass

    def request_stop(self) -> None:
        """Make `wait`/`serve_forever` return (safe from a signal handler)."""
        self._stop.set()

    def save(self) -> None:
        """Write the account to `state_file` if it changed since the last save."""
        if self.state_file is None or self.state.version == self._saved_version:
            return
        self.state.drain()
        self._saved_version = save_state(self.state, self.state_file)

    def _save_loop(self) -> None:
        while not self._stop.wait(self._save_interval):
            self.save()

    # ------------------------------------------------------------- requests
    def respond(
        self, route: Route | None, req: Request, authorization: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        """Decide the answer to one API request; status 0 means drop the connection."""
        fault = self._injector.draw(f"{route.method} {route.template}" if route else "")
        faults = self._injector.faults
        if faults.latency:
            time.sleep(faults.latency)
        limit = faults.rate_limit or 0
        if fault == "drop":
            return 0, None, {}
        if fault == "429":
            return (
                429,
                _error("too many requests"),
                _rate_headers(limit, 0, faults.rate_limit_reset),
            )
        if fault in ("500", "503"):
            message = "internal server error" if fault == "500" else "service unavailable"
            return int(fault), {"errors": [{"field": None, "message": message}]}, {}
        if route is None:
            return 404, None, {}
        token = (authorization or "").removeprefix("Bearer ").strip()
        scopes = self.state.scopes_for(token) if token else None
        who = key_digest(token)
        headers: dict[str, str] = {}
        if faults.rate_limit:
            allowed, remaining, reset = self.limiter.hit(
                who, route.template, faults.rate_limit, faults.rate_period
            )
            headers = _rate_headers(limit, remaining, reset)
            if not allowed:
                return 429, _error("too many requests"), headers
        if scopes is None:
            return 401, _error(BAD_KEY_MESSAGE), headers
        if route.scope is not None and route.scope not in scopes:
            return 403, _error("access forbidden"), headers
        try:
            status, payload = route.handler(self, replace(req, scopes=scopes))
        except ApiError as exc:
            return exc.status, exc.body(), headers
        return status, payload, headers

    def internal(self, method: str, path: str, body: bytes) -> tuple[int, Any, str]:
        """The `/_emulator/...` inspection and control routes."""
        state = self.state
        ctype = "application/json"
        if method == "GET" and path == "/_emulator/state":
            with state.lock:
                payload = {
                    "lists": [
                        {
                            "id": lst["id"],
                            "name": lst["name"],
                            "contact_count": lst["contact_count"],
                        }
                        for lst in state.all_lists()
                    ],
                    "contact_count": len(state.contacts),
                    "custom_fields": [dict(f) for f in state.fields],
                    "jobs_pending": sum(j.status() == "pending" for j in state.jobs.values()),
                }
            return 200, payload, ctype
        if method == "GET" and path == "/_emulator/stats":
            return 200, state.stats(), ctype
        if path == "/_emulator/faults":
            if method == "POST":
                try:
                    self.set_faults(**orjson.loads(body or b"{}"))
                except (ValueError, TypeError) as exc:
                    return 400, _error(str(exc)), ctype
            return 200, self.faults.to_json(), ctype
        match = re.fullmatch(r"/_emulator/lists/([^/]+)/emails", path)
        if method == "GET" and match:
            if match[1] not in state.lists:
                return 404, _error("list ID does not exist"), ctype
            return 200, {"emails": sorted(state.list_members(match[1]))}, ctype
        match = re.fullmatch(r"/_emulator/errors/([^/]+)", path)
        if method == "GET" and match and match[1] in state.jobs:
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(["email", "error"])
            writer.writerows(state.jobs[match[1]].errors)
            return 200, out.getvalue().encode(), "text/csv"
        return 404, _error("resource not found"), ctype


def _error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"field": field, "message": message}]}


def _rate_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    # Reset is seconds until the window resets, as recent real responses show.
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(reset),
    }
