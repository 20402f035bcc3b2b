"""Cron parsing, next-run computation, and the beat schedule built from each env's config."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import crontab
from celery.utils.time import ffwd
from click.testing import CliRunner

from beat_schedules import JobCrontab, build_schedule
from ela import config as config_module
from ela import cron
from ela.cli import main
from ela.connectors import all_data_types
from ela.sandbox.configs import write_config
from ela.sandbox.processes import REPO

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
    # 02:30 does not exist in Paris on 2026-03-29: a fixed-hour tick fires an hour later by
    # the clock (03:30 CEST, 01:30 UTC), so the day is not lost.
    runs = cron.parse("30 2 * * *").next_runs(paris, datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert runs == [
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    # An hour-stepped job keeps to its marks: 00:00 CET, then 04:00 CEST (no 02:00 that night).
    runs = cron.parse("0 */2 * * *").next_runs(paris, datetime(2026, 3, 28, 22, tzinfo=UTC), 2)
    assert runs == [datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 2, tzinfo=UTC)]
    # Two ticks that meet after the jump fire once.
    runs = cron.parse("30 2,3 * * *").next_runs(paris, datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert runs == [
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    assert cron.parse("30 2 * * *").previous_run(paris, datetime(2026, 3, 29, 2, tzinfo=UTC)) == (
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    )


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
    """Away from a DST change, Celery's own crontab arithmetic, in the config's zone, and our
    cron (which beat, `ela schedule` and `ela status` use) fire together."""
    config = config_module.load(REPO / f"ingestion-config-{env}.yaml")
    app = Celery(set_as_current=False)
    app.conf.timezone = config.global_.timezone
    start = datetime(2026, 11, 25, 21, 37, tzinfo=UTC)
    for name, job in config.jobs.items():
        ours = job.cron.next_runs(config.global_.tz, start, 6)
        minute, hour, day_of_month, month, day_of_week = job.cron.fields
        schedule = crontab(minute, hour, day_of_week, day_of_month, month, app=app)
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
    assert set(schedule) == {name for name, job in config.jobs.items() if job.enabled}
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
    prd = config_module.load(REPO / "ingestion-config-prd.yaml")
    assert len(rows) == len(prd.jobs)  # the disabled ones too, as such
    row = next(r for r in rows if r["job"] == "spotify_playlists")
    assert row["task"] == "tasks.spotify.playlists"
    assert row["cron"] == "0 8 1 * *"
    assert row["queue"] == "prd.spotify"
    assert row["params"] == {"limit": 100}
    assert row["timezone"] == "Europe/Paris"
    assert len(row["next_runs"]) == len(row["next_runs_local"]) == 3
    for run, local in zip(row["next_runs"], row["next_runs_local"], strict=True):
        # 08:00 on the 1st in Paris, and the same instant in UTC (07:00 or 06:00).
        in_paris = datetime.fromisoformat(local)
        assert (in_paris.day, in_paris.hour, in_paris.minute) == (1, 8, 0)
        assert in_paris.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
        assert run.endswith("Z")
        assert datetime.fromisoformat(run.replace("Z", "+00:00")) == in_paris


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
        "strava_laps",
        "strava_streams",
        "garmin_activities",
        "todoist_tasks",
        "todoist_completed_tasks",
    ]
    assert all(row["next_runs"] == [] for row in data["jobs"])  # that is `ela schedule`'s


# Each provider's jobs are in its group, in both envs (the origin's groups, and the same for
# every data type added since).
PROVIDER_GROUP = {
    "spotify": "spotify_all",
    "strava": "fitness_all",
    "garmin": "fitness_all",
    "todoist": "productivity_all",
}


@pytest.mark.parametrize("env", ["dev", "prd"])
def test_every_data_type_has_a_job_in_its_group_and_a_row_in_ela_jobs(env: str) -> None:
    """What a data type needs to be scheduled (CONTRIBUTING, "Adding a data type"): registered
    with its connector, it has a job in both env files, in its provider's group, and `ela jobs`
    lists it with its task."""
    result = CliRunner().invoke(main, ["jobs", "--env", env, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = {row["job"]: row for row in data["jobs"]}
    for data_type in all_data_types():
        job = f"{data_type.service}_{data_type.name}"
        assert job in rows, f"{job} has no job in ingestion-config-{env}.yaml"
        assert rows[job]["task"] == data_type.task_name
        assert job in data["groups"][PROVIDER_GROUP[data_type.service]], job


# -- daylight-saving time, through Celery's beat entry -----------------------------------------

PARIS = ZoneInfo("Europe/Paris")
# Both 2026 transitions in Paris: 02:00 CET → 03:00 CEST on 29 March, 03:00 CEST → 02:00 CET
# on 25 October. The window runs from the evening before to the next evening.
SPRING = datetime(2026, 3, 28, 18, tzinfo=UTC)
AUTUMN = datetime(2026, 10, 24, 18, tzinfo=UTC)


def beat_fires(schedule: Any, start: datetime, hours: int = 30) -> list[datetime]:
    """When Celery's beat would send an entry with ``schedule``, on a controlled clock.

    The real ``ScheduleEntry``: ``is_due()`` (Celery's, which asks the schedule), and after a
    send, ``next(entry)`` (last_run_at = the schedule's now). Between checks the clock moves
    as beat sleeps: until the next run, at most a minute (ours wakes every 10 s to renew its
    lock; the cap only bounds how late a tick could be noticed, and ticks land exactly).
    """
    clock = [start]
    # The app's now(): the time in the app's zone, the config's (worker/settings.py).
    schedule.nowfun = lambda: clock[0].astimezone(PARIS)
    app = Celery(set_as_current=False)
    app.conf.timezone = "Europe/Paris"
    entry = ScheduleEntry("job", "tasks.x", last_run_at=start, schedule=schedule, app=app)
    fires = []
    while clock[0] < start + timedelta(hours=hours):
        due, wait = entry.is_due()
        if due:
            fires.append(clock[0])
            entry = next(entry)
        clock[0] += timedelta(seconds=min(max(wait, 1.0), 60.0))
    return fires


def local_marks(fires: list[datetime]) -> list[str]:
    return [f"{fire.astimezone(PARIS):%d %H:%M %Z}" for fire in fires]


@pytest.mark.parametrize("env", ["dev", "prd"])
@pytest.mark.parametrize("night", [SPRING, AUTUMN], ids=["spring", "autumn"])
def test_beat_fires_every_shipped_job_on_its_paris_marks_across_dst(
    env: str, night: datetime
) -> None:
    config = config_module.load(REPO / f"ingestion-config-{env}.yaml")
    schedule = build_schedule(config)
    for name, job in config.jobs.items():
        if not job.enabled:  # not scheduled (prd's spotify_followed_artists)
            continue
        fires = beat_fires(schedule[name]["schedule"], night)
        # What `ela schedule` shows is what beat sends, to the second.
        end = night + timedelta(hours=30)
        expected = [t for t in job.cron.next_runs(PARIS, night, 40) if t < end]
        assert [fire.replace(microsecond=0) for fire in fires] == expected, name
        local = [fire.astimezone(PARIS) for fire in fires]
        # Nothing fires twice at one wall time (autumn repeats 02:00-02:59).
        assert len({(t.date(), t.hour, t.minute) for t in local}) == len(local), name
        # Every send is on one of the job's own marks: hour-stepped jobs stay regular.
        assert all(t.hour in job.cron.hours and t.minute in job.cron.minutes for t in local), (
            name,
            local_marks(fires),
        )


def test_spring_gap_skips_the_missing_tick_of_stepped_jobs_and_moves_fixed_ones() -> None:
    """The 02:00 tick that 29 March 2026 does not have, in beat's hands."""
    every_two = beat_fires(JobCrontab("0", "*/2", zone="Europe/Paris"), SPRING, 12)
    assert local_marks(every_two) == [
        "28 20:00 CET", "28 22:00 CET", "29 00:00 CET", "29 04:00 CEST", "29 06:00 CEST",
    ]  # fmt: skip
    hourly = beat_fires(JobCrontab("0", "*", zone="Europe/Paris"), SPRING + timedelta(hours=5.5), 3)
    assert local_marks(hourly) == ["29 01:00 CET", "29 03:00 CEST", "29 04:00 CEST"]
    daily = beat_fires(JobCrontab("30", "2", zone="Europe/Paris"), SPRING, 40)
    assert local_marks(daily) == ["29 03:30 CEST", "30 02:30 CEST"]  # the day is not lost


def test_autumn_repeat_fires_each_wall_time_once() -> None:
    hourly = beat_fires(JobCrontab("0", "*", zone="Europe/Paris"), AUTUMN + timedelta(hours=4.5), 5)
    assert [f"{f:%H:%M}Z" for f in hourly] == ["23:00Z", "00:00Z", "02:00Z", "03:00Z"]
    assert local_marks(hourly) == ["25 01:00 CEST", "25 02:00 CEST", "25 03:00 CET", "25 04:00 CET"]
    daily = beat_fires(JobCrontab("30", "2", zone="Europe/Paris"), AUTUMN, 30)
    assert local_marks(daily) == ["25 02:30 CEST"]


def test_celery_own_crontab_would_fire_a_stepped_job_twice_after_the_spring_gap() -> None:
    """Why beat_schedules.JobCrontab exists: Celery's arithmetic moves the missing 02:00 tick
    to 03:00 CEST, an hour before the 04:00 one. If Celery changes this, JobCrontab may go."""
    plain = beat_fires(crontab("0", "*/2"), SPRING + timedelta(hours=4.5), 4)
    assert local_marks(plain) == ["29 00:00 CET", "29 03:00 CEST", "29 04:00 CEST"]


def test_the_beat_entry_keeps_its_zone_through_beat_s_schedule_file() -> None:
    entry = JobCrontab("0", "*/2", zone="Europe/Paris")
    copy = pickle.loads(pickle.dumps(entry))
    assert copy == entry and copy.zone == "Europe/Paris" and str(copy.tz) == "Europe/Paris"
    assert copy != JobCrontab("0", "*/2", zone="UTC")
