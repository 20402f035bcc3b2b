"""Todoist's sections and completed tasks (issue 15.4), through todoist-api-python against the
emulator: pages, the completeness rule of completed tasks, and the API's window cap."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ela import config as config_module
from ela.connectors.todoist import COMPLETED_WINDOW_DAYS, completed_key, windows
from ela.pipeline import Overrides, run_job
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO
from ela.sinks import Bucket, LocalBucket
from ela.state import read_state
from tests.conftest import read_jsonl
from tests.helpers import with_job

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
PRD = config_module.load(REPO / "ingestion-config-prd.yaml")
WHEN = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
JOB = "todoist_completed_tasks"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(WHEN)


@pytest.fixture
def todoist(clock: Clock) -> Iterator[TodoistEmulator]:
    with TodoistEmulator(projects=100, tasks=50, completed=400, clock=clock) as emulator:
        yield emulator


def run(
    emulator: TodoistEmulator,
    bucket: Bucket,
    job: str,
    when: datetime = WHEN,
    config: config_module.IngestionConfig = CONFIG,
    overrides: Overrides | None = None,
) -> dict[str, Any]:
    emulator.reset_calls()
    return run_job(
        config,
        job,
        run_id=str(uuid.uuid4()),
        scheduled_at=when,
        bucket=bucket,
        environ=emulator.environ(),
        overrides=overrides or Overrides(),
    )


def landed(bucket: Bucket, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for o in manifest["objects"] for r in read_jsonl(bucket.get_bytes(o["name"]))]


def done_at(task: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(task["completed_at"])


def completed_between(emulator: TodoistEmulator, since: datetime, until: datetime) -> list[Any]:
    rows = [t for t in emulator.completed if since <= done_at(t) <= until]
    return sorted(rows, key=lambda t: t["completed_at"], reverse=True)


def test_sections_land_as_sent_across_short_pages(
    todoist: TodoistEmulator, gcs_bucket: Bucket
) -> None:
    manifest = run(todoist, gcs_bucket, "todoist_sections")
    live = [s for s in todoist.sections if not s["is_deleted"]]
    assert landed(gcs_bucket, manifest) == live  # every field, in order
    # 300 sections in pages of 200 slots; the deleted ones leave the pages short (175, 88).
    assert todoist.calls_to("/sections") == 2 and manifest["api_calls"] == 2
    assert manifest["warnings"] == []
    assert manifest["objects"][0]["name"].endswith("_todoist_sections.jsonl")


def test_an_empty_page_with_a_cursor_does_not_end_the_sections(
    clock: Clock, local_bucket: LocalBucket
) -> None:
    with TodoistEmulator(projects=2, tasks=5, completed=0, clock=clock) as todoist:
        todoist.add_sections(300)  # 306 in all
        for section in todoist.sections[:200]:
            section["is_deleted"] = True  # the whole first page is gone
        manifest = run(todoist, local_bucket, "todoist_sections")
        assert landed(local_bucket, manifest) == [
            s for s in todoist.sections if not s["is_deleted"]
        ]
        assert manifest["records"] > 0 and todoist.calls_to("/sections") == 2


def test_completed_tasks_first_run_lands_its_days_then_nothing_twice(
    todoist: TodoistEmulator, local_bucket: LocalBucket
) -> None:
    first = run(todoist, local_bucket, JOB)
    expected = completed_between(todoist, WHEN - timedelta(days=7), WHEN + timedelta(minutes=10))
    assert expected and landed(local_bucket, first) == expected  # as sent, newest first
    assert first["api_calls"] == 1
    state = read_state(local_bucket, "todoist", JOB)
    assert state.cursor == max(done_at(t) for t in expected).timestamp()
    assert set(state.landed) == {completed_key(t) for t in expected}
    # A steady-state run re-reads its lookback in one call and lands nothing again.
    second = run(todoist, local_bucket, JOB, WHEN + timedelta(hours=2))
    assert second["records"] == 0 and second["api_calls"] == 1


def test_a_completion_that_syncs_late_lands_on_the_next_run(
    todoist: TodoistEmulator, clock: Clock, local_bucket: LocalBucket
) -> None:
    # Completed offline two days ago; the phone syncs in an hour.
    late = todoist.complete_late(WHEN - timedelta(days=2), synced=WHEN + timedelta(hours=1))
    first = run(todoist, local_bucket, JOB)
    assert late["id"] not in {t["id"] for t in landed(local_bucket, first)}
    clock.now = WHEN + timedelta(hours=2)
    second = run(todoist, local_bucket, JOB, clock.now)
    assert landed(local_bucket, second) == [late]  # behind the cursor, found by the lookback


def test_a_task_completed_again_lands_again(
    todoist: TodoistEmulator, clock: Clock, local_bucket: LocalBucket
) -> None:
    first = run(todoist, local_bucket, JOB)
    some = landed(local_bucket, first)[3]
    again = todoist.recomplete(some["id"], WHEN + timedelta(minutes=30))
    clock.now = WHEN + timedelta(hours=2)
    second = run(todoist, local_bucket, JOB, clock.now)
    assert landed(local_bucket, second) == [again]
    assert again["completed_at"] != some["completed_at"]
    state = read_state(local_bucket, "todoist", JOB)
    assert {completed_key(some), completed_key(again)} <= set(state.landed)


def test_a_window_past_three_months_is_cut_into_windows_the_api_accepts(
    todoist: TodoistEmulator, local_bucket: LocalBucket
) -> None:
    # The API itself refuses a window over three months, through the library's own call.
    import todoist_api_python._core.endpoints as endpoints
    from todoist_api_python.api import TodoistAPI

    old, endpoints.API_URL = endpoints.API_URL, todoist.api_url
    try:
        with TodoistAPI(todoist.token) as api, pytest.raises(httpx.HTTPStatusError) as refused:
            next(
                api.get_completed_tasks_by_completion_date(
                    since=WHEN - timedelta(days=200), until=WHEN
                )
            )
        assert refused.value.response.status_code == 400
    finally:
        endpoints.API_URL = old
    config = with_job(CONFIG, JOB, days=200)
    manifest = run(todoist, local_bucket, JOB, config=config)
    since = WHEN - timedelta(days=200)
    until = WHEN + timedelta(minutes=10)
    got = landed(local_bucket, manifest)
    assert sorted(t["id"] for t in got) == sorted(
        t["id"] for t in completed_between(todoist, since, until)
    )
    cut = list(windows(since, until))
    assert len(cut) == 3
    # One call per window, and one per further page of 200 (a window holding 240 needs two).
    pages = sum(max(1, -(-len(completed_between(todoist, a, b)) // 200)) for a, b in cut)
    assert todoist.calls_to("/by_completion_date") == pages == 4
    assert all(b - a <= timedelta(days=COMPLETED_WINDOW_DAYS) for a, b in windows(since, until))


def test_a_backfill_window_lands_whole_and_leaves_the_cursor(
    todoist: TodoistEmulator, local_bucket: LocalBucket
) -> None:
    run(todoist, local_bucket, JOB)
    cursor = read_state(local_bucket, "todoist", JOB).cursor
    since, until = WHEN - timedelta(days=50), WHEN - timedelta(days=40)
    manifest = run(todoist, local_bucket, JOB, overrides=Overrides(since=since, until=until))
    assert landed(local_bucket, manifest) == completed_between(todoist, since, until)
    assert read_state(local_bucket, "todoist", JOB).cursor == cursor


def test_both_configs_schedule_them() -> None:
    for config in (CONFIG, PRD):
        group = config.job_groups["productivity_all"].jobs
        assert "todoist_sections" in group and JOB in group
        assert config.jobs[JOB].enabled and config.jobs["todoist_sections"].enabled
    assert PRD.jobs[JOB].cron != CONFIG.jobs[JOB].cron
