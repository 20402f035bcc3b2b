"""Garmin's other data types (issue 15.1): the real garminconnect against the Garmin emulator.

Per day (steps, stress, hrv, training_status, floors) on the sleep/heart-rate machinery; ranges
(body_battery, weight) in one call per run; snapshots (race_predictions, devices). What lands
is Garmin's JSON plus the downstream's documented adaptations, checked against BigQuery's rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ela import config as config_module
from ela.bqcheck import check_records
from ela.config import IngestionConfig
from ela.connectors.garmin import DAILY_BACKFILL, RANGE_BACKFILL, garmin
from ela.pipeline import Overrides, run_job
from ela.sandbox.emulators.garmin import DEVICE_ID, EPOCH, GarminEmulator
from ela.sandbox.processes import REPO
from ela.sinks import LocalBucket
from ela.tokens import TokenStore
from tests.conftest import read_jsonl
from tests.helpers import run_id_of
from tests.test_garmin import BRUSSELS, Clock, config_with_days, down_for_three_days, run_at

LAST_DAY = date(2025, 6, 30)
SCHEDULED = datetime(2025, 6, 30, 13, 0, tzinfo=UTC)
PER_DAY = ["steps", "stress", "hrv", "training_status", "floors"]
NEW = [*PER_DAY, "body_battery", "weight", "race_predictions", "devices"]


@pytest.fixture(scope="module")
def config() -> IngestionConfig:
    return config_module.load(REPO / "ingestion-config-dev.yaml")


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    return tmp_path / "tokens"


@pytest.fixture
def store(token_dir: Path) -> TokenStore:
    return TokenStore(token_dir)


@pytest.fixture
def bucket(tmp_path: Path) -> LocalBucket:
    return LocalBucket(tmp_path / "bucket")


@pytest.fixture
def emulator(store: TokenStore) -> Iterator[GarminEmulator]:
    with GarminEmulator(last_day=LAST_DAY) as em:
        assert isinstance(em, GarminEmulator)
        em.prepare_tokens(store)
        yield em


def run(
    config: IngestionConfig,
    emulator: GarminEmulator,
    bucket: LocalBucket,
    token_dir: Path,
    job: str,
    **overrides: Any,
) -> dict[str, Any]:
    """One run of ``job`` at SCHEDULED; ``days=N`` sets the job's days (a config of its own)."""
    emulator.reset_calls()
    days = overrides.pop("days", None)
    if days is not None:
        config = config_with_days(token_dir.parent, **{job: days})
    return run_job(
        config,
        job,
        run_id=run_id_of(f"{job}-{len(list(bucket.list(''))):04d}"),
        scheduled_at=SCHEDULED,
        overrides=Overrides.from_kwargs(**overrides),
        bucket=bucket,
        environ=emulator.environ() | {"ELA_TOKEN_DIR": str(token_dir)},
    )


