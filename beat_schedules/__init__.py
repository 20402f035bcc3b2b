"""The beat schedule, built in one place from the environment's config.

Every enabled job gets one crontab entry, read in the config's timezone, routed to
``{env}.{service}``, with an ``expires`` equal to the job's shortest gap between ticks: if the
queue backs up, a stale tick is dropped rather than replayed, because the next tick fetches the
same data (incremental jobs resume from their cursor).
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab
from celery.utils.time import ffwd

from ela import cron
from ela.config import IngestionConfig, Job


class JobCrontab(crontab):
    """Celery's crontab, in the config's zone, whose next tick is :mod:`ela.cron`'s.

    Celery's own arithmetic moves a tick the spring-forward night skips an hour later, for
    every job: an ``0 */2 * * *`` job then fires at 03:00 and again at 04:00. ``ela.cron``
    keeps hour-stepped jobs to their wall-clock marks and moves only fixed-hour ticks (docs/
    configuration.md), and ``ela schedule`` / ``ela status`` read the same answer. Everything else
    is Celery's: ``is_due``, the beat loop, ``beat_cron_starting_deadline``, and the fields
    Sentry's cron monitors are built from.
    """

    def __init__(
        self,
        minute: str = "*",
        hour: str = "*",
        day_of_week: str = "*",
        day_of_month: str = "*",
        month_of_year: str = "*",
        *,
        zone: str = "UTC",
        **kwargs: Any,
    ) -> None:
        super().__init__(minute, hour, day_of_week, day_of_month, month_of_year, **kwargs)
        self.zone = zone
        self.cron = cron.parse(f"{minute} {hour} {day_of_month} {month_of_year} {day_of_week}")

    @cached_property
    def tz(self) -> tzinfo:
        """The config's zone, not the app's: the schedule means the same wherever it is read."""
        return ZoneInfo(self.zone)

    def remaining_estimate(self, last_run_at: datetime, ffwd: type = ffwd) -> timedelta:
        """Time from now to the first tick after ``last_run_at`` (negative when overdue)."""
        last = self.maybe_make_aware(last_run_at).astimezone(UTC)
        (upcoming,) = self.cron.next_runs(ZoneInfo(self.zone), last, 1)
        return upcoming - self.maybe_make_aware(self.now()).astimezone(UTC)

    def __reduce__(self) -> Any:
        # Beat's schedule file pickles its entries: keep the zone with the fields.
        _, fields, state = super().__reduce__()
        return (self.__class__, fields, {**state, "zone": self.zone})

    def __setstate__(self, state: Any) -> None:
        state = dict(state)
        self.zone = state.pop("zone", "UTC")
        super().__setstate__(state)

    def __eq__(self, other: Any) -> bool:
        same = super().__eq__(other)
        if same is NotImplemented or not same:
            return same
        return getattr(other, "zone", None) == self.zone

    __hash__ = None  # type: ignore[assignment]


def job_crontab(job: Job, zone: str) -> JobCrontab:
    minute, hour, day_of_month, month, day_of_week = job.cron.fields
    return JobCrontab(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month,
        day_of_week=day_of_week,
        zone=zone,
    )


def expires_seconds(config: IngestionConfig, job: Job, now: datetime | None = None) -> int:
    gap = job.cron.min_gap(config.global_.tz, now or datetime.now(UTC))
    return int(gap.total_seconds())


# The message header carrying a run's scheduled time (the tick; set by beat, else stamped at
# publish by worker/app.py); a retry pins it into the task's kwargs (tasks/base.py).
SCHEDULED_AT_HEADER = "ela_scheduled_at"

# While beat sends a tick: (task, run id, kwargs) of the message, so its log lines ("Sending due
# task", a failed publish) name the job and run as a worker's do (worker/logs.py).
beat_sending: ContextVar[tuple[str, str, dict[str, Any]] | None] = ContextVar(
    "beat_sending", default=None
)

# Housekeeping, not a job: daily at 03:17 (off the hour, when no job of the shipped configs runs).
PURGE_ERRORS = "ela_purge_errors"


def build_schedule(config: IngestionConfig) -> dict[str, dict[str, Any]]:
    schedule = {
        name: {
            "task": job.task,
            "schedule": job_crontab(job, config.global_.timezone),
            "kwargs": {"job": name},
            "options": {
                "queue": config.queue(job.service),
                "expires": expires_seconds(config, job),
            },
        }
        for name, job in config.enabled_jobs().items()
    }
    schedule[PURGE_ERRORS] = {
        "task": "tasks.purge_errors",
        "schedule": JobCrontab(minute="17", hour="3", zone=config.global_.timezone),
        # The queue is worker.settings.ops_queue (not imported: worker imports this package).
        "options": {"queue": config.queue("ops"), "expires": 24 * 3600},
    }
    return schedule
