"""Sentry for the worker and beat, only when ``SENTRY_DSN`` is set (else ``sentry_sdk`` is never
imported).

The config's env as Sentry ``environment`` and an ``env`` tag, the Celery integration with beat
entries monitored as crons (slug = beat entry name = job name), ``job`` / ``run_id`` / ``task``
tags set when a task starts, and every event, transaction and breadcrumb passed through
:class:`ela.scrub.Scrubber` on the way out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from celery import Task, signals

from ela.config import IngestionConfig
from ela.scrub import Scrubber
from worker.logs import run_fields

MONITOR_START_HEADER = "sentry-monitor-start-timestamp-s"  # read by sentry's beat integration


def init_sentry(config: IngestionConfig, environ: Mapping[str, str] = os.environ) -> bool:
    """Start Sentry if ``SENTRY_DSN`` is set; True if it runs in this process."""
    dsn = environ.get("SENTRY_DSN", "").strip()
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration

    if sentry_sdk.is_initialized():  # beat embedded in a worker (-B) inherits the worker's
        return True
    # The DSN's key is what the SDK authenticates to this same Sentry with, and the trace
    # header of every envelope carries it (from the event, after before_send): keep it there.
    scrubber = Scrubber({k: v for k, v in environ.items() if k != "SENTRY_DSN"})

    def scrub_event(event: Any, hint: Any) -> Any:
        event = scrubber.data(event)
        event.setdefault("tags", {})["env"] = config.env
        return event

    def scrub_breadcrumb(crumb: Any, hint: Any) -> Any:
        return scrubber.data(crumb)

    sentry_sdk.init(
        dsn=dsn,
        environment=config.env,
        # Beat entries become cron monitors named after the entry (the job), with its crontab
        # and the config's timezone; the worker reports each run's ok/error check-in.
        # No trace propagation: its baggage header would put the DSN key into every task
        # message in Redis (and Flower). Nothing is traced, so nothing is lost but this.
        integrations=[CeleryIntegration(monitor_beat_tasks=True, propagate_traces=False)],
        send_default_pii=False,
        # Frame locals can hold a client, a token, a response: never send them.
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
    )
    sentry_sdk.get_global_scope().set_tag("env", config.env)
    _tune_monitors(config)

    def tag_run(task_id: str | None = None, task: Task | None = None, **kw: Any) -> None:
        if task is not None:
            sentry_sdk.set_tags(run_fields(config, task.name, task_id, kw.get("kwargs")))

    def report_expected_failure(
        sender: Task | None = None, exception: BaseException | None = None, **_: Any
    ) -> None:
        # The integration skips a task's `throws` (our IngestError: logged without a traceback),
        # but a run that failed for good is what the person behind Sentry must hear about.
        if sender is not None and exception is not None and isinstance(exception, sender.throws):
            sentry_sdk.set_tag("error_kind", getattr(exception, "kind", "error"))
            sentry_sdk.capture_exception(exception)

    def stamp_monitor_start(headers: dict[str, Any] | None = None, **_: Any) -> None:
        # What the integration's trace propagation would add: the worker's ok/error check-in
        # reports its duration from it.
        if headers is not None and "sentry-monitor-slug" in headers:
            headers.setdefault(MONITOR_START_HEADER, f"{time.time():.9f}")

    signals.before_task_publish.connect(
        stamp_monitor_start, weak=False, dispatch_uid="ela-sentry-monitor-start"
    )
    # Runs inside the integration's per-task scope, so the tags belong to that run only.
    signals.task_prerun.connect(tag_run, weak=False, dispatch_uid="ela-sentry-tags")
    signals.task_failure.connect(
        report_expected_failure, weak=False, dispatch_uid="ela-sentry-expected"
    )
    return True


def _tune_monitors(config: IngestionConfig) -> None:
    """Make Sentry's cron check-ins match how a run really ends.

    - A retry is not the end of a run: the integration closes the check-in as ``error`` on
      ``task_retry``, and Sentry ignores the ``ok`` that a recovered run sends afterwards
      (measured: ``error`` then ``ok`` for one check-in id). Only the final outcome reports.
    - Sentry flags runs past its 30-minute default ``max_runtime``; prd allows 45 minutes.
      The integration builds each monitor's config (crontab + timezone) in a private
      function: wrap it to add the hard time limit. Beat sends the config with the in-progress
      check-in and the worker echoes it from the task headers, so both agree. If a future
      sentry-sdk moves either name, monitors keep Sentry's defaults.
    """
    import math

    from sentry_sdk.integrations.celery import beat as sentry_beat

    from worker.settings import hard_time_limit

    on_retry = getattr(sentry_beat, "crons_task_retry", None)
    if on_retry is not None:
        signals.task_retry.disconnect(on_retry)
    original = getattr(sentry_beat, "_get_monitor_config", None)
    if original is None or getattr(original, "_ela_wrapped", False):
        return
    minutes = math.ceil(hard_time_limit(config) / 60)

    def monitor_config(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if result:
            result.setdefault("max_runtime", minutes)
        return result

    monitor_config._ela_wrapped = True  # type: ignore[attr-defined]
    sentry_beat._get_monitor_config = monitor_config