def landed(bucket: LocalBucket, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    assert manifest["outcome"] == "succeeded", manifest
    return [r for o in manifest["objects"] for r in read_jsonl(bucket.get_bytes(o["name"]))]


# -- the contract -----------------------------------------------------------------------------
def test_each_type_is_registered_scheduled_in_both_envs_and_backfillable() -> None:
    for env in ("dev", "prd"):
        cfg = config_module.load(REPO / f"ingestion-config-{env}.yaml")
        for data_type in NEW:
            job = cfg.jobs[f"garmin_{data_type}"]
            assert job.enabled and job.task == f"tasks.garmin.{data_type}"
            assert f"garmin_{data_type}" in cfg.job_groups["fitness_all"].jobs
    for data_type in PER_DAY:
        assert garmin.data_types[data_type].backfill is DAILY_BACKFILL
    for data_type in ("body_battery", "weight"):
        assert garmin.data_types[data_type].backfill is RANGE_BACKFILL


# -- per day ----------------------------------------------------------------------------------
def test_stress_lands_its_two_series_as_objects_with_the_day(
    config: IngestionConfig, emulator: GarminEmulator, bucket: LocalBucket, token_dir: Path
) -> None:
    manifest = run(config, emulator, bucket, token_dir, "garmin_stress", days=2)
    records = landed(bucket, manifest)
    assert [r["date"] for r in records] == ["2025-06-29", "2025-06-30"]
    sent = emulator.stress_for(date(2025, 6, 29))
    first = records[0]
    assert first["data_type"] == "stress" and first["calendarDate"] == "2025-06-29"
    assert first["maxStressLevel"] == sent["maxStressLevel"]
    assert first["stressValuesArray"] == [
        {"timestamp": t, "value": v} for t, v in sent["stressValuesArray"]
    ]
    assert len(first["stressValuesArray"]) == 480  # every 3 minutes
    assert first["bodyBatteryValuesArray"][0] == dict(
        zip(
            ["timestamp", "bodyBatteryStatus", "bodyBatteryLevel", "bodyBatteryVersion"],
            sent["bodyBatteryValuesArray"][0],
            strict=True,
        )
    )
    # Garmin's -1 (off the wrist) and -2 (activity) land as sent.
    assert {-1, -2} <= {row["value"] for row in first["stressValuesArray"]}
    assert check_records(records) == []
    assert manifest["api_calls"] == 3  # two days, and the profile settings (time zone)


@pytest.mark.parametrize("data_type", PER_DAY)
def test_every_per_day_type_lands_bigquery_loadable_records_stamped_with_the_day(
    config: IngestionConfig,
    emulator: GarminEmulator,
    bucket: LocalBucket,
    token_dir: Path,
    data_type: str,
) -> None:
    manifest = run(config, emulator, bucket, token_dir, f"garmin_{data_type}", days=3)
    records = landed(bucket, manifest)
    assert records and all(r["data_type"] == data_type for r in records)
    assert sorted({r["date"] for r in records}) == ["2025-06-28", "2025-06-29", "2025-06-30"]
    assert check_records(records) == []
    assert manifest["warnings"] == []


def test_steps_land_one_record_per_quarter_hour(
    config: IngestionConfig, emulator: GarminEmulator, bucket: LocalBucket, token_dir: Path
) -> None:
    manifest = run(config, emulator, bucket, token_dir, "garmin_steps", days=1)
    records = landed(bucket, manifest)
    sent = emulator.steps_for(LAST_DAY)
    assert len(records) == len(sent) == 96
    assert records[5] == {**sent[5], "date": "2025-06-30", "data_type": "steps"}


def test_training_status_maps_by_device_land_as_entries(
    config: IngestionConfig, emulator: GarminEmulator, bucket: LocalBucket, token_dir: Path
) -> None:
    manifest = run(config, emulator, bucket, token_dir, "garmin_training_status", days=1)
    [record] = landed(bucket, manifest)
    sent = emulator.training_status_for(LAST_DAY)
    device = str(DEVICE_ID)
    status = sent["mostRecentTrainingStatus"]["latestTrainingStatusData"][device]
    assert record["mostRecentTrainingStatus"]["latestTrainingStatusData"] == [
        {"key": device, "value": status}
    ]
    assert record["mostRecentVO2Max"] == sent["mostRecentVO2Max"]  # the rest as sent
    assert record["date"] == "2025-06-30"


def test_floors_rows_take_their_descriptor_names(
    config: IngestionConfig, emulator: GarminEmulator, bucket: LocalBucket, token_dir: Path
) -> None:
    manifest = run(config, emulator, bucket, token_dir, "garmin_floors", days=1)
    [record] = landed(bucket, manifest)
    [start, end, up, down] = emulator.floors_for(LAST_DAY)["floorValuesArray"][40]
    assert record["floorValuesArray"][40] == {
        "startTimeGMT": start,
        "endTimeGMT": end,
        "floorsAscended": up,
        "floorsDescended": down,
    }


def test_days_without_data_land_as_garmin_sends_them_and_never_fail_the_run(
    config: IngestionConfig, emulator: GarminEmulator, bucket: LocalBucket, token_dir: Path
) -> None:
    """A watch left in a drawer: steps are 96 intervals stamped 1970 (garminconnect's recorded
    test_steps_data), stress has nulls and empty series, HRV is HTTP 204 (test_no_hrv_data):
    that day is skipped with a warning. Every run succeeds."""
    off = date(2025, 6, 29)
    emulator.no_data_days.add(off)
    steps = landed(bucket, run(config, emulator, bucket, token_dir, "garmin_steps", days=2))
    placeholders = [r for r in steps if r["date"] == off.isoformat()]
    assert len(placeholders) == 96 and {r["startGMT"] for r in placeholders} == {EPOCH}
    stress = landed(bucket, run(config, emulator, bucket, token_dir, "garmin_stress", days=2))
    assert stress[0]["date"] == off.isoformat() and stress[0]["stressValuesArray"] == []
    assert stress[0]["maxStressLevel"] is None and check_records(stress) == []
    hrv = run(config, emulator, bucket, token_dir, "garmin_hrv", days=2)
    assert [r["date"] for r in landed(bucket, hrv)] == ["2025-06-30"]
    assert hrv["warnings"] == ["hrv 2025-06-29: no data"]
    battery = landed(
        bucket, run(config, emulator, bucket, token_dir, "garmin_body_battery", days=2)
    )
    assert battery[0]["date"] == off.isoformat() and battery[0]["charged"] is None
    assert {row["value"] for row in battery[0]["bodyBatteryValuesArray"]} == {None}
    assert check_records(battery) == []


def test_a_night_without_an_hrv_reading_is_skipped_with_a_warning(
    config: IngestionConfig, emulator: GarminEmulator, bucket: LocalBucket, token_dir: Path
) -> None:
    emulator.no_hrv_days.add(LAST_DAY)
    manifest = run(config, emulator, bucket, token_dir, "garmin_hrv", days=1)
    assert manifest["outcome"] == "succeeded" and manifest["records"] == 0
    assert manifest["warnings"] == ["hrv 2025-06-30: no data"]


def test_stress_lands_each_day_complete_once_it_is_over(
    config: IngestionConfig, store: TokenStore, token_dir: Path, bucket: LocalBucket
) -> None:
    """Today's stress grows through the day: it lands partial (listed in partial_days), and
    the day lands again, whole, on the first run after it ended plus the settling margin."""
    clock = Clock(datetime(2025, 6, 30, 13, 0, tzinfo=BRUSSELS))
    with GarminEmulator(clock=clock) as em:
        assert isinstance(em, GarminEmulator)
        em.prepare_tokens(store)
        noon = run_at(config, em, bucket, token_dir, "garmin_stress", clock.now)
        [so_far] = landed(bucket, noon)
        assert noon["partial_days"] == ["2025-06-30"]
        assert len(so_far["stressValuesArray"]) == 13 * 20 + 1  # 00:00 to 13:00, every 3 min

        clock.now = datetime(2025, 7, 1, 9, 0, tzinfo=BRUSSELS)
        morning = run_at(config, em, bucket, token_dir, "garmin_stress", clock.now)
        whole, today = landed(bucket, morning)
        assert (whole["date"], len(whole["stressValuesArray"])) == ("2025-06-30", 480)
        assert today["date"] == "2025-07-01" and morning["partial_days"] == ["2025-07-01"]
        assert morning["state_update"]["complete_through"] == "2025-06-30"

        clock.now = datetime(2025, 7, 1, 17, 0, tzinfo=BRUSSELS)
        later = run_at(config, em, bucket, token_dir, "garmin_stress", clock.now)
        assert [r["date"] for r in landed(bucket, later)] == ["2025-07-01"]
        assert later["api_calls"] == 1  # a complete day is not asked for again


def test_a_backfill_window_lands_whole_and_leaves_the_state(
    config: IngestionConfig, emulator: GarminEmulator, bucket: LocalBucket, token_dir: Path
) -> None:
    since = datetime(2025, 6, 1, tzinfo=UTC)
    until = datetime(2025, 6, 10, tzinfo=UTC)
    manifest = run(config, emulator, bucket, token_dir, "garmin_hrv", since=since, until=until)
    assert [r["date"] for r in landed(bucket, manifest)] == [
        f"2025-06-{d:02d}" for d in range(1, 11)
    ]
    assert "complete_through" not in (manifest.get("state_update") or {})


# -- ranges -----------------------------------------------------------------------------------
def test_body_battery_catches_up_every_day_in_one_call(
    config: IngestionConfig, store: TokenStore, token_dir: Path, bucket: LocalBucket
) -> None:
    job = "garmin_body_battery"
    with down_for_three_days(config, store, token_dir, bucket, job) as (em, manifest):
        records = landed(bucket, manifest)
        assert [r["date"] for r in records] == [
            "2025-06-29",
            "2025-06-30",
            "2025-07-01",
            "2025-07-02",
        ]
        assert em.calls_to("bodyBattery/reports/daily") == manifest["api_calls"] == 1
        assert manifest["partial_days"] == ["2025-07-02"]
        assert manifest["state_update"]["complete_through"] == "2025-07-01"
        assert records[1]["bodyBatteryValuesArray"][0].keys() == {"timestamp", "value"}
        assert check_records(records) == []


def test_weight_lands_late_edited_and_deleted_weigh_ins_each_once(
    config: IngestionConfig, emulator: GarminEmulator, bucket: LocalBucket, token_dir: Path
) -> None:
    """A run re-reads the last `days` days: a manual entry for last week typed in today
    lands (its day's summary, with every weigh-in of that day), a day unchanged does not land
    again, and a day whose weigh-ins were all deleted is named in the manifest, once."""
    first = run(config, emulator, bucket, token_dir, "garmin_weight")  # dev: days 7
    summaries = landed(bucket, first)
    sent = emulator.weigh_ins_between(LAST_DAY - timedelta(days=6), LAST_DAY)
    assert [s["summaryDate"] for s in summaries] == [
        s["summaryDate"] for s in sent["dailyWeightSummaries"]
    ]
    assert summaries[0] == {
        **sent["dailyWeightSummaries"][0],
        "date": sent["dailyWeightSummaries"][0]["summaryDate"],
        "data_type": "weight",
    }
    assert first["api_calls"] == 2  # the range, and the profile settings (time zone)

    steady = run(config, emulator, bucket, token_dir, "garmin_weight")
    assert steady["records"] == 0 and steady["api_calls"] == 1

    last_week = LAST_DAY - timedelta(days=5)
    emulator.add_weigh_in(last_week, 60_500.0, source="MANUAL", hour=21)
    late = run(config, emulator, bucket, token_dir, "garmin_weight")
    [day] = landed(bucket, late)
    assert day["date"] == last_week.isoformat()
    assert 60_500.0 in [w["weight"] for w in day["allWeightMetrics"]]

    gone = summaries[0]["summaryDate"]
    for sample in summaries[0]["allWeightMetrics"]:
        emulator.delete_weigh_in(sample["samplePk"])
    deleted = run(config, emulator, bucket, token_dir, "garmin_weight")
    assert deleted["records"] == 0 and deleted["removed_days"] == [gone]
    assert any(gone in warning for warning in deleted["warnings"])
    again = run(config, emulator, bucket, token_dir, "garmin_weight")
    assert "removed_days" not in again and again["records"] == 0


# -- snapshots --------------------------------------------------------------------------------
def test_race_predictions_and_devices_land_as_sent(
    config: IngestionConfig, emulator: GarminEmulator, bucket: LocalBucket, token_dir: Path
) -> None:
    [prediction] = landed(
        bucket, run(config, emulator, bucket, token_dir, "garmin_race_predictions")
    )
    assert prediction["time5K"] == 1_342 and "date" not in prediction
    devices = landed(bucket, run(config, emulator, bucket, token_dir, "garmin_devices"))
    assert [d["deviceId"] for d in devices] == [DEVICE_ID, 3_301_554_210]
    assert check_records(devices) == [] and check_records([prediction]) == []
