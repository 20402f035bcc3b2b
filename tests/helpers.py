"""Test-only plumbing: worker handles, beat on a fast clock, test configs, a private Redis, a
cuttable link, a stand-in for Sentry.

What the benchmark and ``ela demo`` need too (ports, processes, the GCS emulator, config
writers) is in :mod:`ela.sandbox`; ``tests/`` imports it from there, never from ``bench/``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import subprocess
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from ela import config as config_module
from ela.sandbox.configs import shipped_config, write_config
from ela.sandbox.processes import CeleryProcess, env_config, free_port, wait_for
from ela.sandbox.stores import redis_server_command
from worker.settings import celery_settings


def run_id_of(name: str) -> str:
    """A run id (a UUID, as every run id must be) that a test can name and find again."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ela-test:{name}"))


def with_job(
    config: config_module.IngestionConfig, job: str, **fields: Any
) -> config_module.IngestionConfig:
    """``config`` with some fields of one job changed (in memory, not validated again)."""
    changed = config.jobs[job].model_copy(update=fields)
    return config.model_copy(update={"jobs": {**config.jobs, job: changed}})


def todoist_only(path: Path, env: str = "dev", **changes: Any) -> Path:
    """The env's shipped config reduced to the two Todoist jobs, with quick retries.

    ``schedules={job: cron}`` changes crons; other keywords set ``global`` keys.
    """
    jobs = {k: v for k, v in shipped_config(env)["jobs"].items() if k.startswith("todoist")}
    for name, cron in changes.pop("schedules", {}).items():
        jobs[name]["cron"] = cron
    groups = {"productivity_all": {"jobs": ["todoist_tasks", "todoist_projects"]}}
    changes.setdefault("retry_backoff_seconds", 1)
    return write_config(path, env, jobs=jobs, job_groups=groups, **changes)


class WorkerHandle:
    """A running worker for one env, and a client app with the same settings to talk to it."""

    def __init__(
        self, process: CeleryProcess, client: Celery, env: str, environ: dict[str, str]
    ) -> None:
        self.process = process
        self.client = client
        self.env = env
        self.environ = environ  # what the worker runs with: reuse it for `celery call`, `ela run`

    def send(self, task: str, **kwargs: Any) -> AsyncResult:
        return self.client.send_task(task, kwargs=kwargs)

    def call(self, task: str, timeout: float = 60, **kwargs: Any) -> Any:
        """Run ``task`` on the worker and return its result (a run's manifest, a group's list of
        runs sent); raises on failure."""
        result = self.send(task, **kwargs).get(timeout=timeout)
        return result

    def log(self) -> str:
        return self.process.log()


class Beat(CeleryProcess):
    """A real ``celery beat`` on a clock that reaches its next whole minute ``lead`` seconds
    after the process starts (``tests/fastbeat.py``): no test waits for the wall clock's.

    ``offset`` is how far ahead its clock runs; :meth:`now` reads it. Beats of one test that
    must agree on the time share an offset (``offset=first.offset``).
    """

    STARTUP = 3.0  # seconds from launch to beat's first tick() on a loaded 2-core machine

    def __init__(
        self,
        environ: Mapping[str, str],
        log: Path,
        lead: float = 5.0,
        offset: float | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        if offset is None:
            first_tick = time.time() + self.STARTUP  # when beat first looks at its clock
            minute = (int(first_tick + lead) // 60 + 1) * 60  # a whole minute past that
            offset = minute - lead - first_tick  # ... which beat reaches `lead` s after it
        self.offset = offset
        clocked = {**environ, "ELA_TEST_CLOCK_OFFSET": str(offset)}
        super().__init__(["beat", "-l", "info", *args], clocked, log, app="tests.fastbeat")

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)


def foreign_app(environ: Mapping[str, str]) -> Celery:
    """A producer that is not ours: plain Celery with the worker's broker settings, sending
    whatever a client that reaches Redis could send, unchecked by our app's ``send_task``."""
    app = Celery("foreign")
    app.conf.update(celery_settings(env_config(environ), environ))
    return app


class PrivateRedis:
    """A redis-server of this test's own on a free port, to restart or flush at will."""

    def __init__(self, folder: Path, password: str | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        extra = ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(
            [*redis_server_command(self.port, self.folder), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(up, 10, "the private redis-server")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self, down_for: float = 2.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


class CuttableProxy:
    """A TCP proxy to ``target`` on a free loopback port, whose link can be cut: the listener
    closes and every connection through it is dropped, as when a host loses its network."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _accept(self) -> None:
        while not self._cut:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._cut = True
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


# -- a stand-in for Sentry -----------------------------------------------------------------------


class SentryEndpoint:
    """Records every envelope posted to ``/api/<project>/envelope/``, decompressed.

    Args:
        key: the DSN's public key (the SDK sends it in each envelope's header).
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self._raw: list[bytes] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding:
                    raise AssertionError(f"unexpected Content-Encoding {encoding}")
                with endpoint._lock:
                    endpoint._raw.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://{self.key}@127.0.0.1:{self.server.server_address[1]}/1"

    def envelopes(self) -> list[bytes]:
        with self._lock:
            return list(self._raw)

    def payloads(self) -> list[tuple[str, bytes]]:
        """(item type, payload) of every item received so far, without envelope headers."""
        return [(item["type"], body) for raw in self.envelopes() for item, body in _items(raw)[1]]

    def items(self, kind: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(envelope header, item payload) of every item of type ``kind`` received so far."""
        found = []
        for raw in self.envelopes():
            header, items = _items(raw)
            found += [(header, json.loads(body)) for item, body in items if item["type"] == kind]
        return found

    def __enter__(self) -> SentryEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _items(raw: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """An envelope's header, and each item's header and payload (``length`` bytes long, or up
    to the next newline)."""
    header_line, _, rest = raw.partition(b"\n")
    items = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item = json.loads(item_line)
        if "length" in item:
            body, rest = rest[: item["length"]], rest[item["length"] + 1 :]
        else:
            body, _, rest = rest.partition(b"\n")
        items.append((item, body))
    return json.loads(header_line), items
