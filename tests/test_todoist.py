"""Todoist end to end through todoist-api-python against the local Todoist emulator."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ela import config as config_module
from ela.errors import PayloadError, ReauthError, RetriableError
from ela.pipeline import Overrides, run_job
from ela.sandbox.emulators.server import Fault
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO
from ela.sinks import Bucket, LocalBucket
from tests.conftest import read_jsonl

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
WHEN = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


@pytest.fixture
def todoist() -> Iterator[TodoistEmulator]:
    with TodoistEmulator(projects=30, tasks=450) as emulator:
        yield emulator


def run(
    emulator: TodoistEmulator, bucket: Bucket, job: str, run_id: str | None = None, **env: str
) -> dict[str, Any]:
    return run_job(
        CONFIG,
        job,
        run_id=run_id or str(uuid.uuid4()),
        scheduled_at=WHEN,
        bucket=bucket,
        environ={**emulator.environ(), **env},
    )


def landed(bucket: Bucket, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for o in manifest["objects"] for r in read_jsonl(bucket.get_bytes(o["name"]))]


def test_tasks_land_unchanged_across_pages(
    todoist: TodoistEmulator, local_bucket: LocalBucket
) -> None:
    manifest = run(todoist, local_bucket, "todoist_tasks")
    assert landed(local_bucket, manifest) == todoist.tasks  # every field, in order
    assert manifest["records"] == 450
    assert manifest["api_calls"] == 3  # ⌈450 / 200⌉ pages
    assert todoist.calls_to("/tasks") == 3
    [obj] = manifest["objects"]
    run8 = manifest["run_id"].replace("-", "")[:8]
    assert obj["name"] == f"todoist/landing/2026_11_25_14_00_{run8}_todoist_tasks.jsonl"


def test_projects_land_on_gcs_emulator(todoist: TodoistEmulator, gcs_bucket: Bucket) -> None:
    manifest = run(todoist, gcs_bucket, "todoist_projects")
    assert landed(gcs_bucket, manifest) == todoist.projects
    names = {o.name for o in gcs_bucket.list("todoist/")}
    assert names == {
        manifest["objects"][0]["name"],
        f"todoist/_runs/todoist_projects/{manifest['run_id']}.json",
    }


def test_expired_token_fails_at_once_with_an_error_object(
    todoist: TodoistEmulator, local_bucket: LocalBucket
) -> None:
    run_id = str(uuid.uuid4())
    with pytest.raises(ReauthError, match="TODOIST_API_TOKEN is invalid or revoked"):
        run(todoist, local_bucket, "todoist_tasks", run_id, TODOIST_API_TOKEN="tok-9f3a77e1c0")
    [error] = list(local_bucket.list("todoist/errors/"))
    assert error.name == f"todoist/errors/{datetime.now(UTC):%Y-%m-%d}/todoist_tasks_{run_id}.json"
    assert "tok-9f3a77e1c0" not in (local_bucket.get_bytes(error.name) or b"").decode()
    assert list(local_bucket.list("todoist/_runs/")) == []
    assert list(local_bucket.list("todoist/landing/")) == []


def test_missing_token_names_the_variable(
    todoist: TodoistEmulator, local_bucket: LocalBucket
) -> None:
    with pytest.raises(ReauthError, match="TODOIST_API_TOKEN not set"):
        run(todoist, local_bucket, "todoist_tasks", TODOIST_API_TOKEN="")


@pytest.mark.parametrize(
    ("fault", "error", "retry_after"),
    [
        (Fault(status=429, retry_after=7, path="/tasks"), RetriableError, 7.0),
        (Fault(status=503, path="/tasks"), RetriableError, None),
        (Fault(status=500, path="/tasks"), RetriableError, None),
        (Fault(malformed=True, path="/tasks"), PayloadError, None),
    ],
    ids=["429", "503", "500", "malformed"],
)
def test_fault_classes(
    todoist: TodoistEmulator,
    local_bucket: LocalBucket,
    fault: Fault,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    # The fault hits the second page: the run had records in hand and must still commit nothing.
    todoist.inject(dataclasses.replace(fault, after=1))
    with pytest.raises(error) as caught:
        run(todoist, local_bucket, "todoist_tasks")
    if retry_after is not None:
        assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]
    assert list(local_bucket.list("todoist/landing/")) == []
    assert list(local_bucket.list("todoist/_runs/")) == []
    # A retriable failure on a non-final attempt leaves no error object; this was final.
    assert len(list(local_bucket.list("todoist/errors/"))) == 1


def test_timeout_is_retriable(todoist: TodoistEmulator, local_bucket: LocalBucket) -> None:
    todoist.inject(Fault(status=200, delay=2.0, path="/projects"))
    with pytest.raises(RetriableError, match="Timeout"):
        run(todoist, local_bucket, "todoist_projects", ELA_HTTP_TIMEOUT="0.5")


def test_same_run_id_is_idempotent(todoist: TodoistEmulator, local_bucket: LocalBucket) -> None:
    run_id = str(uuid.uuid4())
    first = run(todoist, local_bucket, "todoist_projects", run_id)
    calls = todoist.calls_to("/projects")
    again = run(todoist, local_bucket, "todoist_projects", run_id)
    assert again["outcome"] == "already_committed"
    assert again["objects"] == first["objects"]
    assert todoist.calls_to("/projects") == calls  # nothing fetched twice
    assert len(list(local_bucket.list("todoist/landing/"))) == 1


def test_dry_run_writes_nothing(todoist: TodoistEmulator, tmp_path: Path) -> None:
    bucket = LocalBucket(tmp_path / "b")
    result = run_job(
        CONFIG,
        "todoist_tasks",
        run_id=str(uuid.uuid4()),
        scheduled_at=WHEN,
        bucket=bucket,
        environ=todoist.environ(),
        overrides=Overrides(dry_run=True),
    )
    assert result["outcome"] == "dry_run" and result["records"] == 450
    assert list(bucket.list("")) == []


@pytest.mark.integration  # runs the `ela` command or a Python in a process
def test_inline_run_without_gcs_credentials_is_one_line(tmp_path: Path) -> None:
    """The default bucket is GCS: with no credentials anywhere, say so, don't trace back."""
    import subprocess
    import sys

    from ela.sandbox.processes import isolated_environ

    environ = {
        **isolated_environ(),
        "HOME": str(tmp_path),  # no ~/.config/gcloud application-default credentials
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "TODOIST_API_TOKEN": "unused",
    }
    result = subprocess.run(
        [sys.executable, "-m", "ela.cli", "run", "todoist_projects", "--inline"],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    [row] = [line for line in result.stdout.splitlines() if line.startswith("todoist_projects")]
    assert row.split()[1] == "failed"
    assert row.endswith(
        "gs://ela-dp-dev: no usable Google credentials; set GOOGLE_APPLICATION_CREDENTIALS "
        "to a service-account key file, or ELA_BUCKET_URL=file:///some/folder"
    )

    # A key path that names no file says so, with the path.
    missing = tmp_path / "keys" / "sa.json"
    result = subprocess.run(
        [sys.executable, "-m", "ela.cli", "run", "todoist_projects", "--inline"],
        cwd=REPO,
        env={**environ, "GOOGLE_APPLICATION_CREDENTIALS": str(missing)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert f"GOOGLE_APPLICATION_CREDENTIALS={missing}: no such file" in result.stdout
