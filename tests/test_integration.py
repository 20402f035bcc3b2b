"""The spine through real processes: beat → Redis → worker → bucket, with Todoist.

Every test here runs real ``celery`` worker (and beat) subprocesses against the real Redis on
loopback (our own database), the Todoist emulator in this process, and a local-folder or
GCS-emulator bucket.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ela.errors import ReauthError
from ela.sandbox.emulators.server import Fault
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO, wait_for
from ela.sinks import Bucket, LocalBucket
from tests.conftest import WorkerFactory, read_jsonl
from tests.helpers import Beat, todoist_only

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def todoist() -> Iterator[TodoistEmulator]:
    with TodoistEmulator(projects=12, tasks=260) as emulator:
        yield emulator


def manifests(bucket: Bucket, service: str = "todoist") -> list[dict[str, Any]]:
    return [json.loads(bucket.get_bytes(o.name) or b"{}") for o in bucket.list(f"{service}/_runs/")]


def landing_names(bucket: Bucket) -> list[str]:
    return sorted(o.name for o in bucket.list("todoist/landing/"))


def test_beat_tick_lands_in_the_gcs_bucket_with_its_manifest(
    worker_factory: WorkerFactory,
    todoist: TodoistEmulator,
    gcs_bucket: Bucket,
    storage_emulator: str,
    tmp_path: Path,
) -> None:
    config = todoist_only(tmp_path / "c.yaml", schedules={"todoist_projects": "* * * * *"})
    env = {
        **todoist.environ(),
        "STORAGE_EMULATOR_HOST": storage_emulator,
        "ELA_BUCKET_URL": gcs_bucket.url,
    }
    worker = worker_factory(extra_env=env, config=config)
    beat = Beat(worker.environ, tmp_path / "beat.log")
    try:
        found = wait_for(lambda: manifests(gcs_bucket), 70, "a beat-driven run's manifest", 0.5)
    finally:
        beat.stop()
    [manifest] = found[:1]
    assert manifest["job"] == "todoist_projects" and manifest["env"] == "dev"
    assert "Sending due task todoist_projects (tasks.todoist.projects)" in beat.log()
    # The landing object is named for the tick (a whole minute) and holds the emulator's data.
    assert manifest["scheduled_at"].endswith(":00+00:00")
    stamp = manifest["scheduled_at"][:16].replace("-", "_").replace("T", "_").replace(":", "_")
    [obj] = manifest["objects"]
    run8 = manifest["run_id"].replace("-", "")[:8]
    assert obj["name"] == f"todoist/landing/{stamp}_{run8}_todoist_projects.jsonl"
    assert read_jsonl(gcs_bucket.get_bytes(obj["name"])) == todoist.projects


def test_celery_call_from_a_shell_lands_data(
    worker_factory: WorkerFactory, todoist: TodoistEmulator, tmp_path: Path
) -> None:
    worker = worker_factory(extra_env=todoist.environ(), config=todoist_only(tmp_path / "c.yaml"))
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "call", "tasks.todoist.projects"],
        cwd=REPO,
        env=worker.environ,
        capture_output=True,
        text=True,
        check=True,
    )
    task_id = result.stdout.strip()
    bucket = LocalBucket(tmp_path / "bucket")
    name = f"todoist/_runs/todoist_projects/{task_id}.json"
    wait_for(lambda: bucket.get_bytes(name), 30, name)
    manifest = json.loads(bucket.get_bytes(name) or b"")
    assert read_jsonl(bucket.get_bytes(manifest["objects"][0]["name"])) == todoist.projects


def test_ela_run_group_waits_and_lands_every_member(
    worker_factory: WorkerFactory, todoist: TodoistEmulator, tmp_path: Path
) -> None:
    worker = worker_factory(extra_env=todoist.environ(), config=todoist_only(tmp_path / "c.yaml"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ela.cli",
            "run",
            "productivity_all",
            "--wait",
            "--json",
            "--timeout",
            "60",
        ],
        cwd=REPO,
        env=worker.environ,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    outcomes = {o["job"]: o for o in json.loads(result.stdout)}
    assert set(outcomes) == {"todoist_tasks", "todoist_projects"}
    assert all(o["outcome"] == "succeeded" for o in outcomes.values())
    bucket = LocalBucket(tmp_path / "bucket")
    assert outcomes["todoist_tasks"]["records"] == 260
    by_job = {m["job"]: m for m in manifests(bucket)}
    assert (
        read_jsonl(bucket.get_bytes(by_job["todoist_tasks"]["objects"][0]["name"])) == todoist.tasks
    )


def test_run_group_task_fans_out(
    worker_factory: WorkerFactory, todoist: TodoistEmulator, tmp_path: Path
) -> None:
    worker = worker_factory(extra_env=todoist.environ(), config=todoist_only(tmp_path / "c.yaml"))
    sent = worker.call("tasks.run_group", group="productivity_all")
    assert [s["job"] for s in sent] == ["todoist_tasks", "todoist_projects"]
    for s in sent:
        assert worker.client.AsyncResult(s["task_id"]).get(timeout=30)["outcome"] == "succeeded"


def test_dev_and_prd_workers_never_take_each_others_tasks(
    worker_factory: WorkerFactory, todoist: TodoistEmulator, tmp_path: Path
) -> None:
    dev = worker_factory(
        extra_env={**todoist.environ(), "ELA_BUCKET_URL": (tmp_path / "dev").as_uri()},
        config=todoist_only(tmp_path / "dev.yaml", "dev"),
        env="dev",
    )
    prd = worker_factory(
        extra_env={**todoist.environ(), "ELA_BUCKET_URL": (tmp_path / "prd").as_uri()},
        config=todoist_only(tmp_path / "prd.yaml", "prd"),
        env="prd",
    )
    dev_ids = [dev.send("tasks.todoist.projects").id for _ in range(6)]
    prd_ids = [prd.send("tasks.todoist.projects").id for _ in range(6)]
    for task_id in dev_ids:
        assert dev.client.AsyncResult(task_id).get(timeout=30)["env"] == "dev"
    for task_id in prd_ids:
        assert prd.client.AsyncResult(task_id).get(timeout=30)["env"] == "prd"
    assert {m["run_id"] for m in manifests(LocalBucket(tmp_path / "dev"))} == set(dev_ids)
    assert {m["run_id"] for m in manifests(LocalBucket(tmp_path / "prd"))} == set(prd_ids)
    assert not any(task_id in dev.log() for task_id in prd_ids)
    assert not any(task_id in prd.log() for task_id in dev_ids)
    assert "dev.todoist" in dev.log() and "prd.todoist" not in dev.log()


def events_seen(app: Any, seconds: float) -> list[dict[str, Any]]:
    """The Celery events ``app`` receives over ``seconds`` (what Flower would show)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    with app.connection() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": seen.append})
        stop = threading.Timer(seconds, lambda: setattr(receiver, "should_stop", True))
        stop.start()
        try:
            # capture() gives up after a second without an event (a quiet moment between
            # heartbeats): listen again until the deadline.
            while time.monotonic() < deadline and not receiver.should_stop:
                with contextlib.suppress(TimeoutError):
                    receiver.capture(limit=None, timeout=1, wakeup=False)
        finally:
            stop.cancel()
    return seen


