"""Error objects expire after the env's retention: a GCS lifecycle rule and a purge task."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ela import config as config_module
from ela.retention import lifecycle_rule, purge_errors
from ela.sandbox.processes import REPO, base_environ
from ela.sinks import GCSBucket, LocalBucket, put_json
from tests.conftest import WorkerFactory

DEV = config_module.load(REPO / "ingestion-config-dev.yaml")
PRD = config_module.load(REPO / "ingestion-config-prd.yaml")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def seed_errors(bucket: LocalBucket | GCSBucket) -> None:
    for day in ("2026-11-01", "2026-11-10", "2026-11-17", "2026-11-18", "2026-11-24"):
        for service in ("spotify", "garmin"):
            put_json(bucket, f"{service}/errors/{day}/{service}_job_run-{day}.json", {"day": day})
    put_json(bucket, "spotify/_runs/spotify_job/old-run.json", {"kept": True})


def names(bucket: LocalBucket | GCSBucket, prefix: str = "") -> set[str]:
    return {o.name for o in bucket.list(prefix)}


@pytest.mark.parametrize(("config", "kept_from"), [(DEV, "2026-11-18"), (PRD, "2026-11-17")])
def test_purge_keeps_exactly_the_retention_window(
    tmp_path: Path, config: config_module.IngestionConfig, kept_from: str
) -> None:
    bucket = LocalBucket(tmp_path / "b")
    seed_errors(bucket)
    deleted = purge_errors(bucket, config, now=NOW)
    left = names(bucket, "spotify/errors/") | names(bucket, "garmin/errors/")
    assert all(n.split("/")[2] >= kept_from for n in left)
    assert all(n.split("/")[2] < kept_from for n in deleted)
    assert len(left) + len(deleted) == 10
    assert "spotify/_runs/spotify_job/old-run.json" in names(bucket)  # only errors expire


def test_purge_on_the_gcs_emulator(gcs_bucket: GCSBucket) -> None:
    seed_errors(gcs_bucket)
    deleted = purge_errors(gcs_bucket, DEV, now=NOW)
    for service in ("spotify", "garmin"):
        assert {n.split("/")[2] for n in names(gcs_bucket, f"{service}/errors/")} == {
            "2026-11-18",
            "2026-11-24",
        }, service
    # As on a local bucket (DEV keeps from 2026-11-18): only older errors were deleted, and
    # every seeded error is either left or deleted.
    left = names(gcs_bucket, "spotify/errors/") | names(gcs_bucket, "garmin/errors/")
    assert all(n.split("/")[2] >= "2026-11-18" for n in left)
    assert all(n.split("/")[2] < "2026-11-18" for n in deleted)
    assert len(left) + len(deleted) == 10
    assert "spotify/_runs/spotify_job/old-run.json" in names(gcs_bucket)  # only errors expire


def test_bucket_setup_applies_the_lifecycle_rule(
    storage_emulator: str, tmp_path: Path, redis_url: str
) -> None:
    bucket_name = "ela-dp-prd-lifecycle-test"
    environ = base_environ(
        redis_url,
        {
            "STORAGE_EMULATOR_HOST": storage_emulator,
            "ELA_BUCKET_URL": f"gs://{bucket_name}",
            "ELA_ENV": "prd",
        },
    )
    for _ in range(2):  # idempotent: the second run replaces our rule, does not add one
        result = subprocess.run(
            [sys.executable, "-m", "ela.cli", "bucket", "setup"],
            cwd=REPO,
            env=environ,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
    assert "lifecycle rule deletes */errors/ objects after 14 days" in result.stdout
    bucket = GCSBucket(bucket_name, {"STORAGE_EMULATOR_HOST": storage_emulator})
    bucket.bucket.reload()
    rules = [dict(r) for r in bucket.bucket.lifecycle_rules]
    assert rules == [lifecycle_rule(PRD)]
    assert rules[0]["condition"]["age"] == 14
    assert "strava/errors/" in rules[0]["condition"]["matchesPrefix"]


def test_purge_task_runs_on_a_worker(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    bucket = LocalBucket(tmp_path / "bucket")
    seed_errors(bucket)  # all in 2026-11: more than a week before any day this test runs on...
    put_json(bucket, f"todoist/errors/{datetime.now(UTC):%Y-%m-%d}/todoist_tasks_x.json", {})
    for obj in list(bucket.list("spotify/errors/")) + list(bucket.list("garmin/errors/")):
        old = obj.name.replace("/2026-11-", "/2020-11-")  # ...once moved back to 2020
        bucket.put_bytes(old, bucket.get_bytes(obj.name) or b"", "application/json")
        bucket.delete(obj.name)
    worker = worker_factory()
    result = worker.call("tasks.purge_errors")
    assert result == {"deleted": 10, "retention_days": 7}
    assert names(bucket, "todoist/errors/") and not names(bucket, "spotify/errors/")
    assert json.loads(bucket.get_bytes("spotify/_runs/spotify_job/old-run.json") or b"")
