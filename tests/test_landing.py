"""What lands, as the downstream loaders see it (issue 11, points 3 and 4).

Every job of the shipped dev config runs once through the real pipeline, connectors and client
libraries against the four emulators, into a local bucket. Then: each object's name against
every loader pattern of the origin's downstream (docs/landing.md), each object's records
against BigQuery's rules for
loading JSONL with auto-detection (ela/bqcheck.py), and the per-day Garmin records against what
the origin's dbt models read. Last, a bucket that already holds objects under the names landed
before (``..._{service}_{data_type}_{run8}.jsonl``) keeps working with status, retention and
backfill.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ela import config as config_module
from ela import naming
from ela.bqcheck import check_jsonl, check_records
from ela.cli import main
from ela.ops import backfill as bf
from ela.ops import status
from ela.pipeline import run_job
from ela.retention import purge_errors
from ela.sandbox.emulators.garmin import GarminEmulator
from ela.sandbox.emulators.registry import emulator_for
from ela.sandbox.processes import REPO
from ela.sinks import LocalBucket, get_json, put_json
from ela.tokens import TokenStore
from tests.conftest import read_jsonl

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
SCHEDULED = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
NAME = re.compile(
    r"^(?P<service>[a-z]+)/landing/\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_(?P<run8>[0-9a-f]{8})_"
    r"(?P=service)_(?P<data_type>[a-z_]+)\.jsonl$"
)


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        found = {}
        for service in ("spotify", "strava", "garmin", "todoist"):
            emulator = emulator_for(service)
            assert emulator is not None
            found[service] = stack.enter_context(emulator)
        yield found


@pytest.fixture(scope="module")
def landed(
    emulators: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[LocalBucket, dict[str, dict[str, Any]]]:
    """Every dev job run once: the bucket and each job's manifest."""
    root = tmp_path_factory.mktemp("landing")
    environ = {"ELA_TOKEN_DIR": str(root / "tokens")}
    for emulator in emulators.values():
        emulator.prepare_tokens(TokenStore(root / "tokens"))
        environ.update(emulator.environ())
    bucket = LocalBucket(root / "bucket")
    manifests = {
        name: run_job(
            CONFIG,
            name,
            run_id=str(uuid.uuid4()),
            scheduled_at=datetime.now(UTC).replace(second=0, microsecond=0),
            bucket=bucket,
            environ=environ,
        )
        for name in CONFIG.jobs
    }
    return bucket, manifests


def objects_of(manifest: dict[str, Any]) -> list[str]:
    assert manifest["outcome"] == "succeeded" and manifest["records"] > 0, manifest
    return [o["name"] for o in manifest["objects"]]


# -- names -------------------------------------------------------------------------------------


def test_every_landed_name_is_found_by_each_loader_of_its_service(
    landed: tuple[LocalBucket, dict[str, dict[str, Any]]],
) -> None:
    _, manifests = landed
    for job_name, manifest in manifests.items():
        job = CONFIG.jobs[job_name]
        service, data_type = job.service, job.data_type
        [name] = objects_of(manifest)
        found = NAME.match(name)
        assert found, name  # time stamp first, run id kept, ends _{service}_{data_type}.jsonl
        assert (found["service"], found["data_type"]) == (service, data_type), name
        assert found["run8"] == naming.run8(manifest["run_id"])
        base = name.rsplit("/", 1)[1]
        others = [t for t in CONFIG.services[service].data_types if t != data_type]
        # The origin's loaders' patterns (docs/landing.md). The file is the data type's, no other's.
        if service == "spotify":
            assert re.match(rf".*_{data_type}\.jsonl$", base)  # the current loader
            assert not any(re.match(rf".*_{other}\.jsonl$", base) for other in others)
            assert data_type in base  # the earlier one: a substring
            assert not any(other in base for other in others)
        if service == "garmin":
            assert f"garmin_{data_type}.jsonl" in base or f"garmin_{data_type}_" in base
            assert not any(f"garmin_{o}.jsonl" in base or f"garmin_{o}_" in base for o in others)
        if service == "strava":
            assert data_type in base and not any(other in base for other in others)
        # And what any of them relies on: the name ends in _{service}_{data_type}.jsonl.
        assert base.endswith(f"_{service}_{data_type}.jsonl")


