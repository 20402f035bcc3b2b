"""Job state: old files still read, updates merge forwards, landed keys stay bounded, and a
crash between manifest and state heals on redelivery."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ela import config as config_module
from ela import naming
from ela.pipeline import run_job
from ela.sandbox.emulators.spotify import SpotifyEmulator
from ela.sandbox.processes import REPO
from ela.sinks import LocalBucket, put_json
from ela.state import MAX_LANDED, JobState, StateUpdate, commit, read_cursor, read_state

NAME = naming.state("spotify", "spotify_recently_played")


def test_a_state_written_before_landed_keys_existed_still_reads(tmp_path: Path) -> None:
    bucket = LocalBucket(tmp_path)
    old = {"job": "j", "cursor": 1751306400191, "run_id": "r", "updated_at": "2025-07-01"}
    put_json(bucket, NAME, old)
    assert read_state(bucket, "spotify", "spotify_recently_played") == JobState(1751306400191)
    assert read_state(bucket, "spotify", "nothing_yet") == JobState()


def test_updates_merge_forwards(tmp_path: Path) -> None:
    bucket = LocalBucket(tmp_path)
    job = ("spotify", "spotify_recently_played")
    first = StateUpdate(cursor=10, landed={"a": 5, "b": 10}, complete_through="2025-07-02")
    assert commit(bucket, *job, first, "run-1")
    # A run that committed in between, with an older cursor and day: both stay, keys join.
    late = StateUpdate(cursor=8, landed={"c": 8}, complete_through="2025-07-01")
    assert commit(bucket, *job, late, "run-2")
    assert read_state(bucket, *job) == JobState(10, {"a": 5, "b": 10, "c": 8}, "2025-07-02")
    assert not commit(bucket, *job, StateUpdate(cursor=9), "run-3")  # nothing changes
    assert read_cursor(bucket, *job) == 10


def test_landed_keys_are_bounded_by_the_floor_and_the_cap(tmp_path: Path) -> None:
    bucket = LocalBucket(tmp_path)
    job = ("strava", "strava_activities")
    many = {str(n): float(n) for n in range(MAX_LANDED + 500)}
    commit(bucket, *job, StateUpdate(cursor=1, landed=many), "run-1")
    kept = read_state(bucket, *job).landed
    assert len(kept) == MAX_LANDED and min(kept.values()) == 500  # the newest are kept
    commit(bucket, *job, StateUpdate(landed={"new": 20_000}, landed_floor=10_000), "run-2")
    kept = read_state(bucket, *job).landed
    assert min(kept.values()) == 10_000 and kept["new"] == 20_000 and len(kept) == 501


def test_a_crash_between_manifest_and_state_heals_on_redelivery(tmp_path: Path) -> None:
    """The manifest records the state update; re-running the committed run re-applies it."""
    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    bucket = LocalBucket(tmp_path / "bucket")
    with SpotifyEmulator(saved_tracks=10, plays=100, saved_albums=5, playlists=2) as emulator:
        environ = {**emulator.environ(), "ELA_TOKEN_DIR": str(tmp_path / "tokens")}
        run: dict[str, Any] = {
            "run_id": str(uuid.uuid4()),
            "scheduled_at": datetime(2025, 7, 1, tzinfo=UTC),
        }
        first = run_job(config, "spotify_recently_played", bucket=bucket, environ=environ, **run)
        stored = read_state(bucket, "spotify", "spotify_recently_played")
        assert len(stored.landed) == 20 == len(first["state_update"]["landed"])
        bucket.delete(NAME)  # as if the worker died after the manifest

        again = run_job(config, "spotify_recently_played", bucket=bucket, environ=environ, **run)

        assert again["outcome"] == "already_committed"
        assert read_state(bucket, "spotify", "spotify_recently_played") == stored
        body = json.loads(bucket.get_bytes(NAME) or b"{}")
        assert body["run_id"] == run["run_id"]
