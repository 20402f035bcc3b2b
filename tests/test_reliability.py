"""Reliability under the faults a deployment meets: killed workers, Redis trouble, time limits.

The crash suite SIGKILLs a real worker's pool process at named points of real runs
(``ela/faults.py``) and checks, after Celery redelivers the message (acks_late +
reject_on_worker_lost), that every run's landing object exists exactly once, holds exactly the
records an uncrashed run of the same window lands, and that the cursor equals what the
manifest committed.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from beat_schedules.scheduler import RENEW_EVERY, LeaderLock
from ela import config as config_module
from ela import faults, naming
from ela.emulators.registry import emulator_for
from ela.emulators.server import Emulator, Fault
from ela.emulators.strava import StravaEmulator
from ela.emulators.todoist import TodoistEmulator
from ela.errors import PayloadError, TimeLimitError
from ela.pipeline import run_job
from ela.sinks import LocalBucket
from ela.state import JobState, read_cursor, read_state
from ela.tokens import TokenStore
from tests.conftest import WorkerFactory, read_jsonl
from tests.helpers import (
    REPO,
    CeleryProcess,
    PrivateRedis,
    client_app,
    todoist_only,
    wait_for,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
# At least one job of every provider, incremental and snapshot alike.
CRASH_JOBS = [
    "todoist_tasks",
    "todoist_projects",
    "spotify_recently_played",
    "spotify_saved_tracks",
    "strava_activities",
    "garmin_sleep",
]


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every provider's emulator, and the environment + token store that reach them."""
    tokens = tmp_path_factory.mktemp("tokens")
    environ: dict[str, str] = {"ELA_TOKEN_DIR": str(tokens)}
    running: dict[str, Emulator] = {}
    with contextlib.ExitStack() as stack:
        for service in ("spotify", "strava", "garmin", "todoist"):
            emulator = emulator_for(service)
            assert emulator is not None, f"no {service} emulator"
            stack.enter_context(emulator)
            emulator.prepare_tokens(TokenStore(tokens))
            environ.update(emulator.environ())
            running[service] = emulator
        yield {"environ": environ, "emulators": running}


def reference_records(job: str, scheduled_at: datetime, environ: dict[str, str], tmp: Path) -> list:  # type: ignore[type-arg]
    """What an uncrashed run of ``job`` for the same scheduled time lands, from a fresh bucket."""
    bucket = LocalBucket(tmp / f"reference-{job}-{uuid.uuid4().hex[:6]}")
    manifest = run_job(
        CONFIG,
        job,
        run_id=str(uuid.uuid4()),
        scheduled_at=scheduled_at,
        bucket=bucket,
        environ=environ,
    )
    return [r for o in manifest["objects"] for r in read_jsonl(bucket.get_bytes(o["name"]))]


@pytest.mark.parametrize("point", faults.POINTS)
def test_killed_runs_land_exactly_once(
    point: str, worker_factory: WorkerFactory, emulators: dict[str, Any], tmp_path: Path
) -> None:
    fault_dir = tmp_path / "faults"
    fault_dir.mkdir()
    bucket = LocalBucket(tmp_path / "bucket")
    worker = worker_factory(
        extra_env={
            **emulators["environ"],
            "ELA_FAULT_POINT": point,
            "ELA_FAULT_DIR": str(fault_dir),
            "ELA_BUCKET_URL": bucket.url,
        },
        concurrency=1,
    )
    for job in CRASH_JOBS:
        run_id = worker.send(
            f"tasks.{CONFIG.jobs[job].service}.{CONFIG.jobs[job].data_type}", job=job
        ).id
        service = CONFIG.jobs[job].service
        manifest_name = naming.manifest(service, job, run_id)

        def committed(name: str = manifest_name, run_id: str = run_id) -> Any:
            data = bucket.get_bytes(name)
            # after_manifest: wait for the redelivery to re-apply the cursor too.
            if data and (point != "after_manifest" or f"[{run_id}] succeeded" in worker.log()):
                return json.loads(data)
            return None

        manifest = wait_for(committed, 90, f"{job}'s manifest after a crash at {point}", 0.2)
        assert (fault_dir / f"crashed-{point}-{job}").exists(), "the crash did not happen"

        # Exactly one landing object for this run, the one the manifest names, intact.
        run8 = naming.run8(run_id)
        landed = [o for o in bucket.list(f"{service}/landing/") if f"_{run8}_{service}_" in o.name]
        assert [o.name for o in landed] == [o["name"] for o in manifest["objects"]], job
        records = [r for o in manifest["objects"] for r in read_jsonl(bucket.get_bytes(o["name"]))]
        assert len(records) == manifest["records"]
        # The same records an uncrashed run of the same window lands: none missing, none twice.
        scheduled = datetime.fromisoformat(manifest["scheduled_at"])
        assert records == reference_records(job, scheduled, emulators["environ"], tmp_path), job
        # The state is exactly what the manifest committed (cursor, landed keys, complete
        # days), never past it; none for a job that keeps none.
        recorded = manifest.get("state_update") or {}
        assert read_state(bucket, service, job) == JobState(
            manifest["cursor_after"],
            recorded.get("landed", {}),
            recorded.get("complete_through"),
        ), job
    # Every job was killed once at this point and redelivered.
    assert worker.log().count("WorkerLostError") + worker.log().count("signal 9") >= len(CRASH_JOBS)


