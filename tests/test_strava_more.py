"""Strava laps, streams, clubs and gear (issue 15), end to end through stravalib against the
local Strava emulator, landing in a local bucket."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ela import bqcheck
from ela import config as config_module
from ela.config import IngestionConfig
from ela.connectors.strava import PER_ACTIVITY_CHUNK_DAYS, stream_keys
from ela.errors import PayloadError, RetriableError
from ela.ops import backfill as bf
from ela.pipeline import Overrides, run_job
from ela.sandbox.emulators.server import Drift, Fault
from ela.sandbox.emulators.strava import StravaEmulator
from ela.sandbox.processes import REPO
from ela.sinks import Bucket, LocalBucket
from ela.state import read_state
from tests.conftest import read_jsonl

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
WHEN = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
JSON = list[dict[str, Any]]
NO_OVERRIDES = Overrides()


class Clock:
    """The emulator's clock: real time, moved on by ``shift`` (rate-limit windows, tokens)."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift

    def next_quarter_hour(self) -> None:
        now = self()
        self.shift += 900 - now % 900 + 1


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(clock: Clock) -> Iterator[StravaEmulator]:
    with StravaEmulator(activities=40, clock=clock) as emulator:
        yield emulator


@pytest.fixture
def bucket(tmp_path: Path) -> LocalBucket:
    return LocalBucket(tmp_path / "bucket")


def run(
    emulator: StravaEmulator,
    bucket: Bucket,
    tmp_path: Path,
    job: str,
    overrides: Overrides = NO_OVERRIDES,
    config: IngestionConfig = CONFIG,
) -> dict[str, Any]:
    return run_job(
        config,
        job,
        run_id=str(uuid.uuid4()),
        scheduled_at=WHEN,
        overrides=overrides,
        bucket=bucket,
        environ={**emulator.environ(), "ELA_TOKEN_DIR": str(tmp_path / "tokens")},
    )


def landed(bucket: Bucket, manifest: dict[str, Any]) -> JSON:
    records: JSON = []
    for obj in manifest["objects"]:
        records.extend(read_jsonl(bucket.get_bytes(obj["name"])))
    return records


def landed_ids(bucket: Bucket) -> list[int]:
    """The activities the activities job keeps in its state, oldest first."""
    state = read_state(bucket, "strava", "strava_activities").landed
    return [int(k) for k, _ in sorted(state.items(), key=lambda kv: (kv[1], int(kv[0])))]


def ok_calls(emulator: StravaEmulator, kind: str) -> list[int]:
    """Activity ids whose ``kind`` (laps, streams) the emulator was asked for, sorted (they
    are asked for a few at a time; what lands is in activity order)."""
    return sorted(
        int(path.split("/")[4])
        for _, path, _ in emulator.calls
        if path.startswith("/api/v3/activities/") and path.endswith(f"/{kind}")
    )


# -- laps ------------------------------------------------------------------------------------