def test_the_names_landed_before_missed_the_current_spotify_loader() -> None:
    """Why the run id moved: the name landed until now ended in the run id."""
    old = f"2026_11_25_14_00_spotify_recently_played_{'1a2b3c4d'}.jsonl"
    assert not re.match(r".*_recently_played\.jsonl$", old)
    new = naming.landing("spotify", "recently_played", SCHEDULED, "1a2b3c4d-0000")
    assert new == "spotify/landing/2026_11_25_14_00_1a2b3c4d_spotify_recently_played.jsonl"
    assert re.match(r".*_recently_played\.jsonl$", new)


# -- records -----------------------------------------------------------------------------------


def test_every_data_type_lands_what_bigquery_loads_with_autodetect(
    landed: tuple[LocalBucket, dict[str, dict[str, Any]]],
) -> None:
    bucket, manifests = landed
    assert len(manifests) == len(CONFIG.jobs)  # every data type, issue 15's too
    for manifest in manifests.values():
        for name in objects_of(manifest):
            assert check_jsonl(bucket.get_bytes(name) or b"") == [], name


def test_the_raw_heart_rate_payload_is_what_bigquery_refuses(
    emulators: dict[str, Any],
) -> None:
    """Garmin sends heart rate as an array of arrays (as in garminconnect's recorded
    cassettes): landed as sent, BigQuery could not load it."""
    garmin: GarminEmulator = emulators["garmin"]
    raw = garmin.heart_rate_for(garmin.last_day)
    assert isinstance(raw["heartRateValues"][0], list)
    assert [str(f) for f in check_records([raw])] == [
        "line 1: heartRateValues[]: array of arrays: BigQuery has no ARRAY<ARRAY<...>>"
    ]


def test_per_day_garmin_records_carry_the_day_and_the_data_type(
    landed: tuple[LocalBucket, dict[str, dict[str, Any]]], emulators: dict[str, Any]
) -> None:
    bucket, manifests = landed
    garmin: GarminEmulator = emulators["garmin"]
    for job_name, data_type in (("garmin_sleep", "sleep"), ("garmin_heart_rate", "heart_rate")):
        manifest = manifests[job_name]
        # days: 1 → the scheduled day, in the user's time zone (Garmin's calendarDate)
        day = datetime.fromisoformat(manifest["scheduled_at"]).astimezone(garmin.tz).date()
        [record] = read_jsonl(bucket.get_bytes(objects_of(manifest)[0]))
        assert (record["date"], record["data_type"]) == (day.isoformat(), data_type)
        assert list(record)[-2:] == ["date", "data_type"]  # the provider's keys first, in order
    [heart] = read_jsonl(bucket.get_bytes(objects_of(manifests["garmin_heart_rate"])[0]))
    raw = garmin.heart_rate_for(date.fromisoformat(heart["date"]))
    assert heart["heartRateValues"] == [
        {"timestamp": t, "value": v} for t, v in raw["heartRateValues"]
    ]
    # Everything else as sent.
    rest = {k: v for k, v in heart.items() if k not in ("heartRateValues", "date", "data_type")}
    assert rest == {k: v for k, v in raw.items() if k != "heartRateValues"}
    for job_name in ("spotify_recently_played", "strava_activities", "garmin_activities"):
        for name in objects_of(manifests[job_name]):
            assert all(
                "date" not in r or "data_type" not in r for r in read_jsonl(bucket.get_bytes(name))
            )


def test_bucket_check_command_reports_each_problem_as_object_line_field(tmp_path: Path) -> None:
    bucket = LocalBucket(tmp_path / "bucket")
    good = b'{"id": 1, "tags": ["a"]}\n{"id": 2.5, "tags": []}\n'
    bad = b'{"id": 1, "points": [[1, 2]]}\n{"id": "x", "9lives": null}\n'
    bucket.put_bytes("garmin/landing/a_garmin_sleep.jsonl", good, "application/x-ndjson")
    bucket.put_bytes("strava/landing/b_strava_activities.jsonl", bad, "application/x-ndjson")
    environ = {"ELA_BUCKET_URL": bucket.url, "ELA_ENV": "dev"}
    result = CliRunner().invoke(main, ["bucket", "check"], env=environ)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        "strava/landing/b_strava_activities.jsonl:1: points[]: array of arrays: BigQuery has "
        "no ARRAY<ARRAY<...>>",
        "strava/landing/b_strava_activities.jsonl:2: id: mixed types: STRING here, INTEGER on "
        "line 1; a column has one type",
        "strava/landing/b_strava_activities.jsonl:2: 9lives: column name: '9lives' is not "
        "letters, digits and underscores starting with a letter or underscore",
        f"{bucket.url}: checked 2 landing objects; 3 problems",
    ]
    ok = CliRunner().invoke(main, ["bucket", "check", "garmin/"], env=environ)
    assert ok.exit_code == 0 and ok.output.endswith("BigQuery can load them all\n")


