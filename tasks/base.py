"""The ingest task: run identity and retry policy around :func:`ela.pipeline.run_job`."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from celery import Task

from ela import run_input
from ela.connectors import DataType, all_data_types
from ela.errors import IngestError, InputError, RetriableError
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
    # The success line and Flower's task page show the start of the result's repr: outcome, job,
    # records, objects and api_calls (ela.pipeline.result puts them first; one landing object
    # with its sha256 brings that to ~300 characters). The manifest in the bucket has the rest:
    # logging (and scrubbing) a whole manifest per run is not free.
    resultrepr_maxsize = 400

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

    def ingest(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            given = run_input.check(config, self.name, kwargs, self.request.id)
        except InputError as exc:
            self.refuse(kwargs, exc)
            raise
        job_name = given.job
        scheduled_at = given.scheduled_at.isoformat() if given.scheduled_at else None
        if given.follow_up:  # a follow-up's hop: run only if it is due and still wanted
            waiting, due = follow_ups.take(self, job_name, given.follow_up)
            if waiting is not None:
                return waiting
            scheduled_at = scheduled_at or due  # the run is scheduled when it came due
        overrides = Overrides(
            limit=given.limit, since=given.since, until=given.until, dry_run=given.dry_run
        )
        when = self.scheduled_at(scheduled_at)
        attempt = self.request.retries
        final = attempt >= self.max_retries
        run = {"run_id": self.request.id, "scheduled_at": when, "attempt": attempt}
        try:
            manifest = run_job(config, job_name, overrides=overrides, final_attempt=final, **run)
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

    def refuse(self, kwargs: dict[str, Any], error: InputError) -> None:
        """File the error object of a run refused for its inputs (kind ``input``): under the
        job it names if that is this task's, else the task's own job, else the task's name; a
        run id that is not a UUID is replaced by one derived from it."""
        _, service, data_type = self.name.split(".")
        job = kwargs.get("job")
        if not (isinstance(job, str) and job in config.jobs and config.jobs[job].task == self.name):
            try:
                job = config.job_for_task(self.name)
            except KeyError:
                job = f"{service}_{data_type}"
        run_id = self.request.id
        try:
            run_input.check_run_id(run_id)
        except InputError:
            run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, repr(run_id)))
        record_failure(
            config,
            job,
            run_id=run_id,
            scheduled_at=datetime.now(UTC).replace(second=0, microsecond=0),
            attempt=self.request.retries,
            error=error,
            service=service,
        )


def _register(data_type: DataType) -> Task:
    # Keyword arguments are checked by ela.run_input (in IngestTask.ingest), not by Python: an
    # unknown or mistyped one is a one-line refusal with an error object, not a TypeError.
    @app.task(name=data_type.task_name, bind=True, base=IngestTask)
    def ingest(self: IngestTask, **kwargs: Any) -> dict[str, Any]:
        return self.ingest(kwargs)

    ingest.__doc__ = data_type.doc
    return ingest


INGEST_TASKS = {dt.task_name: _register(dt) for dt in all_data_types()}