# -- one beat per environment ------------------------------------------------------------------


def test_leader_lock_is_exclusive_and_expires(redis_client: Any, redis_prefix: str) -> None:

    key = f"{redis_prefix}ela:dev:beat"
    first = LeaderLock(redis_client, key, ttl=0.5)
    second = LeaderLock(redis_client, key, ttl=0.5)
    assert first.hold() and first.hold()  # takes, then renews
    assert not second.hold()
    wait_for(second.hold, 3, "the lock to expire and pass to the standby")
    assert not first.hold()  # the old leader cannot renew what it lost
    first.release()  # nor release it
    assert redis_client.get(key) == second.token.encode()
    second.release()
    assert first.hold()


def test_two_beats_send_each_tick_once(worker_factory: WorkerFactory, tmp_path: Path) -> None:

    with TodoistEmulator(projects=5, tasks=5) as todoist:
        config = todoist_only(tmp_path / "c.yaml", schedules={"todoist_projects": "* * * * *"})
        worker = worker_factory(extra_env=todoist.environ(), config=config)
        beats = [
            CeleryProcess(
                ["beat", "-l", "info", "-s", str(tmp_path / f"beat-{i}")],
                worker.environ,
                tmp_path / f"beat-{i}.log",
            )
            for i in range(2)
        ]
        bucket = LocalBucket(tmp_path / "bucket")
        try:
            wait_for(lambda: list(bucket.list("todoist/_runs/")), 95, "the first tick", 1)
            # Give a second sender every chance to show up before counting.

            time.sleep(5)
        finally:
            for beat in beats:
                beat.stop()
    logs = [beat.log() for beat in beats]
    sends = sum(log.count("Sending due task todoist_projects") for log in logs)
    assert sends == 1, logs
    assert sum("standing by" in log for log in logs) == 1
    assert len(list(bucket.list("todoist/landing/"))) == 1


# -- time limits -------------------------------------------------------------------------------


