"""The Jobs page's data (ela/ops/jobs_view.py), without Flower: the bucket cache, the history,
Run now's checks, what is in flight. The page itself, in a browser: tests/test_flower_jobs.py.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ela import config as config_module
from ela import naming
from ela.config import IngestionConfig
from ela.errors import InputError
from ela.ops import jobs_view as jv
from ela.ops import status
from ela.pipeline import result
from ela.run_input import GROUP_TASK
from ela.sandbox.processes import REPO
from ela.sinks import LocalBucket, put_json

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def config() -> IngestionConfig:
    return config_module.load(REPO / "ingestion-config-dev.yaml")


def put_run(
    bucket: LocalBucket,
    config: IngestionConfig,
    job: str,
    written: datetime,
    *,
    records: int = 5,
    failed: str | None = None,
) -> str:
    """A manifest (or, with ``failed`` = a kind, an error object) of one run of ``job``, its
    object's update time set to ``written`` (runs are ordered by it)."""
    spec = config.jobs[job]
    run_id = str(uuid.uuid4())
    scheduled = (written - timedelta(minutes=1)).isoformat()
    if failed:
        name = naming.error(spec.service, job, run_id, written)
        body: dict[str, Any] = {
            "job": job,
            "run_id": run_id,
            "kind": failed,
            "message": f"{failed} from the provider",
            "scheduled_at": scheduled,
            "failed_at": written.isoformat(),
            "where": ["todoist.py:12 in fetch"],
        }
    else:
        name = naming.manifest(spec.service, job, run_id)
        landing = naming.landing(spec.service, spec.data_type, written, run_id)
        body = {
            "job": job,
            "run_id": run_id,
            "scheduled_at": scheduled,
            "finished_at": written.isoformat(),
            "records": records,
            "objects": [{"name": landing, "records": records}] if records else [],
            "window": {"since": None, "until": None},
        }
    put_json(bucket, name, body)
    stamp = written.timestamp()
    os.utime(bucket.root / name, (stamp, stamp))
    return run_id


def test_second_load_reads_no_body_and_a_new_run_is_the_only_read(
    tmp_path: Path, config: IngestionConfig
) -> None:
    bucket = LocalBucket(tmp_path / "bucket")
    start = NOW - timedelta(days=3)
    for i in range(40):
        put_run(bucket, config, "todoist_projects", start + timedelta(minutes=i))
    for i in range(3):
        put_run(bucket, config, "todoist_tasks", start + timedelta(minutes=i), failed="reauth")
    board = jv.JobsBoard(config, bucket)

    first = board.build(NOW)
    # The 30 newest manifests of todoist_projects and todoist_tasks' 3 error objects; nothing
    # older (collect() reads only the newest manifests, within the same 30).
    assert first.reads == jv.HISTORY + 3
    assert board.build(NOW).reads == 0
    assert board.build(NOW).reads == 0

    new = put_run(bucket, config, "todoist_projects", NOW - timedelta(minutes=1), records=9)
    third = board.build(NOW)
    assert third.reads == 1
    projects = next(view for view in third.jobs if view.name == "todoist_projects")
    assert projects.runs[-1].run_id == new and projects.runs[-1].records == 9
    assert (projects.status.last_success or {})["run_id"] == new

    # A changed object (same name, new bytes and time) is read again; a deleted one is dropped.
    name = naming.manifest("todoist", "todoist_projects", new)
    put_json(bucket, name, {"job": "todoist_projects", "run_id": new, "records": 11})
    assert board.build(NOW).reads == 1
    bucket.delete(name)
    assert board.build(NOW).reads == 0
    assert name not in board.bucket.kept


def test_the_page_and_ela_status_agree(tmp_path: Path, config: IngestionConfig) -> None:
    bucket = LocalBucket(tmp_path / "bucket")
    put_run(bucket, config, "todoist_projects", NOW - timedelta(days=3))
    put_run(bucket, config, "todoist_tasks", NOW - timedelta(minutes=30))
    put_run(bucket, config, "todoist_tasks", NOW - timedelta(minutes=5), failed="payload")
    board = jv.JobsBoard(config, bucket).build(NOW)
    report = status.collect(config, bucket, now=NOW)
    assert [view.status.as_json() for view in board.jobs] == [j.as_json() for j in report.jobs]
    assert [view.name for view in board.jobs] == list(config.jobs)
    states = {view.name: view.status.freshness.state for view in board.jobs}
    assert states["todoist_projects"] == "stale"  # a daily job, 3 days behind
    assert states["spotify_saved_tracks"] == "never"