def test_dev_and_prd_on_one_redis_see_only_their_own_workers(
    worker_factory: WorkerFactory, todoist: TodoistEmulator, tmp_path: Path
) -> None:
    """Same Redis, same database, same ELA_REDIS_PREFIX: each env's remote control (`inspect`,
    Flower's worker pages and controls) and events reach only its own workers."""
    workers = {
        env: worker_factory(
            extra_env={**todoist.environ(), "ELA_BUCKET_URL": (tmp_path / env).as_uri()},
            config=todoist_only(tmp_path / f"{env}.yaml", env),
            env=env,
        )
        for env in ("dev", "prd")
    }
    nodes = {
        env: set(w.client.control.inspect(timeout=3).ping() or {}) for env, w in workers.items()
    }
    assert len(nodes["dev"]) == len(nodes["prd"]) == 1 and not nodes["dev"] & nodes["prd"]
    ran: dict[str, str] = {}

    def run_both() -> None:
        time.sleep(1)  # the receiver listens first
        for env, worker in workers.items():
            ran[env] = worker.call("tasks.todoist.projects")["run_id"]

    runs = threading.Thread(target=run_both)
    runs.start()
    events = events_seen(workers["dev"].client, 8)
    runs.join()
    tasks = {e.get("uuid") for e in events if e.get("type", "").startswith("task-")}
    assert ran["dev"] in tasks and ran["prd"] not in tasks, (ran, tasks)
    hosts = {e.get("hostname") for e in events if e.get("hostname")}
    assert nodes["dev"] <= hosts and not hosts & nodes["prd"], hosts