def test_laps_land_once_for_each_newly_landed_activity(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    before = run(emu, bucket, tmp_path, "strava_laps")
    assert before["records"] == 0 and ok_calls(emu, "laps") == []  # no activity landed yet

    run(emu, bucket, tmp_path, "strava_activities")
    ids = landed_ids(bucket)
    assert ids
    emu.reset_calls()
    first = run(emu, bucket, tmp_path, "strava_laps", Overrides(limit=100))
    assert landed(bucket, first) == [lap for i in ids for lap in emu.laps_of(i)]
    assert all(lap["activity"]["id"] in ids for lap in landed(bucket, first))
    assert ok_calls(emu, "laps") == sorted(ids)  # one call per activity
    assert first["api_calls"] == len(ids)

    emu.reset_calls()
    again = run(emu, bucket, tmp_path, "strava_laps")
    assert again["records"] == 0 and ok_calls(emu, "laps") == []  # each activity once

    new = emu.add_activities(3)
    run(emu, bucket, tmp_path, "strava_activities")
    emu.reset_calls()
    third = run(emu, bucket, tmp_path, "strava_laps")
    assert ok_calls(emu, "laps") == sorted(a["id"] for a in new)
    assert landed(bucket, third) == [lap for a in new for lap in emu.laps_of(a["id"])]


def test_limit_does_the_oldest_and_the_next_run_the_rest(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    run(emu, bucket, tmp_path, "strava_activities")
    ids = landed_ids(bucket)
    run(emu, bucket, tmp_path, "strava_laps", Overrides(limit=5))
    assert ok_calls(emu, "laps") == sorted(ids[:5])
    emu.reset_calls()
    run(emu, bucket, tmp_path, "strava_laps", Overrides(limit=100))
    assert ok_calls(emu, "laps") == sorted(ids[5:])


def test_a_late_upload_gets_its_laps_and_streams(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    run(emu, bucket, tmp_path, "strava_activities")
    run(emu, bucket, tmp_path, "strava_laps", Overrides(limit=100))
    run(emu, bucket, tmp_path, "strava_streams", Overrides(limit=100))
    newest = datetime.fromisoformat(emu.activities[-1]["start_date"])
    (late,) = emu.upload([newest - timedelta(days=2)])  # a watch that synced days later
    run(emu, bucket, tmp_path, "strava_activities")
    emu.reset_calls()
    laps = run(emu, bucket, tmp_path, "strava_laps")
    streams = run(emu, bucket, tmp_path, "strava_streams")
    assert ok_calls(emu, "laps") == ok_calls(emu, "streams") == [late["id"]]
    assert landed(bucket, laps) == emu.laps_of(late["id"])
    assert [r["activity_id"] for r in landed(bucket, streams)] == [late["id"]]


# -- streams ---------------------------------------------------------------------------------


def test_streams_land_per_activity_with_only_the_streams_it_has(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    run(emu, bucket, tmp_path, "strava_activities")
    earlier = landed(bucket, run(emu, bucket, tmp_path, "strava_streams", Overrides(limit=100)))
    newest = datetime.fromisoformat(emu.activities[-1]["start_date"])
    (manual,) = emu.upload([newest + timedelta(hours=2)], manual=True)
    no_strap = emu.without_heart_rate(1)[0]
    run(emu, bucket, tmp_path, "strava_activities")
    emu.reset_calls()
    manifest = run(emu, bucket, tmp_path, "strava_streams")

    # Every type stravalib knows is asked for, keyed by type, as get_activity_streams does.
    (query,) = {str(q) for _, p, q in emu.calls if p.endswith("/streams")} - set()
    assert f"'keys': '{','.join(stream_keys())}'" in query and "'key_by_type': 'True'" in query
    # The manual entry: 404, nothing lands, it is done all the same (and said).
    assert ok_calls(emu, "streams") == sorted([manual["id"], no_strap["id"]])
    records = landed(bucket, manifest)
    assert [r["activity_id"] for r in records] == [no_strap["id"]]
    assert any(f"{manual['id']}" in w and "404" in w for w in manifest["warnings"])
    done = read_state(bucket, "strava", "strava_streams").landed
    assert str(manual["id"]) in done and str(no_strap["id"]) in done
    # No heart-rate strap: no heartrate stream; the rest as Strava sent them.
    expected = emu.streams_of(no_strap["id"])
    assert expected is not None and "heartrate" not in expected
    streams = records[0]["streams"]
    assert set(streams) == set(expected)
    assert streams["time"] == expected["time"]
    # latlng rows are objects for BigQuery; nothing else changed.
    outdoor = next(r for r in earlier if "latlng" in r["streams"])
    sent = emu.streams_of(outdoor["activity_id"])
    assert sent is not None
    assert outdoor["streams"]["latlng"]["data"] == [
        {"lat": lat, "lng": lng} for lat, lng in sent["latlng"]["data"]
    ]
    assert {k: v for k, v in outdoor["streams"].items() if k != "latlng"} == {
        k: v for k, v in sent.items() if k != "latlng"
    }

    emu.reset_calls()
    assert run(emu, bucket, tmp_path, "strava_streams")["records"] == 0
    assert ok_calls(emu, "streams") == []


def test_every_new_type_loads_into_bigquery(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    run(emu, bucket, tmp_path, "strava_activities")
    for job in ("strava_laps", "strava_streams", "strava_clubs", "strava_gear"):
        manifest = run(emu, bucket, tmp_path, job, Overrides(limit=100))
        assert manifest["records"] > 0, job
        assert bqcheck.check_records(landed(bucket, manifest)) == [], job


# -- the read budget ---------------------------------------------------------------------------


def test_the_budget_stops_a_run_cleanly_and_the_next_does_the_rest(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path, clock: Clock
) -> None:
    run(emu, bucket, tmp_path, "strava_activities")
    ids = landed_ids(bucket)
    assert len(ids) > 10
    emu.consume(90)  # another user of the app spent 90 of this quarter hour's 100 reads
    emu.reset_calls()
    first = run(emu, bucket, tmp_path, "strava_streams", Overrides(limit=100))
    got = [r["activity_id"] for r in landed(bucket, first)]
    assert 0 < len(got) <= 10
    # In order; calls run 4 at a time, so one refused may sit between two that were answered:
    # those land (their reads are spent) and only the refused ones are the next run's.
    assert got == [i for i in ids if i in set(got)]
    assert first["pending_activities"] == len(ids) - len(got)
    assert any("read budget ran out" in w for w in first["warnings"])

    clock.next_quarter_hour()
    second = run(emu, bucket, tmp_path, "strava_streams", Overrides(limit=100))
    rest = [r["activity_id"] for r in landed(bucket, second)]
    assert sorted(got + rest) == sorted(ids)  # no activity lost, none landed twice
    served = [int(p.split("/")[4]) for p in emu.answered if p.endswith("/streams")]
    assert sorted(served) == sorted(ids)  # none fetched twice


def test_a_spent_window_before_anything_lands_is_retriable(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    run(emu, bucket, tmp_path, "strava_activities")
    emu.consume(100)
    with pytest.raises(RetriableError) as caught:
        run(emu, bucket, tmp_path, "strava_laps")
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 901
    assert read_state(bucket, "strava", "strava_laps").landed == {}


# -- windows and backfill ------------------------------------------------------------------------


def test_a_window_lands_the_laps_of_its_activities(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    since, until = datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 5, 15, tzinfo=UTC)
    window = emu.window(after=int(since.timestamp()) - 1, before=int(until.timestamp()))
    manifest = run(emu, bucket, tmp_path, "strava_laps", Overrides(since=since, until=until))
    assert ok_calls(emu, "laps") == sorted(a["id"] for a in window)
    assert landed(bucket, manifest) == [lap for a in window for lap in emu.laps_of(a["id"])]
    assert manifest["api_calls"] == 1 + 1 + len(window)  # token, one page, one per activity


def test_a_window_that_runs_out_of_budget_lands_nothing(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    since, until = datetime(2025, 4, 1, tzinfo=UTC), datetime(2025, 5, 31, tzinfo=UTC)
    emu.consume(95)
    with pytest.raises(RetriableError):
        run(emu, bucket, tmp_path, "strava_streams", Overrides(since=since, until=until))
    assert read_state(bucket, "strava", "strava_streams").landed == {}
    assert list(bucket.list("strava/landing/")) == []


def test_backfill_paces_streams_in_30_day_chunks(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    plan = bf.plan(
        CONFIG, "strava_streams", date(2025, 3, 1), date(2025, 5, 31), today=date(2025, 7, 1)
    )
    assert plan.chunk_days == PER_ACTIVITY_CHUNK_DAYS
    assert [q.name for q in plan.profile.quotas] == ["Strava 15-minute", "Strava daily"]
    environ = {**emu.environ(), "ELA_TOKEN_DIR": str(tmp_path / "tokens")}
    done = bf.run_backfill(
        bf.Backfill(plan), bf.inline_runner(CONFIG, plan, bucket=bucket, environ=environ)
    )
    assert done.complete
    window = emu.window(
        after=int(datetime(2025, 3, 1, tzinfo=UTC).timestamp()) - 1,
        before=int(datetime(2025, 6, 1, tzinfo=UTC).timestamp()),
    )
    assert sorted(ok_calls(emu, "streams")) == sorted(a["id"] for a in window)
    assert done.totals()["api_calls"] == len(plan.chunks) + len(window) + 1  # pages, N, token


def test_without_an_activities_job_it_says_so(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    jobs = {n: j for n, j in CONFIG.jobs.items() if n != "strava_activities"}
    groups = {
        g: c.model_copy(update={"jobs": [j for j in c.jobs if j in jobs]})
        for g, c in CONFIG.job_groups.items()
    }
    config = CONFIG.model_copy(update={"jobs": jobs, "job_groups": groups})
    manifest = run(emu, bucket, tmp_path, "strava_streams", config=config)
    assert manifest["records"] == 0
    assert any("strava/activities job" in w for w in manifest["warnings"])


# -- snapshots ----------------------------------------------------------------------------------


def test_clubs_land_as_strava_lists_them(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    manifest = run(emu, bucket, tmp_path, "strava_clubs")
    assert landed(bucket, manifest) == emu.clubs
    assert [c["membership"] for c in emu.clubs].count("pending") == 1  # asked, not yet admitted
    assert manifest["api_calls"] == 2  # token, one page


def test_gear_is_each_bike_and_shoe_of_the_athlete(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    manifest = run(emu, bucket, tmp_path, "strava_gear")
    ids = [g["id"] for g in (*emu.athlete["bikes"], *emu.athlete["shoes"])]
    records = landed(bucket, manifest)
    assert [g["id"] for g in records] == ids
    assert all(g["resource_state"] == 3 and "brand_name" in g for g in records)
    assert emu.calls_to("/api/v3/gear/") == len(ids)
    assert manifest["api_calls"] == 1 + 1 + len(ids)  # token, athlete, one per gear


# -- the robustness cases the generic tests run for the other jobs ------------------------------


def test_a_malformed_streams_body_fails_the_run_and_commits_nothing(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    run(emu, bucket, tmp_path, "strava_activities")
    emu.inject(Fault(malformed=True, path="/streams", times=1))
    with pytest.raises(PayloadError) as caught:
        run(emu, bucket, tmp_path, "strava_streams")
    assert str(caught.value).startswith("strava:") and "\n" not in str(caught.value)
    assert read_state(bucket, "strava", "strava_streams").landed == {}
    assert not [o for o in bucket.list("strava/landing/") if "streams" in o.name]


def test_drifted_laps_and_gzip_streams_land_as_strava_sent_them(
    emu: StravaEmulator, tmp_path: Path
) -> None:
    plain, drifted = LocalBucket(tmp_path / "plain"), LocalBucket(tmp_path / "drifted")
    for bucket in (plain, drifted):
        run(emu, bucket, tmp_path, "strava_activities")
    laps = landed(plain, run(emu, plain, tmp_path, "strava_laps"))
    streams = landed(plain, run(emu, plain, tmp_path, "strava_streams"))
    emu.drift = Drift(add={"ela_new_field": 1}, drop=("split",))
    emu.gzip = True
    assert landed(drifted, run(emu, drifted, tmp_path, "strava_laps")) == [
        Drift(add={"ela_new_field": 1}, drop=("split",)).apply(lap) for lap in laps
    ]
    assert landed(drifted, run(emu, drifted, tmp_path, "strava_streams")) == streams
    assert emu.compressed >= 1
