"""One run of one job: connector → records → landing object → manifest → cursor.

The order is the durability contract (docs/reliability.md):

1. If this run id already has a manifest, the run was committed before (a redelivery after a
   crash, or a retry after the manifest was written): re-apply its cursor and return it.
2. Records stream from the connector, through the downstream's adaptations
   (:mod:`ela.downstream`), into a spooled JSONL file; nothing is in memory at once.
3. The landing object is uploaded under a name fixed by (scheduled time, run id), so a retry
   or redelivery of the same run overwrites it instead of adding a second copy.
4. The manifest is written last; it is the commit.
5. The job's state moves only after the manifest exists: the cursor only forwards, landed keys
   and complete days merged in (:mod:`ela.state`). The manifest records the update, so a crash
   between the two is healed when the run is redelivered.

A failed run commits nothing: no manifest, no cursor. Its error is written under ``errors/``
once it is final (not retriable, or the last attempt).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from ela import downstream, faults, limits, naming
from ela.config import IngestionConfig
from ela.connectors import SERVICES, FetchContext, Record
from ela.errors import IngestError, InputError, PayloadError, ReauthError, RetriableError
from ela.run_input import check_run_id
from ela.sinks import Bucket, JsonlSpool, SpoolFull, bucket_url, get_json, open_bucket, put_json
from ela.state import JobState, StateUpdate, commit, read_state

log = logging.getLogger("ela.pipeline")


@dataclasses.dataclass(frozen=True)
class Overrides:
    """Per-run keyword overrides a task accepts (docs/operations.md)."""

    limit: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False

    @classmethod
    def from_kwargs(
        cls,
        limit: int | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        dry_run: bool = False,
    ) -> Overrides:
        return cls(limit=limit, since=_as_utc(since), until=_as_utc(until), dry_run=dry_run)


def _as_utc(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value.astimezone(UTC) if value else None
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def run_job(
    config: IngestionConfig,
    job_name: str,
    *,
    run_id: str,
    scheduled_at: datetime,
    overrides: Overrides = Overrides(),
    final_attempt: bool = True,
    attempt: int = 0,
    bucket: Bucket | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """Run ``job_name`` once and return its manifest (a JSON-safe dict, no secrets).

    Raises:
        IngestError: the classified failure (RetriableError is worth another attempt);
            InputError for a run id that is not a UUID, before anything is read or written
            (object names are made from it).
    """
    check_run_id(run_id)
    job = config.jobs[job_name]
    service = SERVICES[job.service]
    data_type = service.data_types[job.data_type]
    bucket = bucket or open_bucket(bucket_url(config.global_.gcs_bucket, environ), environ)
    manifest_name = naming.manifest(job.service, job_name, run_id)

    committed = None if overrides.dry_run else get_json(bucket, manifest_name)
    if committed is not None:
        log.info("run %s of %s was already committed; re-applying its state", run_id, job_name)
        if committed.get("cursor_after") is not None or committed.get("state_update"):
            commit(bucket, job.service, job_name, StateUpdate.from_manifest(committed), run_id)
        return result("already_committed", committed)

    started = datetime.now(UTC)
    clock, cpu = time.monotonic(), time.process_time()
    state = read_state(bucket, job.service, job_name) if data_type.keeps_state else JobState()
    cursor_before = state.cursor if data_type.incremental else None
    params = job.params()
    limit = overrides.limit or config.effective_limit(job_name)
    ctx = FetchContext(
        job=job_name,
        now=scheduled_at,
        environ=environ,
        limit=limit,
        time_range=job.time_range,
        days=job.days,
        since=overrides.since,
        until=overrides.until,
        cursor=cursor_before,
        lookback_days=job.lookback_days,
        settle_hours=job.settle_hours,
        user_timezone=job.user_timezone,
        already_landed=state.landed,
        complete_through=state.complete_through,
    )
    if data_type.follows is not None:
        ctx.upstream_jobs, ctx.upstream = _upstream(config, job.service, data_type.follows, bucket)
    spool = JsonlSpool()
    try:
        _check_dependencies(job_name, job.missing_dependencies(environ))
        spool.max_bytes = limits.max_spool_bytes(environ)
        with service.open_client(ctx) as client:
            records = data_type.fetch(client, ctx)
            if faults.armed(environ):
                records = _crash_midway(records, environ, job_name)
            try:
                spool.write_lines(downstream.lines(data_type, records))
            except SpoolFull as full:
                raise PayloadError(
                    f"{ctx.page or job.service + ': ' + job_name}: the run's landing data "
                    f"passed ELA_MAX_SPOOL_BYTES ({full.limit:,} bytes) at record "
                    f"#{full.records + 1}; nothing was committed"
                ) from full
        objects = []
        if spool.records and not overrides.dry_run:
            name = naming.landing(job.service, job.data_type, scheduled_at, run_id)
            _refuse_another_runs_object(bucket, job.service, job_name, name, run_id)
            faults.point("before_upload", environ, job_name)
            objects.append(dataclasses.asdict(spool.upload(bucket, name)))
            faults.point("after_landing", environ, job_name)
    except Exception as exc:  # every failure is classified, recorded once final, re-raised
        error = service.classify(exc)
        if error is not exc:
            error.__cause__ = exc  # record_failure reports where the original failed
        if final_attempt or not isinstance(error, RetriableError):
            record_failure(
                config,
                job_name,
                run_id=run_id,
                scheduled_at=scheduled_at,
                attempt=attempt,
                error=error,
                ctx=ctx,
                bucket=bucket,
            )
        if error is exc:
            raise
        raise error from exc
    finally:
        spool.close()

    manifest: dict[str, Any] = {
        "job": job_name,
        "service": job.service,
        "data_type": job.data_type,
        "task": job.task,
        "env": config.env,
        "run_id": run_id,
        "attempt": attempt,
        "scheduled_at": scheduled_at.isoformat(),
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "duration_s": round(time.monotonic() - clock, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
        "records": spool.records,
        "objects": objects,
        "cursor_before": cursor_before,
        "cursor_after": ctx.new_cursor if ctx.new_cursor is not None else cursor_before,
        "api_calls": ctx.api_calls,
        "params": {**params, **({"limit": limit} if limit else {})},
        "window": {
            "since": overrides.since.isoformat() if overrides.since else None,
            "until": overrides.until.isoformat() if overrides.until else None,
        },
        "warnings": ctx.warnings,
        "dry_run": overrides.dry_run,
        "bucket": bucket.url,
        **ctx.report,
    }
    update = StateUpdate(
        cursor=ctx.new_cursor,
        landed=ctx.landed,
        landed_floor=ctx.landed_floor,
        complete_through=ctx.new_complete_through,
    )
    recorded = update.recorded()
    if recorded:
        manifest["state_update"] = recorded
    if overrides.dry_run:
        return result("dry_run", manifest)
    with _uninterrupted():
        put_json(bucket, manifest_name, manifest)
        faults.point("after_manifest", environ, job_name)
        if ctx.new_cursor is not None or "state_update" in manifest:
            commit(bucket, job.service, job_name, update, run_id)
    for warning in ctx.warnings:
        log.warning("%s run %s: %s", job_name, run_id, warning)
    return result("succeeded", manifest)


def _upstream(
    config: IngestionConfig, service: str, data_type: str, bucket: Bucket
) -> tuple[tuple[str, ...], dict[str, float]]:
    """The jobs of ``service``/``data_type`` in the config, and the keys they have landed (the
    union of their states' ``landed``): the work list of a data type that follows them."""
    jobs = tuple(
        name
        for name, other in config.jobs.items()
        if other.service == service and other.data_type == data_type
    )
    landed: dict[str, float] = {}
    for name in jobs:
        landed.update(read_state(bucket, service, name).landed)
    return jobs, landed


# What Flower's task page and the worker's success line show first: both cut the result's repr
# (IngestTask.resultrepr_maxsize), and the manifest's own order puts records far down.
RESULT_FIRST = ("job", "records", "objects", "api_calls")


def result(outcome: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The task's result: ``outcome``, then :data:`RESULT_FIRST`, then the rest of the manifest."""
    return {
        "outcome": outcome,
        **{k: manifest[k] for k in RESULT_FIRST if k in manifest},
        **manifest,
    }


def _refuse_another_runs_object(
    bucket: Bucket, service: str, job: str, name: str, run_id: str
) -> None:
    """Landing names carry the run id's first 8 characters (the downstream's names stay
    short), so two runs of a minute whose ids share them would share a name: a chosen id
    (``celery call --task-id``) could overwrite another run's records. An existing object is
    overwritten only if no other committed run of the job lists it (else it is this run's own,
    from an attempt that did not commit). One existence check; a listing only if it exists.

    Raises:
        InputError: the name belongs to another run; nothing is written.
    """
    if not bucket.exists(name):
        return
    prefix = naming.manifests_prefix(service, job) + naming.run8(run_id)
    for info in bucket.list(prefix):
        other = get_json(bucket, info.name) or {}
        listed = {obj.get("name") for obj in other.get("objects") or [] if isinstance(obj, dict)}
        if other.get("run_id") != run_id and name in listed:
            raise InputError(
                f"{job}: run {run_id} would overwrite {name}, which run {other.get('run_id')} "
                "landed; run ids must be unique (let Celery make them)"
            )


def _check_dependencies(job_name: str, missing: list[str]) -> None:
    """Refuse the run, naming every unset variable at once, as the origin's workflow did."""
    if missing:
        raise ReauthError(
            f"{job_name}: {', '.join(missing)} not set (the job's dependencies); set them in "
            "the environment (.env for docker compose) and run it again"
        )


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold back the soft time limit while the run commits (manifest, then cursor).

    Celery's prefork pool delivers the soft limit as SIGUSR1, raising wherever the code is. A
    limit landing between the manifest and the cursor would leave a committed run whose cursor
    never moved, and the next run would land the same window again. The two small writes finish
    first; the limit is raised right after, and the committed run stays committed.
    """
    usr1 = getattr(signal, "SIGUSR1", None)
    if usr1 is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {usr1})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {usr1})


def _crash_midway(
    records: Iterator[Record], environ: Mapping[str, str], job: str
) -> Iterator[Record]:
    """Pass records through; the ``mid_fetch`` crash point fires after the first one."""
    for i, record in enumerate(records):
        yield record
        if i == 0:
            faults.point("mid_fetch", environ, job)


def record_failure(
    config: IngestionConfig,
    job_name: str,
    *,
    run_id: str,
    scheduled_at: datetime,
    attempt: int,
    error: IngestError,
    ctx: FetchContext | None = None,
    bucket: Bucket | None = None,
    environ: Mapping[str, str] = os.environ,
    service: str | None = None,
) -> None:
    """Write the run's error object; never let a failure to record hide the original error.

    ``service``: where to file it when ``job_name`` is not a job of ``config`` (a run refused
    for its inputs, named after its task).
    """
    service = service or config.jobs[job_name].service
    now = datetime.now(UTC)
    cause = error.__cause__ or error
    frames = traceback.extract_tb(cause.__traceback__)
    body = {
        "job": job_name,
        "env": config.env,
        "run_id": run_id,
        "attempt": attempt,
        "kind": error.kind,
        "error": type(error).__name__,
        "message": str(error),
        "scheduled_at": scheduled_at.isoformat(),
        "failed_at": now.isoformat(),
        "cursor": ctx.cursor if ctx else None,
        "api_calls": ctx.api_calls if ctx else None,
        # Where it failed, without values: locals and arguments could hold secrets.
        "where": [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} in {f.name}" for f in frames][-8:],
    }
    try:
        bucket = bucket or open_bucket(bucket_url(config.global_.gcs_bucket, environ), environ)
        put_json(bucket, naming.error(service, job_name, run_id, now), body)
    except Exception:  # recording must not mask the run's own error
        log.exception("could not write the error object for %s run %s", job_name, run_id)
