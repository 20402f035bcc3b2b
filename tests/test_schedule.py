"""Cron parsing, next-run computation, and the beat schedule built from each env's config."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from celery.utils.time import ffwd

from beat_schedules import build_schedule, job_crontab
from ela import config as config_module
from ela import cron
from tests.helpers import REPO, write_config

UTC_TZ = ZoneInfo("UTC")


def test_next_runs_of_simple_expressions() -> None:
    start = datetime(2026, 11, 25, 21, 37, tzinfo=UTC)
    assert cron.parse("0 */3 * * *").next_runs(UTC_TZ, start, 2) == [
        datetime(2026, 11, 26, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 26, 3, 0, tzinfo=UTC),
    ]
    # Sunday 06:00 (2026-11-29 is a Sunday); day-of-week 7 is Sunday too.
    assert cron.parse("0 6 * * 0").next_runs(UTC_TZ, start, 1) == [
        datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
    ]
    assert cron.parse("0 6 * * 7").next_runs(UTC_TZ, start, 1) == [
        datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
    ]
    assert cron.parse("0 8 1 * *").next_runs(UTC_TZ, start, 2) == [
        datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
        datetime(2027, 1, 1, 8, 0, tzinfo=UTC),
    ]
    assert cron.parse("30 9 29 feb *").next_runs(UTC_TZ, start, 1) == [
        datetime(2028, 2, 29, 9, 30, tzinfo=UTC)
    ]


def test_timezone_is_honoured_across_dst() -> None:
    paris = ZoneInfo("Europe/Paris")
    # 08:00 in Paris is 07:00 UTC in winter and 06:00 UTC in summer.
    runs = cron.parse("0 8 * * *").next_runs(paris, datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert runs == [datetime(2026, 3, 29, 6, tzinfo=UTC), datetime(2026, 3, 30, 6, tzinfo=UTC)]
    # 02:30 does not exist in Paris on 2026-03-29: that tick is skipped, not doubled.
    runs = cron.parse("30 2 * * *").next_runs(paris, datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert runs == [
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 31, 0, 30, tzinfo=UTC),
    ]


def test_previous_run() -> None:
    at = datetime(2026, 11, 25, 21, 37, 12, tzinfo=UTC)
    assert cron.parse("0 */2 * * *").previous_run(UTC_TZ, at) == datetime(
        2026, 11, 25, 20, tzinfo=UTC
    )
    assert cron.parse("0 8 1 * *").previous_run(UTC_TZ, at) == datetime(2026, 11, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "has 4 fields"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("0 24 * * *", "hour: 24 is outside 0-23"),
        ("0 0 0 * *", "day-of-month: 0 is outside 1-31"),
        ("0 0 * 13 *", "month: 13 is outside 1-12"),
        ("0 0 * * 8", "day-of-week: 8 is outside 0-7"),
        ("*/0 * * * *", "step '0' must be a positive integer"),
        ("5-1 * * * *", "range '5-1' runs backwards"),
        ("a * * * *", "minute: 'a' is not a number"),
        ("1,,2 * * * *", "empty item"),
        ("0 0 1 * mon", "restricts both"),
    ],
)
def test_cron_errors_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(cron.CronError, match=message.replace("(", r"\(")):
        cron.parse(expression)


@pytest.mark.parametrize("env", ["dev", "prd"])
def test_celery_crontab_agrees_with_our_cron_on_every_shipped_job(env: str) -> None:
    """The beat schedule (Celery's crontab) and `ela schedule` (our cron) must fire together."""
    config = config_module.load(REPO / f"ingestion-config-{env}.yaml")
    start = datetime(2026, 11, 25, 21, 37, tzinfo=UTC)
    for name, job in config.jobs.items():
        ours = job.cron.next_runs(config.global_.tz, start, 6)
        schedule = job_crontab(job)
        theirs, last = [], start
        for _ in range(6):
            last_local, delta, _now = schedule.remaining_delta(last, ffwd=ffwd)
            last = (last_local + delta).astimezone(UTC)
            theirs.append(last)
        assert theirs == ours, name


@pytest.mark.parametrize("env", ["dev", "prd"])
def test_beat_schedule_has_one_routed_expiring_entry_per_enabled_job(env: str) -> None:
    config = config_module.load(REPO / f"ingestion-config-{env}.yaml")
    schedule = build_schedule(config)
    assert schedule.pop("ela_purge_errors")["task"] == "tasks.purge_errors"
    assert set(schedule) == set(config.jobs)
    for name, entry in schedule.items():
        job = config.jobs[name]
        assert entry["task"] == f"tasks.{job.service}.{job.data_type}"
        assert entry["kwargs"] == {"job": name}
        assert entry["options"]["queue"] == f"{env}.{job.service}"
        gap = job.cron.min_gap(config.global_.tz, datetime.now(UTC))
        assert entry["options"]["expires"] == int(gap.total_seconds())
    hourly = "spotify_recently_played"
    assert schedule[hourly]["options"]["expires"] == (3600 if env == "dev" else 3 * 3600)


def test_disabled_jobs_are_not_scheduled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(
        json.dumps(config_module.load(REPO / "ingestion-config-dev.yaml").model_dump(by_alias=True))
    )
    path = tmp_path / "c.yaml"
    jobs = data["jobs"]
    jobs["todoist_tasks"]["enabled"] = False
    write_config(path, jobs=jobs)
    schedule = build_schedule(config_module.load(path))
    assert "todoist_tasks" not in schedule and "todoist_projects" in schedule


@pytest.mark.integration  # runs the `ela` command or a Python in a process
def test_schedule_cli_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ela.cli", "schedule", "--env", "prd", "--json", "--next", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(result.stdout)
    assert len(rows) == 13
    row = next(r for r in rows if r["job"] == "spotify_playlists")
    assert row["task"] == "tasks.spotify.playlists"
    assert row["cron"] == "0 8 1 * *"
    assert row["queue"] == "prd.spotify"
    assert row["params"] == {"limit": 100}
    assert len(row["next_runs"]) == 3
    for run in row["next_runs"]:
        parsed = datetime.fromisoformat(run.replace("Z", "+00:00"))
        assert parsed.tzinfo is not None and parsed.day == 1 and parsed.hour == 8
        assert run.endswith("Z")


@pytest.mark.integration  # runs the `ela` command or a Python in a process
def test_jobs_cli_lists_groups() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ela.cli", "jobs", "--env", "dev", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(result.stdout)
    assert data["env"] == "dev"
    assert data["groups"]["frequent_jobs"] == [
        "spotify_recently_played",
        "strava_activities",
        "garmin_activities",
        "todoist_tasks",
    ]