def test_a_run_over_its_time_limit_commits_nothing_and_the_next_resumes(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:

    bucket = LocalBucket(tmp_path / "bucket")
    with StravaEmulator(activities=450) as strava:
        worker = worker_factory(extra_env=strava.environ())
        first = worker.call("tasks.strava.activities", timeout=60)
        cursor = read_cursor(bucket, "strava", "strava_activities")
        assert cursor == first["cursor_after"] and first["records"] == 450
        new = strava.add_activities(250)  # two pages' worth

        # Every page now takes 1.5 s; the soft limit (Celery's, per call) is 2 s.
        strava.inject(Fault(status=0, delay=1.5, path="/athlete/activities", times=None))
        slow = worker.client.send_task(
            "tasks.strava.activities", kwargs={"job": "strava_activities"}, soft_time_limit=2
        )
        with pytest.raises(TimeLimitError, match="exceeded the environment's time limit"):
            slow.get(timeout=60)
        strava.clear_faults()
        errors = list(bucket.list("strava/errors/"))
        assert len(errors) == 1 and slow.id in errors[0].name
        assert json.loads(bucket.get_bytes(errors[0].name) or b"")["kind"] == "time_limit"
        assert bucket.get_bytes(naming.manifest("strava", "strava_activities", slow.id)) is None
        assert not [o for o in bucket.list("strava/landing/") if naming.run8(slow.id) in o.name]
        assert read_cursor(bucket, "strava", "strava_activities") == cursor

        resumed = worker.call("tasks.strava.activities", timeout=60)
    assert resumed["cursor_before"] == cursor
    landed = read_jsonl(bucket.get_bytes(resumed["objects"][0]["name"]))
    assert [a["id"] for a in landed] == [a["id"] for a in new]


# -- Redis faults ------------------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Any]:

    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


def test_redis_restart_mid_run_worker_and_beat_reconnect(
    private_redis: Any, worker_factory: WorkerFactory, tmp_path: Path
) -> None:

    bucket = LocalBucket(tmp_path / "bucket")
    with TodoistEmulator(projects=5, tasks=700) as todoist:
        config = todoist_only(tmp_path / "c.yaml", schedules={"todoist_projects": "* * * * *"})
        env = {**todoist.environ(), "REDIS_URL": private_redis.url}
        worker = worker_factory(extra_env=env, config=config)
        beat = CeleryProcess(
            ["beat", "-l", "info", "-s", str(tmp_path / "beat")],
            worker.environ,
            tmp_path / "beat.log",
        )
        try:
            # Beat must be up and connected before Redis goes away, or there is nothing to
            # reconnect: a beat still starting would meet the outage on its first tick.
            beat.wait_log("beat: leading this environment", timeout=30)
            # A 4-page run at 1 s a page; Redis goes away in the middle of it, for longer than
            # beat's longest sleep between lock renewals, so beat meets the outage too.
            todoist.inject(Fault(status=0, delay=1.0, path="/tasks", times=None))
            running = worker.send("tasks.todoist.tasks")
            wait_for(lambda: todoist.calls_to("/tasks") >= 1, 30, "the run to start")
            private_redis.restart(down_for=RENEW_EVERY + 2)
            back = datetime.now(UTC)  # Redis is answering again from here on
            manifest = naming.manifest("todoist", "todoist_tasks", running.id)
            wait_for(lambda: bucket.get_bytes(manifest), 60, "the interrupted run to commit")
            todoist.clear_faults()
            committed = json.loads(bucket.get_bytes(manifest) or b"")
            assert committed["records"] == 700
            # The worker reconnected: new work, sent by a fresh producer, runs and lands.

            fresh = client_app(worker.environ)
            after = fresh.send_task("tasks.todoist.projects", kwargs={"job": "todoist_projects"})
            fresh.close()
            projects = naming.manifest("todoist", "todoist_projects", after.id)
            wait_for(lambda: bucket.get_bytes(projects), 60, "a run sent after the restart")
            # Beat reconnected: a tick it sent after the restart lands. scheduled_at is the
            # minute the message was stamped, just before it was sent, so one later than `back`
            # was sent after Redis came back (a tick stamped in back's minute may predate the
            # restart). The run sent by hand above is no tick: leave it out.

            def scheduled_at(name: str) -> datetime:
                return datetime.fromisoformat(
                    json.loads(bucket.get_bytes(name) or b"")["scheduled_at"]
                )

            def ticked_after_restart() -> bool:
                return any(
                    scheduled_at(o.name) > back
                    for o in bucket.list("todoist/_runs/todoist_projects/")
                    if o.name != projects
                )

            wait_for(ticked_after_restart, 95, "a beat tick after the restart", 1)
        finally:
            beat.stop()
    log = worker.log()
    assert "Connection to broker lost" in log and "Unrecoverable error" not in log


def test_flushall_loses_no_cursor_token_or_manifest(
    private_redis: Any, worker_factory: WorkerFactory, tmp_path: Path
) -> None:

    bucket = LocalBucket(tmp_path / "bucket")
    with StravaEmulator(activities=120) as strava:
        worker = worker_factory(extra_env={**strava.environ(), "REDIS_URL": private_redis.url})
        first = worker.call("tasks.strava.activities", timeout=60)
        tokens = (tmp_path / "tokens" / "strava.json").read_text()
        manifests = {o.name for o in bucket.list("strava/_runs/")}

        redis.Redis.from_url(private_redis.url).flushall()

        new = strava.add_activities(3)
        second = worker.call("tasks.strava.activities", timeout=60)
    assert second["cursor_before"] == first["cursor_after"]  # the cursor survived
    assert [a["id"] for a in read_jsonl(bucket.get_bytes(second["objects"][0]["name"]))] == [
        a["id"] for a in new
    ]
    assert manifests <= {o.name for o in bucket.list("strava/_runs/")}
    assert strava.refreshes == 1  # the stored token was reused, not re-bootstrapped
    assert (tmp_path / "tokens" / "strava.json").read_text() == tokens


# -- provider faults ---------------------------------------------------------------------------

DATA_PATHS = {
    "spotify": "/v1/me/",
    "strava": "/api/v3/",
    "garmin": "-service/",
    "todoist": "/api/v1/",
}


def every_fifth_call_fails(emulator: Emulator, path: str, served: list[tuple[str, str]]) -> None:
    """Fail one data call in five, cycling 429 (Retry-After 3 s), 503 and a timeout."""

    cycle = [
        Fault(status=429, retry_after=3),
        Fault(status=503),
        Fault(status=0, delay=1.5),  # longer than ELA_HTTP_TIMEOUT=1
    ]
    count = {"calls": 0}
    lock = emulator.lock

    def take_fault(request_path: str) -> Fault | None:
        if path not in request_path:
            return None
        with lock:
            count["calls"] += 1
            if count["calls"] % 5:
                return None
            fault = cycle[(count["calls"] // 5 - 1) % 3]
            served.append((emulator.name, str(fault.status or "timeout")))
            return fault

    emulator._take_fault = take_fault  # type: ignore[method-assign]


def test_every_job_under_20_percent_provider_faults(
    emulators: dict[str, Any], worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    """429 (Retry-After 3 s), 503 and timeouts on a fifth of all data calls: every job ends
    either committed within the env's retry budget or failed with its error object, and no
    retry of a 429 comes sooner than its Retry-After."""

    served: list[tuple[str, str]] = []
    for service, emulator in emulators["emulators"].items():
        emulator.reset_calls()  # the emulators are shared with the tests before this one
        every_fifth_call_fails(emulator, DATA_PATHS[service], served)
    bucket = LocalBucket(tmp_path / "bucket")
    config = write_config(tmp_path / "c.yaml", "dev", retry_backoff_seconds=1)
    worker = worker_factory(
        extra_env={**emulators["environ"], "ELA_HTTP_TIMEOUT": "1", "ELA_BUCKET_URL": bucket.url},
        config=config,
        concurrency=3,
    )
    try:
        results = {name: worker.send(job.task, job=name) for name, job in CONFIG.jobs.items()}
        outcomes: dict[str, str] = {}
        for name, result in results.items():
            try:
                outcomes[name] = result.get(timeout=120)["outcome"]
            except Exception as exc:  # the run's own classified failure
                outcomes[name] = type(exc).__name__
    finally:
        for emulator in emulators["emulators"].values():
            del emulator._take_fault  # back to the class's own

    # Exactly a fifth of each provider's data calls failed, all three classes among them.
    expected = sum(e.calls_to(DATA_PATHS[s]) // 5 for s, e in emulators["emulators"].items())
    assert len(served) == expected >= 3
    assert {kind for _, kind in served} == {"429", "503", "timeout"}
    for name, result in results.items():
        service = CONFIG.jobs[name].service
        manifest = bucket.get_bytes(naming.manifest(service, name, result.id))
        errors = [o for o in bucket.list(f"{service}/errors/") if result.id in o.name]
        if outcomes[name] == "succeeded":
            assert manifest is not None and not errors, name
        else:
            # Only retriable faults were injected, so a failure is a spent retry budget.
            assert outcomes[name] == "RetriableError", (name, outcomes[name])
            assert manifest is None and len(errors) == 1, name
            body = json.loads(bucket.get_bytes(errors[0].name) or b"")
            assert body["kind"] == "retriable" and body["attempt"] == 2, body
    log = worker.log()
    retries = [line for line in log.splitlines() if " retry: Retry in " in line]
    assert retries, "no fault was retried"
    rate_limited = 0
    for line in retries:
        countdown, _, error = line.split(" retry: Retry in ")[1].partition("s: ")
        if "429" in error:
            rate_limited += 1
            assert float(countdown) >= 3, line
    assert rate_limited, "no 429 was retried, so Retry-After was never checked"
    assert sum(o == "succeeded" for o in outcomes.values()) >= 10, outcomes


# -- malformed provider payloads ---------------------------------------------------------------


@pytest.mark.parametrize("job", list(CONFIG.jobs))
def test_a_malformed_payload_fails_the_run_and_commits_nothing(
    job: str, emulators: dict[str, Any], tmp_path: Path
) -> None:

    service = CONFIG.jobs[job].service
    emulator = emulators["emulators"][service]
    bucket = LocalBucket(tmp_path / "bucket")
    before = read_cursor(bucket, service, job)
    run_id = str(uuid.uuid4())
    emulator.inject(Fault(malformed=True, path=DATA_PATHS[service], times=1))
    try:
        with pytest.raises(PayloadError) as caught:
            run_job(
                CONFIG,
                job,
                run_id=run_id,
                scheduled_at=datetime.now(UTC),
                bucket=bucket,
                environ=emulators["environ"],
            )
    finally:
        emulator.clear_faults()
    message = str(caught.value)
    assert message.startswith(f"{service}:") and "\n" not in message
    [error] = [o for o in bucket.list(f"{service}/errors/")]
    body = json.loads(bucket.get_bytes(error.name) or b"")
    assert (body["job"], body["run_id"], body["kind"]) == (job, run_id, "payload")
    assert body["message"] == message
    assert list(bucket.list(f"{service}/landing/")) == []
    assert list(bucket.list(f"{service}/_runs/")) == []
    assert read_cursor(bucket, service, job) == before
