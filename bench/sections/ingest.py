"""Section 2: records/s from the emulators to a local folder and to the GCS emulator, the worker
vs a plain sequential script (``bench/baseline/``) with the same library and the same JSONL;
then again with a network round trip added to every call (``--latency``).

The same runs give section 4's rows (:mod:`bench.sections.api_calls`).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench import harness
from bench.baseline._common import lines_digest
from bench.harness import STRAVA_LIMITS, Context, Runner, run_baseline, say
from bench.report import Row, X
from bench.sections import api_calls
from ela import config as config_module
from ela.sandbox.emulators.garmin import GarminEmulator
from ela.sandbox.emulators.server import Emulator
from ela.sandbox.emulators.spotify import SpotifyEmulator
from ela.sandbox.emulators.strava import StravaEmulator
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO, client_app
from ela.sandbox.stores import gcs_emulator
from ela.sinks import GCSBucket, open_bucket
from ela.tokens import TokenStore

# job, emulator attribute, label, the minimum calls and why, the goal (ours ÷ the script, at least).
# Spotify's offset pages and Garmin's days can be asked for several at a time: ahead of the
# script. Strava's numbered pages cannot (each is known to exist only when the one before comes
# back full): its next page is asked for while the last is being written, and the goal is issue
# 17's. The 20 ms round shows the floor under it: the same calls with nothing else done.
JOBS = (
    ("spotify_saved_tracks", "spotify", "Spotify saved tracks 10,000", 200, "⌈10,000/50⌉", 1.0),
    ("strava_activities", "strava", "Strava activities 5,000", 26, "⌈5,000/200⌉ + terminal", 1.5),
    ("garmin_heart_rate", "garmin", "Garmin heart rate 365 days", 365, "365 days, 1 a call", 1.0),
)


class Round:
    """One bucket kind: its emulators, token store, worker and the runs sent to it."""

    def __init__(self, tmp: Path, shared: dict[str, Emulator], latency: float = 0.0) -> None:
        self.tokens = Path(tempfile.mkdtemp(prefix="tokens-", dir=tmp))
        # Strava rotates refresh tokens per client: the worker and the scripts each get their
        # own emulator, fresh for each round. Both allow ten times Strava's default 100 reads
        # per 15 minutes (it raises limits on request), so that repeated runs fit; the worker's
        # shared budget is raised to match (harness.STRAVA_BUDGET).
        self.strava = StravaEmulator(activities=5_000, **STRAVA_LIMITS)
        self.strava_baseline = StravaEmulator(activities=5_000, **STRAVA_LIMITS)
        self.strava.start()
        self.strava_baseline.start()
        self.emulators: dict[str, Emulator] = {**shared, "strava": self.strava}
        for em in (*self.emulators.values(), self.strava_baseline):
            em.latency = latency
        garmin = shared["garmin"]
        assert isinstance(garmin, GarminEmulator)
        garmin.prepare_tokens(TokenStore(self.tokens))

    def environ(self, baseline: bool = False) -> dict[str, str]:
        out: dict[str, str] = {"ELA_TOKEN_DIR": str(self.tokens), **harness.STRAVA_BUDGET}
        for name, em in self.emulators.items():
            out.update((self.strava_baseline if baseline and name == "strava" else em).environ())
        return out

    def stop(self) -> None:
        for em in self.emulators.values():
            em.latency = 0.0
        self.strava.stop()
        self.strava_baseline.stop()


def rows(ctx: Context) -> list[Row]:
    """Zero-latency rounds to a local folder and to the GCS emulator (what each side's CPU
    costs), then one to the folder with ``ctx.latency`` seconds per call (what concurrency
    buys). Section 4's rows ride on the local folder's round: its API calls."""
    ns, tmp, repeats, latency = ctx.ns, ctx.tmp, ctx.repeats, ctx.latency
    config_path = harness.write_config(tmp / "ingest.yaml")
    config = config_module.load(config_path)
    throughput: list[Row] = []
    calls: list[Row] = []
    say("starting emulators: 10,000 saved tracks, 5,000 activities, a year of Garmin days")
    shared: dict[str, Emulator] = {
        "spotify": SpotifyEmulator(saved_tracks=10_000),
        "garmin": _garmin_year(),
        "todoist": TodoistEmulator(),
    }
    with ExitStack() as stack:
        for em in shared.values():
            stack.enter_context(em.start())
        gcs_host = stack.enter_context(gcs_emulator())
        _create_bucket(gcs_host, "ela-bench")
        for kind, bucket, delay, runs in (
            ("local folder", (tmp / "bucket-ingest").as_uri(), 0.0, repeats),
            ("GCS emulator", "gs://ela-bench", 0.0, repeats),
            (
                f"local folder, {latency * 1000:.0f} ms per call",
                (tmp / "bucket-latency").as_uri(),
                latency,
                repeats,  # one run each left the rows to chance (Strava 1.08-1.35x)
            ),
        ):
            round_ = Round(tmp, shared, delay)
            environ = harness.worker_environ(
                ns,
                config_path,
                {**round_.environ(), "ELA_BUCKET_URL": bucket, "STORAGE_EMULATOR_HOST": gcs_host},
            )
            script_environ = {
                **os.environ,
                **round_.environ(baseline=True),
                "STORAGE_EMULATOR_HOST": gcs_host,
                "PYTHONPATH": str(REPO),
            }
            log = tmp / f"ingest-{kind[:3]}.log"
            runner = Runner(client_app(environ), config, log)
            worker, _ = harness.start_worker(environ, log)
            try:
                for job in ("spotify_top_tracks", "strava_athlete", "garmin_sleep"):
                    runner.run(job)  # warm-up: the pool process imports each provider library
                for job, attr, label, minimum, why, goal in JOBS:
                    emulator = round_.emulators[attr]
                    base = _best(
                        runs,
                        functools.partial(
                            run_baseline, job, bucket, script_environ, round_.strava_baseline
                        ),
                    )
                    emulator.reset_calls()
                    ours = _best(runs, functools.partial(runner.timed, job))
                    if landed_lines(bucket, gcs_host, ours) != base["lines"]:
                        say(f"!! {job}: the landed records differ from the baseline's")
                    rate, base_rate = ours["records"] / ours["s"], base["records"] / base["s"]
                    say(
                        f"2. {job} → {kind}: ours {rate:,.0f} rec/s ({ours['s']:.2f} s, "
                        f"{ours['api_calls']} calls, at most {emulator.peak_in_flight} at once), "
                        f"baseline {base_rate:,.0f} rec/s ({base['s']:.2f} s)"
                    )
                    throughput.append(
                        Row(
                            f"2. {label} → {kind}"
                            + (f" ({emulator.peak_in_flight} in flight)" if delay else ""),
                            rate,
                            base_rate,
                            "rec/s",
                            f"{'>' if goal == 1 else '≥'} {goal:.2f}{X}",
                            rate / base_rate > goal if goal == 1 else rate / base_rate >= goal,
                        )
                    )
                    if delay and job == "strava_activities":
                        floor = _best(
                            runs,
                            functools.partial(
                                run_baseline,
                                "strava_pages",
                                bucket,
                                script_environ,
                                round_.strava_baseline,
                            ),
                        )
                        floor_rate = floor["records"] / floor["s"]
                        say(f"2. the floor: {floor_rate:,.0f} rec/s ({floor['s']:.2f} s)")
                        throughput.append(
                            Row(
                                f"2. the same, vs the floor: its {minimum} calls alone, one "
                                "after another (bench/baseline/strava_pages.py)",
                                rate,
                                floor_rate,
                                "rec/s",
                                "—",
                                None,
                            )
                        )
                    if kind == "local folder":
                        calls.append(api_calls.full_run(label, why, minimum, ours))
                if kind == "local folder":
                    calls.extend(api_calls.steady_state(runner))
            finally:
                worker.stop()
                round_.stop()
    return throughput + calls


def _garmin_year() -> GarminEmulator:
    """A year of days, every one generated now rather than inside a timed run. The user's
    zone is UTC and the clock stands still, as the baseline script assumes: today's partial
    heart rate is the same for both sides."""
    now = datetime.now(UTC)
    garmin = GarminEmulator(timezone="UTC", clock=lambda: now)
    day = garmin.first_day
    while day <= garmin.last_day:
        garmin.heart_rate_for(day)
        day = date.fromordinal(day.toordinal() + 1)
    return garmin


def landed_lines(bucket: str, gcs_host: str, manifest: dict[str, Any]) -> str:
    """The :func:`lines_digest` of the one object a run landed in ``bucket``."""
    (landed,) = manifest["objects"]
    body = open_bucket(bucket, {"STORAGE_EMULATOR_HOST": gcs_host}).get_bytes(landed["name"])
    return lines_digest((body or b"").splitlines())


def _best(repeats: int, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    results = [measure() for _ in range(repeats)]
    return min(results, key=lambda r: float(r["s"]))


def _create_bucket(host: str, name: str) -> None:
    """Create ``name`` in the GCS emulator at ``host``, through the sink's own client."""
    GCSBucket(name, {"STORAGE_EMULATOR_HOST": host}).client.create_bucket(name)
