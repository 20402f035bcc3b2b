"""A small threaded HTTP server with routing, a call log and fault injection.

Besides faults, every emulator has the switches for what real APIs do that a client must
survive: :class:`Drift` (records with fields dropped, added or retyped), ``loop``
(paging that never ends; each provider's emulator says how its paging loops), ``gzip``
(compressed bodies, as the real services send them) and, through :class:`Fault`, huge bodies
(``pad``) and redirects to another host (``redirect``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import re
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

import orjson

from ela.tokens import TokenStore


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}


@dataclasses.dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    raw: bytes | None = None  # sent as-is (malformed payloads)
    pad: int = 0  # bytes of JSON whitespace after the body: still valid JSON, only huge


@dataclasses.dataclass
class Drift:
    """Schema drift: what a provider does to its records between two client-library releases.

    Applied to every record an emulator serves (a copy: the stored data stays as it was).

    Attributes:
        drop: fields removed (a field the client library's model requires, say).
        add: fields added, with their values (a field the model has never heard of).
        retype: fields whose value is replaced by one of another type.
    """

    drop: tuple[str, ...] = ()
    add: dict[str, Any] = dataclasses.field(default_factory=dict)
    retype: dict[str, Any] = dataclasses.field(default_factory=dict)

    def apply(self, record: Any) -> Any:
        if not isinstance(record, dict):
            return record
        drifted = {k: v for k, v in record.items() if k not in self.drop}
        drifted.update({k: v for k, v in self.retype.items() if k in drifted})
        drifted.update(self.add)
        return drifted


@dataclasses.dataclass
class Fault:
    """A failure to serve instead of the real answer.

    Attributes:
        status: HTTP status to answer with (429, 500, 401, ...); 0 for no status (see below).
        retry_after: seconds for the Retry-After header (429/503).
        delay: seconds to sleep before answering (a timeout, if longer than the client's).
        malformed: answer 200 with a body that is not JSON.
        path: only requests whose path contains this.
        times: how many requests it hits (None: until cleared).
        rate: probability per matching request (1.0: every one).
        after: let this many matching requests through first (fail page 2, not page 1).
        pad: serve the real answer followed by this many bytes of JSON whitespace (a huge
            body that is still valid JSON; with ``Emulator.gzip`` it compresses to almost
            nothing, a decompression bomb).
        redirect: answer ``302 Found`` with this ``Location`` (another host, say).
        latin1: serve the real answer with the first string of its first record starting with
            ``é`` encoded as Latin-1 (the byte 0xE9), as a server or proxy with the wrong
            charset does: a body that is not valid UTF-8.
    """

    status: int = 500
    retry_after: float | None = None
    delay: float = 0.0
    malformed: bool = False
    path: str = ""
    times: int | None = 1
    rate: float = 1.0
    after: int = 0
    pad: int = 0
    redirect: str = ""
    latin1: bool = False


Handler = Callable[[Request, "re.Match[str]"], Response]


class Emulator:
    """Base class: subclasses register routes with :meth:`route` in ``__init__``."""

    name = "emulator"

    def __init__(self, seed: int = 7) -> None:
        self.random = random.Random(seed)
        self.lock = threading.RLock()
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.faults: list[Fault] = []
        self.connections = 0  # TCP connections accepted: keep-alive shows as fewer than calls
        # Seconds each API answer waits before it is sent: a network round trip, so that what
        # a client gains by having several calls in flight shows (the benchmark sets it).
        self.latency = 0.0
        self.in_flight = 0
        self.peak_in_flight = 0  # the most API calls answered at once since reset_calls()
        self.drift: Drift | None = None  # schema drift applied to every record served
        self.loop = False  # paging never ends (each provider's emulator says how)
        self.gzip = False  # compress answers for clients that accept gzip
        self.compressed = 0  # answers sent gzip-compressed
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- wiring ---------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def start(self, port: int = 0, host: str = "127.0.0.1") -> Self:
        """Serve on ``host:port`` (port 0: a free one). Loopback unless told otherwise:
        scripts/compose-smoke serves other containers on 0.0.0.0."""
        emulator = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes; with Nagle on, the body of a small answer
            # on a kept-alive connection waits for the client's delayed ACK (40 ms here).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                with emulator.lock:
                    emulator.connections += 1

            def _serve(self) -> None:
                emulator._dispatch(self)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self if self._server else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """The environment variables that point the provider's connector at this emulator,
        with credentials it accepts."""
        return {}

    def prepare_tokens(self, store: TokenStore) -> None:
        """Seed the token store with tokens this emulator accepts (providers whose workers only
        resume from stored tokens, such as Garmin). Default: nothing to seed."""

    @property
    def url(self) -> str:
        assert self._server, "emulator not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- faults and observation -----------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def drifted(self, records: list[Any]) -> list[Any]:
        """``records`` as served: with :attr:`drift` applied, if any (the same list if none)."""
        drift = self.drift
        return records if drift is None else [drift.apply(r) for r in records]

    def calls_to(self, fragment: str) -> int:
        with self.lock:
            return sum(1 for _, path, _ in self.calls if fragment in path)

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()
            self.peak_in_flight = self.in_flight

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path in path and fault.after > 0:
                    fault.after -= 1
                    continue
                if fault.path in path and self.random.random() < fault.rate:
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    # -- dispatch -------------------------------------------------------------------------
    def _dispatch(self, http: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(http.path)
        length = int(http.headers.get("Content-Length") or 0)
        request = Request(
            method=http.command,
            path=parsed.path,
            query={k: v[-1] for k, v in parse_qs(parsed.query).items()},
            headers={k.lower(): v for k, v in http.headers.items()},
            body=http.rfile.read(length) if length else b"",
        )
        if request.path.startswith("/_emulator/"):
            response = self._control(request)
        else:
            with self.lock:
                self.calls.append((request.method, request.path, request.query))
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                if self.latency:
                    time.sleep(self.latency)
                response = self._answer(request)
            finally:
                with self.lock:
                    self.in_flight -= 1
        gzip = self.gzip and "gzip" in request.headers.get("accept-encoding", "")
        if gzip:
            with self.lock:
                self.compressed += 1
        self._send(http, response, gzip)

    def _answer(self, request: Request) -> Response:
        fault = self._take_fault(request.path)
        if fault:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.redirect:
                return Response(302, {"redirect": fault.redirect}, {"Location": fault.redirect})
            if fault.pad:
                return dataclasses.replace(self._handle(request), pad=fault.pad)
            if fault.latin1:
                return _in_latin1(self._handle(request))
            if fault.malformed:
                return Response(200, raw=b'{"results": [ {"id": "truncated...')
            if fault.status:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(int(fault.retry_after))
                return Response(fault.status, {"error": f"injected {fault.status}"}, headers)
        return self._handle(request)

    def _handle(self, request: Request) -> Response:
        for method, pattern, handler in self.routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                try:
                    return handler(request, match)
                except Exception as exc:  # an emulator bug must surface as a 500, not a hang
                    return Response(500, {"error": f"emulator error: {exc!r}"})
        return Response(404, {"error": f"no route for {request.method} {request.path}"})

    def _control(self, request: Request) -> Response:
        """``POST /_emulator/faults`` (JSON Fault fields), ``DELETE /_emulator/faults``,
        ``GET /_emulator/calls``: for processes that cannot call the Python API."""
        if request.path == "/_emulator/faults" and request.method == "POST":
            self.inject(Fault(**request.json()))
            return Response(204)
        if request.path == "/_emulator/faults" and request.method == "DELETE":
            self.clear_faults()
            return Response(204)
        if request.path == "/_emulator/calls":
            with self.lock:
                return Response(200, [list(c) for c in self.calls])
        return Response(404, {"error": "unknown control endpoint"})

    @staticmethod
    def _send(http: BaseHTTPRequestHandler, response: Response, gzip: bool = False) -> None:
        if response.raw is not None:
            payload = response.raw
        elif response.body is None:
            payload = b""
        else:
            payload = _encoded(response.body)
        if gzip:
            payload = _gzipped(payload, response.pad)
        elif response.pad:
            payload += b" " * response.pad
        http.send_response(response.status)
        http.send_header("Content-Type", "application/json")
        if gzip:
            http.send_header("Content-Encoding", "gzip")
        http.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            http.send_header(key, value)
        http.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up
            http.wfile.write(payload)


def _in_latin1(response: Response) -> Response:
    """``response`` with ``é`` (Latin-1's 0xE9, invalid in UTF-8) at the start of the first
    string value of its first record (the first object in a list), else of the body."""
    payload = json.dumps(response.body, ensure_ascii=False).encode()
    records = re.search(rb"\[ ?\{", payload)
    found = re.compile(rb'": ?"').search(payload, records.end() if records else 0)
    if found is None:
        return response
    return dataclasses.replace(
        response, raw=payload[: found.end()] + b"\xe9" + payload[found.end() :]
    )


def _encoded(body: Any) -> bytes:
    """``body`` as compact JSON, as the real APIs send it, by orjson: the emulators run beside
    the clients under test, and the standard library's encoder took a quarter of the time to
    serve a page of 200 Strava activities. What orjson refuses (an integer past 64 bits, a lone
    surrogate) is encoded by the standard library. (No emulator serves NaN, which orjson would
    write as null.)"""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return json.dumps(body, separators=(",", ":")).encode()


def _gzipped(payload: bytes, pad: int) -> bytes:
    """``payload`` and ``pad`` spaces, gzip-compressed, the spaces a megabyte at a time (a
    100 MB pad compresses to about 100 KB without ever being in memory)."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: gzip framing
    parts = [packer.compress(payload)]
    block = b" " * (1 << 20)
    while pad > 0:
        parts.append(packer.compress(block[: min(pad, len(block))]))
        pad -= len(block)
    parts.append(packer.flush())
    return b"".join(parts)


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


def unauthorized(message: str = "invalid token") -> Response:
    return Response(401, {"error": message})
