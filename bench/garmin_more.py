"""Benchmark rows of Garmin's other data types (issue 15.1), as plain functions.

- :func:`call_rows` (item 4): API calls of a run of each new type against its minimum, a full
  run and a run with nothing new.
- :func:`ingest_rows` (item 2): Garmin stress for a year (365 days, one call a day), the
  pipeline (``ela run --inline``: the connector, the library, the landing, without a broker)
  against ``bench/baseline/garmin_stress.py``, a plain sequential script with the same
  library and the same JSONL, to a local folder.

Both start their own Garmin emulator: the user's zone UTC and a clock that stands still, so
that today's partial day is the same for both sides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import harness
from bench.report import Row
from ela import config as config_module
from ela.connectors.garmin import SETTLE_HOURS
from ela.pipeline import Overrides
from ela.sandbox.emulators.garmin import GarminEmulator
from ela.sandbox.processes import REPO
from ela.sinks import LocalBucket
from ela.tokens import TokenStore

PER_DAY = ("steps", "stress", "hrv", "training_status", "floors")
DAYS = 30  # the full-run window of the call rows
YEAR = 365


@contextmanager
def _garmin(tmp: Path) -> Iterator[tuple[GarminEmulator, dict[str, str]]]:
    now = datetime.now(UTC)
    tokens = Path(tempfile.mkdtemp(prefix="tokens-", dir=tmp))
    with GarminEmulator(timezone="UTC", clock=lambda: now) as garmin:
        assert isinstance(garmin, GarminEmulator)
        garmin.prepare_tokens(TokenStore(tokens))
        yield garmin, {**garmin.environ(), "ELA_TOKEN_DIR": str(tokens)}


def call_rows(tmp: Path) -> list[Row]:
    """Calls per run of each new type: a full run (per-day types: :data:`DAYS` explicit days,
    one call each; ranges: one call for the window; snapshots: one) and, for the types that
    keep state, a run with nothing new (the days not yet final; ranges: one call)."""
    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    bucket = LocalBucket(tmp / "bucket-garmin-calls")
    now = datetime.now(UTC)
    settling = now - datetime.combine(now.date(), datetime.min.time(), UTC)
    open_days = 2 if settling < timedelta(hours=SETTLE_HOURS) else 1
    today = now.date()
    window = Overrides.from_kwargs(since=str(today - timedelta(days=DAYS - 1)), until=str(today))
    rows: list[Row] = []
    with _garmin(tmp) as (garmin, environ):
        # The profile and the time zone, asked once and cached, as on any account's first run.
        harness.inline_run(config, "garmin_race_predictions", bucket, environ)
        harness.inline_run(config, "garmin_stress", bucket, environ)
        for data_type in (*PER_DAY, "body_battery", "weight", "race_predictions", "devices"):
            job = f"garmin_{data_type}"
            ranged = data_type in ("body_battery", "weight")
            full = DAYS if data_type in PER_DAY else 1
            why = (
                f"{DAYS} days, 1 a call"
                if data_type in PER_DAY
                else (f"{DAYS} days in 1 call" if ranged else "1 snapshot call")
            )
            dated = data_type in PER_DAY or ranged
            garmin.reset_calls()
            manifest = harness.inline_run(config, job, bucket, environ, window if dated else None)
            harness.say(f"4. {job}: {manifest['api_calls']} calls, {manifest['records']} records")
            rows.append(
                Row(
                    f"4. calls/run: Garmin {data_type} (min {why})",
                    manifest["api_calls"],
                    full,
                    "calls",
                    "= min",
                    manifest["api_calls"] <= full,
                )
            )
            if not dated:
                continue
            harness.inline_run(config, job, bucket, environ)  # a scheduled run: sets the state
            steady = harness.inline_run(config, job, bucket, environ)
            least = open_days if data_type in PER_DAY else 1
            rows.append(
                Row(
                    f"4. calls/run, nothing new: Garmin {data_type}",
                    steady["api_calls"],
                    least,
                    "calls",
                    "= min",
                    steady["api_calls"] <= least,
                )
            )
    return rows


def ingest_rows(tmp: Path, repeats: int = 3, latency: float = 0.02) -> list[Row]:
    """:func:`_ingest_round` as is, then with ``latency`` seconds added to every call (what
    the days in flight buy against a real network)."""
    rows = _ingest_round(tmp, repeats, 0.0)
    return rows + _ingest_round(tmp, repeats, latency)[:1]


def _ingest_round(tmp: Path, repeats: int, latency: float) -> list[Row]:
    """Garmin stress, a year: records/s of the pipeline (``ela run --inline``: the worker's
    code in a process of its own, without a broker) and of the sequential script, each a
    process started per run and timed from outside, start-up and imports included (best of
    ``repeats``), and whether both landed the same bytes."""
    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    today = datetime.now(UTC).date()
    since, until = str(today - timedelta(days=YEAR - 1)), str(today)
    with _garmin(tmp) as (garmin, environ):
        bucket_dir = tmp / "bucket-garmin-stress"
        # The profile and the zone, asked once and cached (as after any account's first run);
        # every day generated, so that neither side pays for the emulator's first request.
        harness.inline_run(config, "garmin_race_predictions", LocalBucket(bucket_dir), environ)
        harness.inline_run(
            config,
            "garmin_stress",
            LocalBucket(bucket_dir),
            environ,
            Overrides.from_kwargs(since=since, until=until),
        )
        garmin.latency = latency
        script_environ = {
            **os.environ,
            **environ,
            "PYTHONPATH": str(REPO),
            "ELA_BUCKET_URL": bucket_dir.as_uri(),
        }
        ours_args = [sys.executable, "-m", "ela.cli", "run", "garmin_stress", "--inline"]
        ours_args += ["--since", since, "--until", until, "--json"]
        base_args = [sys.executable, "-m", "bench.baseline.garmin_stress", bucket_dir.as_uri()]
        ours, base = [], []
        for _ in range(repeats):  # alternated, so that neither side has the quieter moments
            ours.append(_timed_run(ours_args, script_environ))
            garmin.reset_calls()
            start = time.perf_counter()
            result = harness.run_script(base_args, script_environ, "baseline garmin_stress")
            base.append({**result, "seconds": time.perf_counter() - start})  # wall, as ours
        best = min(ours, key=lambda result: float(result["seconds"]))
        base_best = min(base, key=lambda result: float(result["seconds"]))
    (landed,) = best["objects"]
    same = landed["sha256"] == base_best["sha256"]
    rate = best["records"] / best["seconds"]
    base_rate = base_best["records"] / base_best["seconds"]
    harness.say(
        f"2. garmin_stress 365 days, {latency * 1000:.0f} ms a call: ours {rate:,.0f} rec/s "
        f"({best['seconds']:.2f} s, "
        f"{best['api_calls']} calls), baseline {base_rate:,.0f} rec/s "
        f"({base_best['seconds']:.2f} s); same bytes: {same}"
    )
    return [
        Row(
            "2. Garmin stress 365 days → local folder (ela run --inline vs the script)"
            + (f", {latency * 1000:.0f} ms per call" if latency else ""),
            rate,
            base_rate,
            "rec/s",
            "> 1.00\u00d7",
            rate > base_rate and same,
        ),
        Row(
            "4. calls/run: Garmin stress 365 days (min 365 days, 1 a call)",
            best["api_calls"],
            YEAR,
            "calls",
            "= min",
            best["api_calls"] <= YEAR,
        ),
    ]


def _timed_run(args: list[str], environ: dict[str, str]) -> dict[str, Any]:
    """``ela run --inline --json`` in a process: its manifest, and the seconds it took."""
    start = time.perf_counter()
    done = subprocess.run(args, env=environ, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    try:
        [manifest] = json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(f"ela run failed: {done.stderr[-2000:]}") from None
    if manifest.get("outcome") != "succeeded":
        raise RuntimeError(f"ela run garmin_stress: {manifest}")
    return {**manifest, "seconds": seconds}
