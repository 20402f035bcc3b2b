"""The ingest task: run identity and retry policy around :func:`ela.pipeline.run_job`."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from celery import Task

from ela.connectors import DataType, all_data_types
from ela.errors import IngestError, RetriableError
from ela.pipeline import Overrides, record_failure, run_job
from tasks import follow_up as follow_ups
from worker.app import SCHEDULED_AT_HEADER, app, config
from worker.settings import MAX_RETRY_COUNTDOWN


class IngestTask(Task):
    """Shared by every ingest task: retries from the env config, idempotent by run id."""

    max_retries = config.global_.retry_attempts
    acks_late = True
    reject_on_worker_lost = True
    # Expected failures: logged as one line, without a traceback (the error object has context).
    throws = (IngestError,)
    # The success line shows the start of the result (outcome, job, run id); the manifest in the
    # bucket has the rest. Logging (and scrubbing) a whole manifest per run is not free.
    resultrepr_maxsize = 300

    def scheduled_at(self, pinned: str | None) -> datetime:
        stamp = pinned or getattr(self.request, SCHEDULED_AT_HEADER, None)
        if stamp:
            return datetime.fromisoformat(stamp)
        return datetime.now(UTC).replace(second=0, microsecond=0)

    def countdown(self, error: RetriableError) -> float:
        """Exponential backoff with full jitter, never shorter than the provider's Retry-After."""
        base = config.global_.retry_backoff_seconds
        backoff = min(MAX_RETRY_COUNTDOWN, base * 2**self.request.retries)
        return max(error.retry_after or 0.0, random.uniform(0, backoff))

    def ingest(
        self,
        job: str | None,
        scheduled_at: str | None,
        overrides: dict[str, Any],
        follow_up: str | None = None,
    ) -> dict[str, Any]:
        job_name = job or config.job_for_task(self.name)
        if follow_up:  # a follow-up's hop: run only if it is due and still wanted
            waiting, due = follow_ups.take(self, job_name, follow_up)
            if waiting is not None:
                return waiting
            scheduled_at = scheduled_at or due  # the run is scheduled when it came due
        when = self.scheduled_at(scheduled_at)
        attempt = self.request.retries
        final = attempt >= self.max_retries
        run = {"run_id": self.request.id, "scheduled_at": when, "attempt": attempt}
        try:
            manifest = run_job(
                config,
                job_name,
                overrides=Overrides.from_kwargs(**overrides),
                final_attempt=final,
                **run,
            )
        except RetriableError as exc:
            if final:
                raise
            countdown = self.countdown(exc)
            if countdown > MAX_RETRY_COUNTDOWN:
                record_failure(config, job_name, error=exc, **run)
                raise
            pinned = {**self.request.kwargs, "job": job_name, "scheduled_at": when.isoformat()}
            pinned.pop("follow_up", None)  # a retry is the run itself, not another hop
            raise self.retry(exc=exc, countdown=countdown, kwargs=pinned) from exc
        follow_ups.plan(self, job_name, manifest)
        return manifest


def _register(data_type: DataType) -> Task:
    @app.task(name=data_type.task_name, bind=True, base=IngestTask)
    def ingest(
        self: IngestTask,
        *,
        job: str | None = None,
        limit: int | None = None,
        since: str | None = None,
        until: str | None = None,
        dry_run: bool = False,
        scheduled_at: str | None = None,
        follow_up: str | None = None,
    ) -> dict[str, Any]:
        overrides = {"limit": limit, "since": since, "until": until, "dry_run": dry_run}
        return self.ingest(job, scheduled_at, overrides, follow_up)

    ingest.__doc__ = data_type.doc
    return ingest


INGEST_TASKS = {dt.task_name: _register(dt) for dt in all_data_types()}
