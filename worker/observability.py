"""Logs and Sentry wired into the worker's and beat's start-up, with no secret in either.

The parts: :mod:`ela.scrub` (what counts as a secret, and its removal), :mod:`worker.logs`
(JSON or text lines with the run's context) and :mod:`worker.sentry` (events and cron
check-ins). This module hooks them onto Celery's signals: the log format once Celery has built
its handlers; Sentry in the worker's main process (``celeryd_init``) and in beat
(``beat_init``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from celery import signals
from celery.utils.log import get_multiprocessing_logger

from ela.config import IngestionConfig
from ela.scrub import Scrubber
from worker.logs import format_handlers
from worker.sentry import init_sentry


def setup(config: Callable[[], IngestionConfig], environ: Mapping[str, str] = os.environ) -> None:
    """Hook logging and Sentry into Celery's worker and beat start-up (idempotent).

    Sentry starts in the worker's main process (``celeryd_init``), before the prefork pool
    forks: the integration patches Celery's tracer builder, and children build their tracers
    from it as they start; Sentry's transport restarts its thread in each child. Starting it in
    ``worker_process_init`` would be too late for that and would miss the main process's events.

    ``config`` is asked for when a logger or Sentry is set up, not now (the app's config loads
    when the app is configured).
    """
    scrubber = Scrubber(environ)

    def on_logger(logger: logging.Logger | None = None, **_: Any) -> None:
        format_handlers(logger, config(), scrubber, environ)
        format_handlers(get_multiprocessing_logger(), config(), scrubber, environ)

    def on_start(**_: Any) -> None:
        init_sentry(config(), environ)

    signals.after_setup_logger.connect(on_logger, weak=False, dispatch_uid="ela-logs")
    signals.after_setup_task_logger.connect(on_logger, weak=False, dispatch_uid="ela-task-logs")
    for signal in (signals.celeryd_init, signals.beat_init, signals.beat_embedded_init):
        signal.connect(on_start, weak=False, dispatch_uid=f"ela-sentry-{signal.name}")
