"""The beat schedule, built in one place from the environment's config.

Every enabled job gets one crontab entry, read in the config's timezone, routed to
``{env}.{service}``, with an ``expires`` equal to the job's shortest gap between ticks: if the
queue backs up, a stale tick is dropped rather than replayed, because the next tick fetches the
same data (incremental jobs resume from their cursor).
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from celery.schedules import crontab

from ela.config import IngestionConfig, Job


def job_crontab(job: Job) -> crontab:
    minute, hour, day_of_month, month, day_of_week = job.cron.fields
    return crontab(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month,
        day_of_week=day_of_week,
    )


def expires_seconds(config: IngestionConfig, job: Job, now: datetime | None = None) -> int:
    gap = job.cron.min_gap(config.global_.tz, now or datetime.now(UTC))
    return int(gap.total_seconds())


# The message header carrying a run's scheduled time (the tick; set by beat, else stamped at
# publish by worker/app.py); a retry pins it into the task's kwargs (tasks/base.py).
SCHEDULED_AT_HEADER = "ela_scheduled_at"

# While beat sends a tick: (task, run id, kwargs) of the message, so its log lines ("Sending due
# task", a failed publish) name the job and run as a worker's do (worker/observability.py).
beat_sending: ContextVar[tuple[str, str, dict[str, Any]] | None] = ContextVar(
    "beat_sending", default=None
)

# Housekeeping, not a job: daily at 03:17 (off the hour, when no job of the shipped configs runs).
PURGE_ERRORS = "ela_purge_errors"


def build_schedule(config: IngestionConfig) -> dict[str, dict[str, Any]]:
    schedule = {
        name: {
            "task": job.task,
            "schedule": job_crontab(job),
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
        "schedule": crontab(minute="17", hour="3"),
        # The queue is worker.settings.ops_queue (not imported: worker imports this package).
        "options": {"queue": config.queue("ops"), "expires": 24 * 3600},
    }
    return schedule
