"""Plumbing shared by the benchmark sections: Redis namespace, config, processes, emulators."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from bench import plugin
from tests import helpers
from tests.helpers import CeleryProcess, base_environ, delete_prefixed, shipped_config

BENCH_REDIS_URL = os.environ.get("ELA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
PROVIDER_MODULES = ("spotipy", "stravalib", "garminconnect", "todoist_api_python")


class Namespace:
    """Our own Redis key prefix; only keys under it are ever deleted."""

    def __init__(self, url: str = BENCH_REDIS_URL) -> None:
        self.url = url
        self.prefix = f"ela-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}:"
        self.client = redis.Redis.from_url(url)
        self.client.ping()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def pending(self, queue: str) -> int:
        """Messages waiting in ``queue`` plus messages delivered but not yet acked."""
        with self.client.pipeline() as pipe:
            pipe.llen(self.key(queue))
            pipe.hlen(self.key("unacked"))
            waiting, unacked = pipe.execute()
        return int(waiting) + int(unacked)

    def clean(self) -> None:
        # The result backend's keys carry the prefix too (ela-{env}- after it).
        delete_prefixed(self.client, self.prefix)
        self.client.close()


def write_config(path: Path, *, bench_job: bool = False) -> Path:
    """The shipped dev config with the benchmark's sizes; ``bench_job`` adds the empty job
    (only ``celery -A bench.worker`` knows its service)."""
    data: dict[str, Any] = shipped_config("dev")
    jobs, services = data["jobs"], data["services"]
    jobs["spotify_saved_tracks"]["limit"] = 10_000  # the API's (and the config's) maximum
    jobs["garmin_heart_rate"]["days"] = 365  # a year of daily heart rate
    jobs["garmin_activities"]["days"] = 1
    if bench_job:
        plugin.register()  # before the config that names its service is validated
        jobs[plugin.JOB] = {
            "description": "Benchmark: a connector that yields nothing",
            "service": plugin.NAME,
            "data_type": "nothing",
            "cron": "0 0 1 1 *",
            "enabled": True,
        }
        services[plugin.NAME] = {"data_types": ["nothing"]}
    return helpers.write_config(path, jobs=jobs, services=services)


class AppProcess(CeleryProcess):
    """A benchmark worker process: tests.helpers' CeleryProcess, plus its pool's pids."""

    def pool_children(self) -> list[int]:
        """Pids of the prefork pool's processes."""
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [int(p) for p in out.split()]


def start_worker(
    environ: Mapping[str, str],
    log: Path,
    *,
    app: str = "worker",
    concurrency: int = 1,
) -> tuple[AppProcess, float]:
    """A worker process; returns it and the seconds from spawn to Celery's ``ready.`` line."""
    args = [
        "worker",
        "-l",
        "info",
        "-c",
        str(concurrency),
        "-n",
        f"bench-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    process = AppProcess(args, environ, log, app=app)
    try:
        # Polled every 5 ms: the seconds from spawn to the ready line are what is measured.
        process.wait_log(" ready.", 90, interval=0.005)
        return process, time.perf_counter() - process.started
    except BaseException:
        process.stop()
        raise


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of ``pid`` (``VmHWM``), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    if not match:
        raise RuntimeError(f"no VmHWM for {pid}")
    return int(match.group(1))


def worker_environ(ns: Namespace, config: Path, extra: Mapping[str, str]) -> dict[str, str]:
    return base_environ(
        ns.url,
        {
            "ELA_CONFIG": str(config),
            "ELA_REDIS_PREFIX": ns.prefix,
            "ELA_LOG_FORMAT": "text",
            **extra,
        },
    )
