"""Issue 15.2 and 15.4 rows: Spotify's followed artists and profile, Todoist's sections and
completed tasks.

Plain functions returning rows as dicts (the fields of ``bench.__main__.Row``):

* :func:`call_rows`: API calls per run of each new paged or per-item type, against its
  minimum (one call per page the data needs, plus Spotify's token call on a fresh store).
* :func:`ingest_rows`: Todoist completed tasks, 10,000 completions over a year (the prd
  job's first run: five windows of at most 88 days), through the pipeline in this process
  against ``bench/baseline/todoist_completed.py`` (the library, window by window, one list).

Both run the real connectors (the client libraries against the emulators) through
:func:`ela.pipeline.run_job`, landing in a local folder.
"""

from __future__ import annotations

import math
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import harness
from bench.report import Row
from ela import config as config_module
from ela.connectors.base import FUTURE_SKEW
from ela.connectors.todoist import windows
from ela.pipeline import Overrides
from ela.sandbox.emulators.spotify import SpotifyEmulator
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO
from ela.sinks import LocalBucket

COMPLETED = 10_000
FOLLOWED = 500
SECTIONS = 1_000


def _config() -> config_module.IngestionConfig:
    return config_module.load(REPO / "ingestion-config-prd.yaml")


LIMIT = Overrides(limit=10_000)  # every item, whatever the job's own limit


def _row(metric: str, ours: float, minimum: float) -> Row:
    return Row(metric, ours, minimum, "calls", "= min", ours <= minimum)


def call_rows(tmp: Path) -> list[Row]:
    config = _config()
    now = datetime.now(UTC)
    rows = []
    with SpotifyEmulator(saved_tracks=10, plays=10, followed=FOLLOWED) as spotify:
        env = {**spotify.environ(), "ELA_TOKEN_DIR": str(tmp / "spotodo-tokens")}
        bucket = LocalBucket(tmp / "spotodo-calls")
        manifest = harness.inline_run(
            config, "spotify_followed_artists", bucket, {**os.environ, **env}, LIMIT, now
        )
        pages = math.ceil(FOLLOWED / 50)
        rows.append(
            _row(
                f"4. calls/run: Spotify followed artists {FOLLOWED} (min ⌈{FOLLOWED}/50⌉ + token)",
                manifest["api_calls"],
                pages + 1,
            )
        )
        manifest = harness.inline_run(
            config, "spotify_user_profile", bucket, {**os.environ, **env}, LIMIT, now
        )
        rows.append(_row("4. calls/run: Spotify user profile (min 1)", manifest["api_calls"], 1))
    with TodoistEmulator(projects=SECTIONS // 3, tasks=10, completed=0) as todoist:
        bucket = LocalBucket(tmp / "spotodo-calls")
        manifest = harness.inline_run(
            config, "todoist_sections", bucket, {**os.environ, **todoist.environ()}, LIMIT, now
        )
        minimum = math.ceil(len(todoist.sections) / 200)
        rows.append(
            _row(
                f"4. calls/run: Todoist sections {len(todoist.sections):,} (min ⌈n/200⌉)",
                manifest["api_calls"],
                minimum,
            )
        )
    return rows


def _completed_emulator(now: datetime) -> TodoistEmulator:
    return TodoistEmulator(
        projects=10, tasks=100, completed=COMPLETED, completed_days=360, clock=lambda: now
    )


def ingest_rows(tmp: Path, repeats: int = 3) -> list[Row]:
    """Completed tasks for 10,000 items: ours (rec/s) vs the sequential script, and calls."""
    config = _config()
    now = datetime.now(UTC).replace(microsecond=0)
    since = now - timedelta(days=config.jobs["todoist_completed_tasks"].days or 365)
    until = now + FUTURE_SKEW
    with _completed_emulator(now) as todoist:
        minimum = 0
        for start, end in windows(since, until):
            found = sum(
                1
                for t in todoist.completed
                if start <= datetime.fromisoformat(t["completed_at"]) <= end
            )
            minimum += max(1, math.ceil(found / 200))
        ours: list[tuple[float, Any]] = []
        for n in range(repeats):
            bucket = LocalBucket(tmp / f"spotodo-ingest-{n}")  # a first run each time
            clock = time.perf_counter()
            manifest = harness.inline_run(
                config,
                "todoist_completed_tasks",
                bucket,
                {**os.environ, **todoist.environ()},
                LIMIT,
                now,
            )
            ours.append((time.perf_counter() - clock, manifest))
        seconds, manifest = min(ours, key=lambda pair: pair[0])
        script_env = {
            **os.environ,
            **todoist.environ(),
            "BENCH_SINCE": since.isoformat(),
            "BENCH_UNTIL": until.isoformat(),
            "PYTHONPATH": str(REPO),
        }
        args = [sys.executable, "-m", "bench.baseline.todoist_completed"]
        base = min(
            (
                harness.run_script(
                    [*args, (tmp / f"spotodo-base-{n}").as_uri()], script_env, "baseline"
                )
                for n in range(repeats)
            ),
            key=lambda r: float(r["seconds"]),
        )
    records = manifest["records"]
    rate, base_rate = records / seconds, base["records"] / base["seconds"]
    return [
        Row(
            f"2. Todoist completed tasks {records:,} (a year, 5 windows) → local folder",
            rate,
            base_rate,
            "rec/s",
            "\u2265 1.00\u00d7",
            rate >= base_rate,
        ),
        _row(
            f"4. calls/run: Todoist completed tasks {records:,} (min: per window ⌈n/200⌉)",
            manifest["api_calls"],
            minimum,
        ),
    ]


if __name__ == "__main__":  # python -m bench.spotodo_more: the rows alone
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ela-bench-spotodo-") as root:
        for row in call_rows(Path(root)) + ingest_rows(Path(root)):
            print(row)