# -- buckets holding the names landed before ---------------------------------------------------


def legacy_name(name: str) -> str:
    """The name this product landed under before: ``..._{service}_{data_type}_{run8}.jsonl``."""
    found = NAME.match(name)
    assert found, name
    stamp = name.rsplit("/", 1)[1][:16]
    service, data_type = found["service"], found["data_type"]
    return f"{service}/landing/{stamp}_{service}_{data_type}_{found['run8']}.jsonl"


def as_landed_before(bucket: LocalBucket, service: str, job: str) -> list[str]:
    """Rename the job's landing objects (and their manifests' entries) to the old names."""
    renamed = []
    for info in list(bucket.list(naming.manifests_prefix(service, job))):
        manifest = get_json(bucket, info.name)
        for obj in manifest["objects"]:
            old = legacy_name(obj["name"])
            bucket.put_bytes(old, bucket.get_bytes(obj["name"]) or b"", "application/x-ndjson")
            bucket.delete(obj["name"])
            obj["name"] = old
            renamed.append(old)
        put_json(bucket, info.name, manifest)
    return renamed


def test_status_retention_and_backfill_keep_working_on_the_names_landed_before(
    emulators: dict[str, Any], tmp_path: Path
) -> None:
    garmin: GarminEmulator = emulators["garmin"]
    token_dir = tmp_path / "tokens"
    garmin.prepare_tokens(TokenStore(token_dir))
    environ = garmin.environ() | {"ELA_TOKEN_DIR": str(token_dir)}
    bucket = LocalBucket(tmp_path / "bucket")
    last = garmin.last_day - timedelta(days=2)
    plan = bf.plan(CONFIG, "garmin_heart_rate", last - timedelta(days=44), last, chunk_days=15)
    runner = bf.inline_runner(CONFIG, plan, bucket=bucket, environ=environ)
    first = [runner(chunk, 0) for chunk in plan.chunks[:2]]  # two chunks, then an upgrade
    old = as_landed_before(bucket, "garmin", "garmin_heart_rate")
    legacy = re.compile(r"^garmin/landing/\d{4}(_\d{2}){4}_garmin_heart_rate_[0-9a-f]{8}\.jsonl$")
    assert len(old) == 2 and all(legacy.match(name) for name in old), old
    put_json(
        bucket,
        naming.error("garmin", "garmin_heart_rate", "old-failure", SCHEDULED - timedelta(days=30)),
        {"job": "garmin_heart_rate", "run_id": "old-failure"},
    )
    garmin.reset_calls()

    # Backfill resumes: the committed chunks are known by their manifests, not their names.
    results = [runner(chunk, 0) for chunk in plan.chunks]
    assert [r["outcome"] for r in results] == ["already_committed"] * 2 + ["succeeded"]
    assert garmin.calls_to("dailyHeartRate") == 15  # the third chunk only
    names = sorted(o.name for o in bucket.list("garmin/landing/"))
    assert [n for n in names if n in old] == sorted(old)  # the old objects stay as they were
    [new] = [n for n in names if n not in old]
    assert NAME.match(new) and new.endswith("_garmin_heart_rate.jsonl")
    assert first[0]["objects"][0]["name"] not in names  # renamed, as before the upgrade

    # A scheduled run lands beside them; status reads manifests, whatever the objects' names.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    scheduled = run_job(
        CONFIG, "garmin_heart_rate", run_id=str(uuid.uuid4()), scheduled_at=now,
        bucket=bucket, environ=environ,
    )  # fmt: skip
    report = {job.job: job for job in status.collect(CONFIG, bucket, now=now).jobs}
    last_success = report["garmin_heart_rate"].last_success
    assert last_success is not None and last_success["run_id"] == scheduled["run_id"]
    assert report["garmin_heart_rate"].freshness.state == "fresh"
    names = sorted(o.name for o in bucket.list("garmin/landing/"))
    assert len(names) == 4 and [n for n in names if n in old] == sorted(old)

    # Retention deletes the old error, and no landing object of either name.
    deleted = purge_errors(bucket, CONFIG)
    assert deleted and all("/errors/" in name for name in deleted)
    assert sorted(o.name for o in bucket.list("garmin/landing/")) == names
