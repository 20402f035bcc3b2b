"""Plumbing shared by the benchmark sections: Redis namespace, config, processes, emulators."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from bench import plugin
from ela import config as config_module
from ela.pipeline import Overrides, run_job
from ela.sandbox import configs
from ela.sandbox.configs import shipped_config
from ela.sandbox.emulators.strava import BOOTSTRAP_REFRESH_TOKEN, StravaEmulator
from ela.sandbox.processes import REPO, CeleryProcess, base_environ, wait_for, worker_args
from ela.sandbox.stores import delete_prefixed
from ela.settings import broker_prefix
from ela.sinks import Bucket

BENCH_REDIS_URL = os.environ.get("ELA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
PROVIDER_MODULES = ("spotipy", "stravalib", "garminconnect", "todoist_api_python")
# The Strava emulators allow ten times Strava's default reads (it raises limits on request), so
# that repeated full runs fit; the worker's shared read budget is raised to match.
STRAVA_LIMITS: dict[str, Any] = {"limits": (2_000, 20_000), "read_limits": (1_000, 10_000)}
STRAVA_BUDGET = {"ELA_STRAVA_READ_BUDGET": "1000,10000"}


# The bucket of rows that measure orchestration, not this disk: memory, where there is some.
TMPFS = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def say(message: str) -> None:
    """Progress, to stderr (the table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


class Namespace:
    """Our own Redis key prefix; only keys under it are ever deleted."""

    def __init__(self, url: str = BENCH_REDIS_URL) -> None:
        self.url = url
        self.prefix = f"ela-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}:"
        self.client = redis.Redis.from_url(url)
        self.client.ping()

    def key(self, name: str) -> str:
        """A key of the dev env's Celery transport (queues, the unacked hash) in this run."""
        return f"{broker_prefix('dev', {'ELA_REDIS_PREFIX': self.prefix})}{name}"

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


@dataclasses.dataclass
class Context:
    """What every section's ``rows()`` gets: this run's Redis namespace, a scratch folder that
    is deleted at the end, and the command line's sizes."""

    ns: Namespace
    tmp: Path
    n: int  # empty runs (and no-ops) in section 1
    repeats: int  # runs per side; the best is kept
    latency: float  # seconds per call in section 2's last round
    manifests: int  # manifests in the bucket in section 7


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
    return configs.write_config(path, jobs=jobs, services=services)


def start_worker(
    environ: Mapping[str, str],
    log: Path,
    *,
    app: str = "worker",
    concurrency: int = 1,
    python: str | os.PathLike[str] = sys.executable,
) -> tuple[CeleryProcess, float]:
    """A worker process; returns it and the seconds from spawn to Celery's ``ready.`` line."""
    args = worker_args(concurrency, f"bench-{uuid.uuid4().hex[:6]}@%h")
    process = CeleryProcess(args, environ, log, app=app, python=python)
    try:
        # Polled every 5 ms: the seconds from spawn to the ready line are what is measured.
        process.wait_log(" ready.", 90, interval=0.005)
        return process, time.perf_counter() - process.started
    except BaseException:
        process.stop()
        raise


def run_script(args: list[Any], environ: Mapping[str, str], what: str) -> dict[str, Any]:
    """Run a measured script (a baseline, a peer) and return the JSON of its last line."""
    out = subprocess.run(
        args, cwd=REPO, env=dict(environ), capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_baseline(
    script: str, bucket: str, environ: dict[str, str], strava: StravaEmulator | None = None
) -> dict[str, Any]:
    """Run ``bench/baseline/{script}.py`` into ``bucket``; its result, with ``s`` its seconds."""
    if strava is not None:  # each script run starts from the bootstrap token, as the origin did
        strava.refresh_tokens.add(BOOTSTRAP_REFRESH_TOKEN)
    args = [sys.executable, "-m", f"bench.baseline.{script}", bucket]
    result = run_script(args, environ, f"baseline {script}")
    return {**result, "s": result["seconds"]}


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


class Runner:
    """Sends a job's task to the worker and waits for its manifest."""

    def __init__(
        self, app: Celery, config: config_module.IngestionConfig, log: Path | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.log = log
        self.full_runs: dict[str, int] = {}

    def run(self, job: str, **kwargs: Any) -> dict[str, Any]:
        task = self.config.jobs[job].task
        sent = self.app.send_task(task, kwargs={"job": job, **kwargs})
        try:
            # Polled (every 5 ms) rather than get()'s pub/sub wait, which under redis-py 8 has
            # been seen to raise TimeoutError a second into a long run.
            wait_for(sent.ready, 120, f"{job} to finish", interval=0.005)
            result: dict[str, Any] = sent.get(timeout=10)
        except Exception:
            if self.log:
                say(f"!! {job} failed; the worker's log ends:\n" + self.log.read_text()[-4000:])
            raise
        return result

    def timed(self, job: str) -> dict[str, Any]:
        """A full run. Strava's first sets the cursor; later ones ask again from the epoch.
        Garmin's year is asked for explicitly, or later runs would ask only for the days
        after the last complete one."""
        again = self.full_runs.get(job, 0) > 0 and job == "strava_activities"
        kwargs: dict[str, Any] = {"since": "1970-01-01T00:00:01+00:00"} if again else {}
        if job == "garmin_heart_rate":  # the baseline's year: 365 UTC days ending today
            today = datetime.now(UTC).date()
            kwargs = {"since": str(today - timedelta(days=364)), "until": str(today)}
        start = time.perf_counter()
        manifest = self.run(job, **kwargs)
        seconds = time.perf_counter() - start
        self.full_runs[job] = self.full_runs.get(job, 0) + 1
        (obj,) = manifest["objects"]
        return {**manifest, "s": seconds, "sha256": obj["sha256"]}


def inline_run(
    config: config_module.IngestionConfig,
    job: str,
    bucket: Bucket,
    environ: Mapping[str, str],
    overrides: Overrides | None = None,
    scheduled_at: datetime | None = None,
) -> dict[str, Any]:
    """One run of ``job`` in this process (the worker's code, no broker): its manifest."""
    return run_job(
        config,
        job,
        run_id=str(uuid.uuid4()),
        scheduled_at=scheduled_at or datetime.now(UTC),
        overrides=overrides or Overrides(),
        bucket=bucket,
        environ=dict(environ),
    )