def test_history_is_the_last_30_runs_with_failures_marked_and_bars_by_records(
    tmp_path: Path, config: IngestionConfig
) -> None:
    bucket = LocalBucket(tmp_path / "bucket")
    start = NOW - timedelta(hours=2)
    ids = []
    for i in range(34):
        failed = "retriable" if i % 10 == 9 else None
        when = start + timedelta(minutes=i)
        ids.append(put_run(bucket, config, "todoist_tasks", when, records=i, failed=failed))
    view = next(
        v for v in jv.JobsBoard(config, bucket).build(NOW).jobs if v.name == "todoist_tasks"
    )
    assert [run.run_id for run in view.runs] == ids[-30:]
    assert [run.ok for run in view.runs] == [i % 10 != 9 for i in range(4, 34)]
    assert view.failures == 3
    bars = view.bars
    assert [bar.x for bar in bars] == [i * jv.BAR_STEP for i in range(30)]
    tallest = max(run.records or 0 for run in view.runs)  # 33, the newest success
    for bar in bars:
        if bar.run.ok:
            assert bar.height == max(2, round(jv.CHART_HEIGHT * (bar.run.records or 0) / tallest))
        else:
            assert bar.height == jv.CHART_HEIGHT and bar.run.kind == "retriable"


def test_a_short_history_is_drawn_from_the_right() -> None:
    runs = [
        jv.Run("j", str(i), True, NOW, NOW, 0, None, None, "o", ()) for i in range(3)
    ]  # three empty runs
    bars = jv.chart(runs)
    assert [bar.x for bar in bars] == [(jv.HISTORY - 3 + i) * jv.BAR_STEP for i in range(3)]
    assert {bar.height for bar in bars} == {2}


def test_run_record_is_the_manifest_else_the_error_object(
    tmp_path: Path, config: IngestionConfig
) -> None:
    bucket = LocalBucket(tmp_path / "bucket")
    ok = put_run(bucket, config, "todoist_projects", NOW, records=4)
    bad = put_run(bucket, config, "todoist_projects", NOW, failed="reauth")
    board = jv.JobsBoard(config, bucket)
    record = board.run("todoist_projects", ok)
    assert record is not None and record.ok and record.body["records"] == 4
    assert record.object.path == str(
        bucket.root.resolve() / naming.manifest("todoist", "todoist_projects", ok)
    )
    assert [link.name for link in record.landing] == [
        naming.landing("todoist", "projects", NOW, ok)
    ]
    failure = board.run("todoist_projects", bad)
    assert failure is not None and not failure.ok
    assert failure.body["kind"] == "reauth" and failure.body["where"] == ["todoist.py:12 in fetch"]
    assert board.run("todoist_projects", str(uuid.uuid4())) is None
    assert board.run("todoist_tasks", ok) is None  # another job's run


def test_object_links_name_gcs_objects_by_uri_and_console_page_and_local_ones_by_path() -> None:
    name = "garmin/_runs/garmin_sleep/x y.json"
    gcs = jv.object_link("gs://ela-dp-dev", name)
    assert gcs.uri == f"gs://ela-dp-dev/{name}"
    assert gcs.console == (
        "https://console.cloud.google.com/storage/browser/_details/ela-dp-dev/"
        "garmin/_runs/garmin_sleep/x%20y.json"
    )
    local = jv.object_link("file:///srv/bucket", name)
    assert (local.path, local.console) == (f"/srv/bucket/{name}", None)


@pytest.mark.parametrize(
    ("target", "form", "expected"),
    [
        ("todoist_projects", {}, ("tasks.todoist.projects", {"job": "todoist_projects"})),
        (
            "spotify_saved_tracks",
            {"limit": " 25 ", "since": "", "until": ""},
            ("tasks.spotify.saved_tracks", {"job": "spotify_saved_tracks", "limit": 25}),
        ),
        (
            "garmin_sleep",
            {"since": "2026-01-01", "until": "2026-01-31"},
            (
                "tasks.garmin.sleep",
                {
                    "job": "garmin_sleep",
                    "since": "2026-01-01T00:00:00+00:00",
                    "until": "2026-01-31T00:00:00+00:00",
                },
            ),
        ),
        ("daily_jobs", {}, (GROUP_TASK, {"group": "daily_jobs"})),
    ],
)
def test_run_now_sends_what_the_schema_accepts(
    config: IngestionConfig, target: str, form: dict[str, str], expected: Any
) -> None:
    assert jv.run_request(config, target, form) == expected


