"""Dynamic scheduling: the follow-up decision (pure) and follow-up runs on a real worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from ela import config as config_module
from ela.followup import MIN_GAP, decide, follow_up
from ela.sandbox.configs import shipped_config, write_config
from ela.sandbox.emulators.spotify import SpotifyEmulator
from ela.sandbox.processes import REPO, wait_for
from ela.sinks import LocalBucket
from tests.conftest import WorkerFactory, read_jsonl
from tests.helpers import with_job

NOW = datetime(2025, 7, 1, 10, 0, tzinfo=UTC)  # 12:00 in Paris (CEST), where the crons are read
TICK = NOW + timedelta(hours=3)  # prd reads recently played every 3 hours
CONFIG = config_module.load(REPO / "ingestion-config-prd.yaml")


def plays(count: int, every: timedelta, newest: datetime = NOW) -> dict[str, Any]:
    return {"count": count, "oldest": newest - every * (count - 1), "newest": newest}


@pytest.mark.parametrize(
    ("landed", "due"),
    [
        # 50 plays 3 minutes apart: 35 more in 105 minutes, well before the tick.
        (plays(50, timedelta(minutes=3)), NOW + timedelta(minutes=106)),
        # A session just starting (10 plays at 3 minutes, after a quiet night): 35 more
        # before the tick.
        (
            {**plays(10, timedelta(minutes=3)), "previous": NOW - timedelta(hours=10)},
            NOW + timedelta(minutes=106),
        ),
        # One play, 3.5 minutes after the newest landed before: the same pace goes on.
        (
            {**plays(1, timedelta(0)), "previous": NOW - timedelta(minutes=3.5)},
            NOW + timedelta(minutes=123),
        ),
        # Fast skipping: never sooner than 15 minutes after the run.
        (plays(50, timedelta(seconds=10)), NOW + MIN_GAP + timedelta(minutes=1)),
        # 40 plays stamped at once (synced together): look again soon.
        (plays(40, timedelta(0)), NOW + MIN_GAP + timedelta(minutes=1)),
        # 35 plays over 3 hours: 35 more come with the tick, within what the API keeps.
        (plays(35, timedelta(minutes=5.3)), None),
        # Quiet listening, one play, nothing: no follow-up.
        (plays(4, timedelta(minutes=40)), None),
        (plays(1, timedelta(0)), None),
        ({"count": 0, "oldest": None, "newest": None}, None),
    ],
    ids=["busy", "starting", "going-on", "skipping", "synced", "steady", "quiet", "one", "none"],
)
def test_a_follow_up_comes_when_35_more_plays_are_expected_before_the_tick(
    landed: dict[str, Any], due: datetime | None
) -> None:
    decision = decide(**landed, threshold=35, now=NOW, next_tick=TICK)
    assert decision.due == due, decision.reason


def test_a_follow_up_within_15_minutes_of_the_tick_is_left_to_the_tick() -> None:
    busy = plays(50, timedelta(minutes=3))
    assert decide(**busy, threshold=35, now=NOW, next_tick=NOW + timedelta(minutes=130)).due
    late = decide(**busy, threshold=35, now=NOW, next_tick=NOW + timedelta(minutes=120))
    assert late.due is None and "comes first" in late.reason


def manifest(**fields: Any) -> dict[str, Any]:
    busy = plays(50, timedelta(minutes=3))
    return {
        "outcome": "succeeded",
        "records": 50,
        "landed_span": {"oldest": busy["oldest"].isoformat(), "newest": NOW.isoformat()},
        "window": {"since": None, "until": None},
        **fields,
    }


def test_only_runs_that_read_the_pace_of_a_job_with_follow_ups_decide() -> None:
    job = "spotify_recently_played"
    decision = follow_up(CONFIG, job, manifest(), NOW)
    assert decision is not None and decision.due == NOW + timedelta(minutes=106)
    # The job's own threshold: 20 more plays at 3 minutes.
    config = with_job(CONFIG, job, follow_up_plays=20)
    assert follow_up(config, job, manifest(), NOW) == decide(
        **plays(50, timedelta(minutes=3)), threshold=20, now=NOW, next_tick=TICK
    )
    window = {"since": (NOW - timedelta(days=1)).isoformat(), "until": None}
    assert follow_up(CONFIG, job, manifest(window=window), NOW) is None
    assert follow_up(CONFIG, job, manifest(outcome="dry_run"), NOW) is None
    assert follow_up(CONFIG, job, manifest(outcome="already_committed"), NOW) is None
    assert follow_up(CONFIG, "spotify_saved_tracks", manifest(), NOW) is None


# -- through a real worker ------------------------------------------------------------------------


@pytest.fixture
def spotify_emu() -> Iterator[SpotifyEmulator]:
    # History up to 3 hours ago: the plays the test adds (3.5 minutes apart) are all past.
    end = datetime.now(UTC) - timedelta(hours=3)
    with SpotifyEmulator(
        saved_tracks=50, plays=100, saved_albums=10, playlists=3, end=end
    ) as emulator:
        yield emulator


def test_a_busy_listener_gets_one_follow_up_run_on_a_real_worker(
    worker_factory: WorkerFactory,
    spotify_emu: SpotifyEmulator,
    redis_client: redis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    jobs = shipped_config("dev")["jobs"]
    jobs = {"spotify_recently_played": jobs["spotify_recently_played"]}
    jobs["spotify_recently_played"] |= {"cron": "0 0 1 1 *", "follow_up_plays": 10}
    config = write_config(tmp_path / "config.yaml", jobs=jobs, job_groups={})
    worker = worker_factory(
        extra_env={**spotify_emu.environ(), "ELA_TOKEN_DIR": str(tmp_path / "worker-tokens")},
        config=config,
    )
    bucket = LocalBucket(tmp_path / "bucket")
    task = "tasks.spotify.recently_played"
    key = f"{redis_prefix}ela-dev-follow-up:spotify_recently_played"

    def pending() -> tuple[datetime, str]:
        value = redis_client.get(key) or b""
        due, chain = (value.decode() if isinstance(value, bytes) else value).split(" ")
        return datetime.fromisoformat(due), chain

    def waiting() -> list[dict[str, Any]]:
        """The follow-up messages the worker holds until their countdown ends."""
        scheduled = worker.client.control.inspect(timeout=2).scheduled() or {}
        return [entry["request"] for entries in scheduled.values() for entry in entries]

    # 20 plays at 3.5 minutes (the last over an hour ago): 10 more are due by now, so the
    # follow-up comes as soon as it may, 15 minutes after this run.
    spotify_emu.add_plays(20)
    first = worker.call(task)
    finished = datetime.fromisoformat(first["finished_at"])
    assert first["records"] == 20
    due, chain = pending()
    assert finished + MIN_GAP <= due <= finished + MIN_GAP + timedelta(minutes=1)
    [hop] = wait_for(waiting, 10, "the follow-up message")
    assert hop["kwargs"] == {"job": "spotify_recently_played", "follow_up": chain}

    # Another run meanwhile moves the due time; still one follow-up, the same message.
    spotify_emu.add_plays(1)
    second = worker.call(task)
    assert second["records"] == 1
    assert pending()[1] == chain and [r["id"] for r in waiting()] == [hop["id"]]

    # The follow-up comes due (its wait is shortened here): the job runs, lands what is new,
    # and plans again from its own plays.
    redis_client.set(key, f"{(datetime.now(UTC) - timedelta(seconds=1)).isoformat()} {chain}")
    new = spotify_emu.add_plays(12)
    run = worker.call(task, follow_up=chain)
    assert run["outcome"] == "succeeded" and run["records"] == 12
    [obj] = run["objects"]
    assert read_jsonl(bucket.get_bytes(obj["name"])) == json.loads(json.dumps(new[::-1]))
    due, new_chain = pending()
    assert new_chain != chain and due > datetime.now(UTC) + timedelta(minutes=14)
    # The first chain's message, when it wakes, finds the key no longer its own and ends.
    cancelled = {"outcome": "cancelled", "job": "spotify_recently_played"}
    assert worker.call(task, follow_up=chain) == cancelled

    # The rate drops: a run with nothing new cancels the follow-up; its message then ends.
    spotify_emu.reset_calls()
    quiet = worker.call(task)
    assert quiet["records"] == 0 and redis_client.get(key) is None
    assert worker.call(task, follow_up=new_chain)["outcome"] == "cancelled"
    assert spotify_emu.calls_to("recently-played") == 1  # only the quiet run asked Spotify
    assert "follow-up run at" in worker.log() and "pending follow-up cancelled" in worker.log()