def test_a_retried_run_rewrites_the_same_objects(
    worker_factory: WorkerFactory, todoist: TodoistEmulator, tmp_path: Path
) -> None:
    worker = worker_factory(extra_env=todoist.environ(), config=todoist_only(tmp_path / "c.yaml"))
    # Page 2 of the first attempt is rate-limited: attempt 0 fails mid-run, attempt 1 completes.
    todoist.inject(Fault(status=429, retry_after=1, path="/tasks", after=1))
    manifest = worker.call("tasks.todoist.tasks", timeout=60)
    assert manifest["attempt"] == 1
    bucket = LocalBucket(tmp_path / "bucket")
    run8 = manifest["run_id"].replace("-", "")[:8]
    assert [n.split("_")[5] for n in landing_names(bucket)] == [run8]
    assert read_jsonl(bucket.get_bytes(landing_names(bucket)[0])) == todoist.tasks
    assert list(bucket.list("todoist/errors/")) == []  # it recovered: no error object
    assert "Retry in" in worker.log()


def test_a_redelivered_run_is_not_duplicated(
    worker_factory: WorkerFactory, todoist: TodoistEmulator, tmp_path: Path
) -> None:
    """The same message delivered twice (as Redis does after a lost ack) lands once."""
    worker = worker_factory(extra_env=todoist.environ(), config=todoist_only(tmp_path / "c.yaml"))
    run_id = str(uuid.uuid4())
    first = worker.client.send_task("tasks.todoist.tasks", task_id=run_id).get(timeout=30)
    calls = todoist.calls_to("/tasks")
    worker.client.send_task("tasks.todoist.tasks", task_id=run_id)
    # Both deliveries share the id (and so the result key): wait for the second to finish.
    wait_for(lambda: worker.log().count(f"[{run_id}] succeeded") == 2, 30, "the redelivery")
    second = [line for line in worker.log().splitlines() if f"[{run_id}] succeeded" in line][1]
    assert first["outcome"] == "succeeded" and "'outcome': 'already_committed'" in second
    assert todoist.calls_to("/tasks") == calls
    assert len(landing_names(LocalBucket(tmp_path / "bucket"))) == 1


def test_revoked_token_fails_at_once_without_retries(
    worker_factory: WorkerFactory, todoist: TodoistEmulator, tmp_path: Path
) -> None:
    env = {**todoist.environ(), "TODOIST_API_TOKEN": "tok-revoked-51c2"}
    worker = worker_factory(extra_env=env, config=todoist_only(tmp_path / "c.yaml"))
    result = worker.send("tasks.todoist.projects")
    with pytest.raises(ReauthError, match="TODOIST_API_TOKEN is invalid or revoked"):
        result.get(timeout=30)
    assert todoist.calls_to("/projects") == 1  # no retry
    [error] = list(LocalBucket(tmp_path / "bucket").list("todoist/errors/"))
    body = json.loads(LocalBucket(tmp_path / "bucket").get_bytes(error.name) or b"")
    assert body["kind"] == "reauth" and body["run_id"] == result.id
    assert "Retry in" not in worker.log()
