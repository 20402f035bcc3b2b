"""The Celery application for the environment named by ``ELA_ENV`` (or ``ELA_CONFIG``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from celery.signals import before_task_publish

from beat_schedules import SCHEDULED_AT_HEADER, build_schedule
from ela import config as config_module
from ela.errors import ConfigError
from worker import leases, observability
from worker.settings import celery_settings

__all__ = ["SCHEDULED_AT_HEADER", "app", "config", "create_app"]


def create_app(
    config: config_module.IngestionConfig, environ: Mapping[str, str] = os.environ
) -> Celery:
    """A Celery app with the env's settings and beat schedule (no tasks registered)."""
    app = Celery(f"ela-{config.env}")
    app.conf.update(celery_settings(config, environ))
    app.conf.beat_schedule = build_schedule(config)
    leases.install(app)  # a dead worker's runs back within a minute (worker/leases.py)
    return app


def _load() -> config_module.IngestionConfig:
    try:
        return config_module.load_env()
    except ConfigError as exc:  # a one-line-per-problem message, never a traceback
        print("\n".join(exc.problems), file=sys.stderr)
        raise SystemExit(1) from None


config = _load()
app = create_app(config)
observability.setup(config)  # JSON/text logs and Sentry, both scrubbed of secrets


@before_task_publish.connect
def stamp_scheduled_time(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Give every message the minute it was sent: the run's scheduled time.

    Beat sets it to the tick itself (a tick sent late, after a beat takeover, keeps its
    minute); anything else gets the minute it was sent. The header survives redelivery; a
    retry pins it into the task's kwargs (see tasks/base.py).
    """
    if headers is not None and SCHEDULED_AT_HEADER not in headers:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        headers[SCHEDULED_AT_HEADER] = now.isoformat()
