"""Section 6: completeness, measured without waiting for it.

* A simulated listening day: 14 hours of mostly continuous 3-minute tracks with pauses, read
  at prd's schedule for recently played (every 3 hours). The real connector (spotipy against
  the Spotify emulator, through :func:`ela.pipeline.run_job`) and the real follow-up decision
  (:func:`ela.followup.follow_up`) run at simulated times: the emulator's clock and the runs'
  scheduled times move, nothing sleeps. The fixed schedule alone (what the origin did) is run
  the same way, follow-ups off. Counted: plays of the day that never landed, and API calls.
* A job state holding 10,000 landed keys (the cap): its size, and the time to commit and read
  it, in a local folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import statistics
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

from bench.harness import Context, say
from bench.report import Row
from ela import config as config_module
from ela.followup import follow_up
from ela.pipeline import run_job
from ela.sandbox.emulators.spotify import SpotifyEmulator, play_key
from ela.sandbox.processes import REPO
from ela.sinks import LocalBucket
from ela.state import MAX_LANDED, StateUpdate, commit, read_state

JOB = "spotify_recently_played"
DAY = date(2025, 7, 2)  # a Wednesday; any day does
LISTENING = (timedelta(hours=8), timedelta(hours=22))  # 14 hours, in the config's time zone


@dataclasses.dataclass
class Side:
    """One way of scheduling the day: what it landed and what it cost."""

    landed: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    runs: int = 0
    calls: int = 0
    follow_ups: int = 0
    gaps: int = 0  # runs whose manifest says plays may be missing


@dataclasses.dataclass
class Day:
    plays: int
    fixed: Side
    ours: Side

    def lost(self, side: Side, day: set[tuple[str, str]]) -> int:
        return len(day - side.landed)


def listening_day(tmp: Path, seed: int = 11) -> tuple[Day, int, int]:
    """Simulate the day both ways; returns it with the plays lost by each."""
    config = config_module.load(REPO / "ingestion-config-prd.yaml")
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=config.global_.tz)
    times = _listening(start, random.Random(seed))
    now = [start]
    sides = {}
    # The runs of the fixed schedule warn of each gap in the log; the manifests count them.
    logging.getLogger("ela.pipeline").setLevel(logging.ERROR)
    for name, follow in (("fixed", False), ("ours", True)):
        with SpotifyEmulator(
            saved_tracks=10, plays=200, saved_albums=5, playlists=3, end=start, clock=lambda: now[0]
        ) as emulator:
            assert isinstance(emulator, SpotifyEmulator)
            day_plays = {play_key(p) for p in emulator.play_at(times)}
            sides[name] = _schedule(config, emulator, tmp / name, start, now, follow)
    day = Day(len(times), sides["fixed"], sides["ours"])
    return day, day.lost(day.fixed, day_plays), day.lost(day.ours, day_plays)


def _listening(start: datetime, rng: random.Random) -> list[datetime]:
    """Tracks of 2.5 to 3.5 minutes back to back, a pause of 5 to 15 minutes after one in 40:
    about 55 plays in 3 hours, more than the 50 Spotify keeps."""
    when, end = start + LISTENING[0], start + LISTENING[1]
    times = []
    while when < end:
        when += timedelta(seconds=rng.uniform(150, 210))
        times.append(when)
        if rng.random() < 1 / 40:
            when += timedelta(minutes=rng.uniform(5, 15))
    return times


def _schedule(
    config: config_module.IngestionConfig,
    emulator: SpotifyEmulator,
    folder: Path,
    start: datetime,
    now: list[datetime],
    follow: bool,
) -> Side:
    """Run the job at every cron tick of the day (and the first of the next), plus, with
    ``follow``, at the follow-ups the runs ask for (at most one pending)."""
    end = start + timedelta(days=1)
    runs = config.jobs[JOB].cron.next_runs(config.global_.tz, start - timedelta(minutes=1), 200)
    ticks = [t for t in runs if t <= end] + [next(t for t in runs if t > end)]
    bucket = LocalBucket(folder / "bucket")
    environ = {**emulator.environ(), "ELA_TOKEN_DIR": str(folder / "tokens")}
    side = Side()
    pending: datetime | None = None
    while ticks:
        follow_up_first = pending is not None and pending < ticks[0]
        at = pending if follow_up_first and pending else ticks.pop(0)
        if follow_up_first:
            pending = None
            side.follow_ups += 1
        now[0] = at
        manifest = run_job(
            config, JOB, run_id=str(uuid.uuid4()), scheduled_at=at, bucket=bucket, environ=environ
        )
        side.runs += 1
        side.calls += manifest["api_calls"]
        side.gaps += 1 if manifest.get("possible_gap") else 0
        for obj in manifest["objects"]:
            for line in (bucket.get_bytes(obj["name"]) or b"").splitlines():
                side.landed.add(play_key(json.loads(line)))
        if follow:
            decision = follow_up(config, JOB, manifest, at)
            if decision is not None:
                pending = decision.due  # a new due time, or None: cancelled
    return side


def state_at_cap(tmp: Path, repeats: int = 5) -> dict[str, float]:
    """Size (KB) of a job state holding MAX_LANDED keys, and the median ms to commit it (read,
    merge, write) and to read it, in a local folder."""
    bucket = LocalBucket(tmp / "bucket-state")
    first = datetime.combine(DAY, datetime.min.time())
    base = int(first.timestamp() * 1000)
    landed: dict[str, float] = {  # shaped like recently played's keys: played_at and a track id
        f"{first + timedelta(seconds=n):%Y-%m-%dT%H:%M:%S}.000Z {uuid.UUID(int=n).hex[:22]}": (
            base + n * 1000
        )
        for n in range(MAX_LANDED)
    }
    commits, reads = [], []
    for n in range(repeats):
        update = StateUpdate(cursor=base + MAX_LANDED * 1000 + n, landed=landed)
        clock = time.perf_counter()
        commit(bucket, "bench", "state", update, f"run-{n}")
        commits.append(time.perf_counter() - clock)
        clock = time.perf_counter()
        state = read_state(bucket, "bench", "state")
        reads.append(time.perf_counter() - clock)
        assert len(state.landed) == MAX_LANDED
    size = len(bucket.get_bytes("bench/_state/state.json") or b"")
    return {
        "kb": size / 1024,
        "commit_ms": statistics.median(commits) * 1000,
        "read_ms": statistics.median(reads) * 1000,
    }


def rows(ctx: Context) -> list[Row]:
    """The section's rows: the listening day, then the job state at its cap."""
    day, lost_fixed, lost_ours = listening_day(ctx.tmp)
    state = state_at_cap(ctx.tmp)
    say(
        f"6. listening day, {day.plays} plays: fixed schedule lost {lost_fixed} "
        f"({day.fixed.runs} runs, {day.fixed.gaps} flagged possible_gap), ours lost {lost_ours} "
        f"({day.ours.runs} runs, {day.ours.follow_ups} follow-ups); state at the cap "
        f"{state['kb']:.0f} KB, commit {state['commit_ms']:.1f} ms, read {state['read_ms']:.1f} ms"
    )
    return [
        Row(
            f"6. plays lost in a simulated listening day ({day.plays} plays in 14 h) at prd's "
            "schedule (every 3 h), vs the fixed schedule",
            lost_ours,
            lost_fixed,
            "plays",
            "0 lost",
            lost_ours == 0,
        ),
        Row(
            f"6. the same: API calls ({day.ours.follow_ups} follow-up runs)",
            day.ours.calls,
            day.fixed.calls,
            "calls",
            "—",
            None,
        ),
        Row(
            f"6. job state at its cap ({MAX_LANDED:,} landed keys): size",
            state["kb"],
            None,
            "KB",
            "—",
            None,
        ),
        Row(
            "6. the same: commit (read, merge, write), local folder",
            state["commit_ms"],
            None,
            "ms",
            "—",
            None,
        ),
        Row("6. the same: read", state["read_ms"], None, "ms", "—", None),
    ]
