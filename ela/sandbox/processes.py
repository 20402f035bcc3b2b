"""Real processes for the demo, the tests and the benchmark: ports, waiting, environments,
``celery`` workers, and a client app with exactly a worker's settings."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery import Celery

from ela import config as config_module
from worker.app import create_app

REPO = config_module.REPO_ROOT

# What a sandboxed or test process must not inherit: credentials, ela settings, real services.
_PRIVATE_PREFIXES = ("SPOTIFY_", "STRAVA_", "GARMIN_", "TODOIST_", "SENTRY_", "ELA_")
_PRIVATE_NAMES = ("REDIS_URL", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")


def isolated_environ(source: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``source`` without credentials, ela settings or addresses of real services."""
    return {
        k: v
        for k, v in source.items()
        if not k.startswith(_PRIVATE_PREFIXES) and k not in _PRIVATE_NAMES
    }


def base_environ(redis_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent environment minus anything that could reach a real service."""
    environ = isolated_environ()
    environ.update(
        {"REDIS_URL": redis_url, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
    )
    environ.update(extra or {})
    return environ


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts connections on ``127.0.0.1:port``."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class CeleryProcess:
    """A real ``celery -A worker worker|beat`` subprocess with its own environment."""

    def __init__(
        self,
        args: list[str],
        environ: Mapping[str, str],
        log: Path,
        app: str = "worker",
        via_ela: bool = False,
        python: str | os.PathLike[str] = sys.executable,
    ) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop())
        self.started = time.perf_counter()
        # `ela worker|beat` is what the compose files run: it sets what plain celery does not.
        if via_ela:
            command = ["-m", "ela.cli"]
        elif app == "worker":
            command = ["-m", "worker.main"]  # as `ela worker|beat` start it
        else:
            command = ["-m", "celery", "-A", app]
        self.proc = subprocess.Popen(
            [python, *command, *args],
            cwd=REPO,
            env=dict(environ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool_children(self) -> list[int]:
        """Pids of a worker's prefork pool processes (its children)."""
        listed = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
            capture_output=True,
            text=True,
            check=False,
        )
        return [int(pid) for pid in listed.stdout.split()]

    def wait_log(self, text: str, timeout: float = 30, interval: float = 0.1) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited {self.proc.returncode}:\n{self.log()}")
            return text in self.log()

        wait_for(seen, timeout, f"{text!r} in {self.log_path}", interval)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def worker_args(concurrency: int, name: str, extra_args: tuple[str, ...] = ()) -> list[str]:
    """``celery worker`` arguments: info logs, ``concurrency`` pool processes, node ``name``,
    no gossip or mingle (a sandbox worker has no peers to wait for)."""
    return [
        "worker",
        "-l",
        "info",
        "-c",
        str(concurrency),
        "-n",
        name,
        "--without-gossip",
        "--without-mingle",
        *extra_args,
    ]


def start_worker(
    environ: Mapping[str, str],
    log: Path,
    *,
    concurrency: int = 2,
    name: str | None = None,
    extra_args: tuple[str, ...] = (),
    via_ela: bool = False,
) -> CeleryProcess:
    """A ``celery -A worker worker`` (or ``ela worker``) process, once it is ready."""
    node = name or f"test-{uuid.uuid4().hex[:6]}@%h"
    process = CeleryProcess(
        worker_args(concurrency, node, extra_args), environ, log, via_ela=via_ela
    )
    process.wait_log(" ready.", timeout=60)
    return process


def env_config(environ: Mapping[str, str]) -> config_module.IngestionConfig:
    """The config a worker started with ``environ`` runs."""
    if environ.get("ELA_CONFIG"):
        return config_module.load(environ["ELA_CONFIG"])
    return config_module.load(REPO / f"ingestion-config-{environ.get('ELA_ENV', 'dev')}.yaml")


def client_app(environ: Mapping[str, str]) -> Celery:
    """A producer/result client with exactly the worker's settings for this environment."""
    return create_app(env_config(environ), environ)