@pytest.mark.parametrize(
    ("target", "form", "message"),
    [
        ("spotify_saved_tracks", {"limit": "abc"}, "limit: expected a whole number, got 'abc'"),
        ("spotify_saved_tracks", {"limit": "1.5"}, "limit: expected a whole number, got '1.5'"),
        ("spotify_saved_tracks", {"limit": "-1"}, "limit: expected a whole number of at least 1"),
        ("spotify_top_tracks", {"limit": "51"}, "limit: 51 is above what the API returns"),
        ("todoist_tasks", {"limit": "10"}, "limit: does not apply to todoist_tasks"),
        ("todoist_tasks", {"since": "2026-01-01"}, "since: does not apply to todoist_tasks"),
        ("garmin_sleep", {"since": "yesterday"}, "since: 'yesterday' is not an ISO 8601 date"),
        ("garmin_sleep", {"since": "2026-02-01", "until": "2026-01-01"}, "since: 2026-02-01"),
        ("daily_jobs", {"limit": "5"}, "limit: does not apply"),
        ("daily_job", {}, "group: 'daily_job' is neither a group nor a job"),
        ("", {}, "group: required"),
    ],
)
def test_run_now_refuses_with_the_schemas_one_line(
    config: IngestionConfig, target: str, form: dict[str, str], message: str
) -> None:
    with pytest.raises(InputError) as refused:
        jv.run_request(config, target, form)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def task(state: str, name: str, kwargs: Any, *, retries: int = 0, at: float = 100.0) -> Any:
    return SimpleNamespace(
        uuid=str(uuid.uuid4()),
        name=name,
        state=state,
        kwargs=kwargs,
        retries=retries,
        eta="2026-03-10T12:05:00+00:00" if retries else None,
        timestamp=at,
    )


def test_in_flight_reads_flowers_task_states(config: IngestionConfig) -> None:
    tasks = [
        task("PENDING", "tasks.todoist.tasks", "{'job': 'todoist_tasks'}", at=1),
        task("STARTED", "tasks.todoist.projects", "{}", at=2),  # the job of a bare task call
        task("RETRY", "tasks.garmin.sleep", "{'job': 'garmin_sleep'}", at=3),
        task("RECEIVED", "tasks.garmin.sleep", "{'job': 'garmin_sleep'}", retries=1, at=4),
        # Celery cuts a long repr: the job still counts.
        task("RECEIVED", "tasks.strava.activities", "{'job': 'strava_activities', 'si...", at=5),
        task("RECEIVED", GROUP_TASK, "{'group': 'daily_jobs'}", at=6),
        task("SUCCESS", "tasks.todoist.tasks", "{'job': 'todoist_tasks'}", at=7),
        task("STARTED", "tasks.todoist.tasks", "{'job': 'todoist_projects'}", at=8),  # mismatch
        task("STARTED", "tasks.other.thing", "{}", at=9),
        task("STARTED", "tasks.todoist.tasks", "{'job': 'no_such_job'}", at=10),
    ]
    flights = jv.in_flight(tasks, config)
    states = {target: [f.state for f in found] for target, found in flights.items()}
    assert states == {
        "todoist_tasks": ["queued"],
        "todoist_projects": ["running"],
        "garmin_sleep": ["retry waiting", "retry waiting"],
        "strava_activities": ["queued"],
        "daily_jobs": ["queued"],
    }
    assert flights["garmin_sleep"][1].eta == datetime(2026, 3, 10, 12, 5, tzinfo=UTC)

    newest, changed, ended = jv.activity(tasks, config, after=5.5)
    assert (newest, changed, ended) == (7, {"daily_jobs", "todoist_tasks"}, True)
    assert jv.activity(tasks, config, after=6.5)[1:] == ({"todoist_tasks"}, True)
    assert jv.activity(tasks[:3], config, after=1.5) == (
        3,
        {"todoist_projects", "garmin_sleep"},
        False,
    )
    assert jv.activity(tasks, config, after=7) == (7, set(), False)


def test_the_task_result_starts_with_outcome_job_records_objects_api_calls() -> None:
    manifest = {
        "service": "todoist",
        "job": "todoist_tasks",
        "run_id": "x",
        "api_calls": 3,
        "objects": [],
        "records": 0,
        "warnings": [],
    }
    shown = result("succeeded", manifest)
    assert list(shown) == [
        "outcome",
        "job",
        "records",
        "objects",
        "api_calls",
        "service",
        "run_id",
        "warnings",
    ]
    assert shown == {"outcome": "succeeded", **manifest}


def test_times_are_shown_in_the_configs_zone_and_utc() -> None:
    paris = config_module.ZoneInfo("Europe/Paris")
    assert jv.both_times("2026-03-10T12:00:00+00:00", paris) == "2026-03-10 13:00 CET · 12:00 UTC"
    assert jv.both_times(NOW, config_module.ZoneInfo("UTC")) == "2026-03-10 12:00 UTC"
    assert jv.both_times(None, paris) == "-"
    assert jv.ago(NOW - timedelta(minutes=12), NOW) == "12 min ago"
    assert jv.ago(NOW + timedelta(hours=3), NOW) == "in 3.0 h"
