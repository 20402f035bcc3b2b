"""Benchmark rows for Strava's issue-15 data types: laps, streams, clubs, gear.

Plain functions returning plain tuples, so the table code (``bench.__main__``) turns them into
its rows:

* :func:`api_call_rows`: API calls per run against the minimum, each type once (a run that
  finds its token stored, as a worker's does): laps and streams one call per new activity,
  clubs one page, gear the athlete plus one call per bike or shoe;
* :func:`ingest_rows`: Strava streams of 200 activities, ours (``run_job`` in this process,
  a window run: the activity page, then one call per activity, a few in flight) against
  ``bench/baseline/strava_streams.py`` (the same calls with stravalib, one after another),
  with no latency and with ``latency`` seconds per call.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import harness
from bench.report import Row
from ela import config as config_module
from ela.pipeline import Overrides
from ela.sandbox.emulators.strava import BOOTSTRAP_REFRESH_TOKEN, StravaEmulator
from ela.sinks import LocalBucket

REPO = Path(__file__).resolve().parent.parent
LIMITS: dict[str, Any] = {"limits": (20_000, 200_000), "read_limits": (10_000, 100_000)}
STREAMS_ACTIVITIES = 200
X = "\u00d7"  # the multiplication sign of ratios
NEW_ACTIVITIES = 25  # landed by the activities job before the laps and streams runs


def api_call_rows(tmp: Path) -> list[Row]:
    """Calls per run of each new type at its minimum (see the module doc)."""
    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    rows: list[Row] = []
    with StravaEmulator(activities=100, **LIMITS) as emu:
        environ = {**emu.environ(), "ELA_TOKEN_DIR": str(tmp / "tokens-calls")}
        bucket = LocalBucket(tmp / "bucket-strava-calls")
        harness.inline_run(
            config, "strava_activities", bucket, environ
        )  # the token, and the landed ids
        harness.inline_run(config, "strava_laps", bucket, environ, Overrides(limit=10_000))
        harness.inline_run(config, "strava_streams", bucket, environ, Overrides(limit=10_000))
        emu.add_activities(NEW_ACTIVITIES)
        harness.inline_run(config, "strava_activities", bucket, environ)
        gear = len(emu.athlete["bikes"]) + len(emu.athlete["shoes"])
        for job, label, minimum, why in (
            (
                "strava_laps",
                f"Strava laps, {NEW_ACTIVITIES} new activities",
                NEW_ACTIVITIES,
                "1 an activity",
            ),
            (
                "strava_streams",
                f"Strava streams, {NEW_ACTIVITIES} new activities",
                NEW_ACTIVITIES,
                "1 an activity",
            ),
            ("strava_laps", "Strava laps, nothing new", 0, "none"),
            ("strava_clubs", "Strava clubs", 1, "1 page"),
            ("strava_gear", f"Strava gear ({gear} items)", 1 + gear, "athlete + 1 an item"),
        ):
            calls = harness.inline_run(config, job, bucket, environ, Overrides(limit=10_000))[
                "api_calls"
            ]
            rows.append(
                Row(
                    f"4. calls/run: {label} (min {why})",
                    calls,
                    minimum,
                    "calls",
                    "= min",
                    calls <= minimum,
                )
            )
    return rows


def ingest_rows(tmp: Path, repeats: int = 3, latency: float = 0.02) -> list[Row]:
    """Streams of 200 activities: ours against the sequential stravalib script."""

    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    rows: list[Row] = []
    for delay in (0.0, latency):
        with (
            StravaEmulator(activities=STREAMS_ACTIVITIES, **LIMITS) as ours_emu,
            StravaEmulator(activities=STREAMS_ACTIVITIES, **LIMITS) as base_emu,
        ):
            ours_emu.latency = base_emu.latency = delay
            ours_s, base_s, records, calls = [], [], 0, 0
            for attempt in range(repeats):
                bucket = LocalBucket(Path(tempfile.mkdtemp(prefix="streams-", dir=tmp)))
                environ = {
                    **ours_emu.environ(),
                    "ELA_TOKEN_DIR": str(tmp / f"tok-{delay}-{attempt}"),
                }
                ours_emu.refresh_tokens.add(BOOTSTRAP_REFRESH_TOKEN)  # a fresh token store
                start = time.perf_counter()
                manifest = harness.inline_run(
                    config,
                    "strava_streams",
                    bucket,
                    environ,
                    Overrides(since=datetime(1970, 1, 2, tzinfo=UTC), limit=10_000),
                )
                ours_s.append(time.perf_counter() - start)
                records, calls = manifest["records"], manifest["api_calls"]
                base_emu.refresh_tokens.add(BOOTSTRAP_REFRESH_TOKEN)
                out = Path(tempfile.mkdtemp(prefix="streams-base-", dir=tmp))
                result = harness.run_script(
                    [sys.executable, "-m", "bench.baseline.strava_streams", out.as_uri()],
                    {**os.environ, **base_emu.environ(), "PYTHONPATH": str(REPO)},
                    "baseline strava_streams",
                )
                base_s.append(float(result["seconds"]))
                if int(result["records"]) != records:
                    raise RuntimeError(
                        f"streams: ours landed {records}, the script {result['records']}"
                    )
            rate, base_rate = records / min(ours_s), records / min(base_s)
            where = "local folder" + (f", {delay * 1000:.0f} ms per call" if delay else "")
            rows.append(
                Row(
                    f"2. Strava streams {STREAMS_ACTIVITIES} activities → {where} ({calls} calls)",
                    rate,
                    base_rate,
                    "rec/s",
                    f"> 1.00{X}",
                    rate > base_rate,
                )
            )
    return rows
