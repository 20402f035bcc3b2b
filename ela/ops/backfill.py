"""Backfill: a past date window of one job, landed as a sequence of deterministic chunk runs.

A backfill is cut into chunks of whole UTC days. Each chunk is an ordinary run of the job with
an explicit window (``since`` / ``until``), so it lands exactly as a scheduled run does:
landing object, manifest, cursor rules. What makes it resumable is the run id: a chunk's id is
derived from (env, job, window) alone, so re-running the same command gives every chunk the id
it had before, and a chunk that was committed is recognised by its manifest in the bucket
(``run_job`` answers ``already_committed`` without calling the provider). The bucket is the
durable record; nothing about a backfill's progress is kept anywhere else.

Chunks run one after another, paced so that the backfill stays inside the provider's rate
limits (Strava: 100 reads per 15 minutes, 1,000 per day), leaving room for the scheduled runs
that share the same quota. A retriable failure (a rate limit, a 5xx) waits for as long as the
provider asked, then runs the same chunk again under the same id.

Cursors: a chunk is a run like any other, and ``state.advance_cursor`` moves a cursor only
forwards, so a backfill of the past never rewinds a job. For Strava activities the connector
moves the cursor only when a window joins the committed range (``since`` at or before the
cursor); a window that starts after the cursor leaves it where it is, so the next scheduled run
still fetches the gap between the cursor and that window instead of skipping it.

Domain code only: no Celery here. How a chunk is run (in this process, or sent to the workers
and awaited) is the caller's :data:`RunChunk`; :func:`inline_runner` is the in-process one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from ela.config import IngestionConfig
from ela.connectors import data_type as registered
from ela.connectors.pacing import SLACK_S, BackfillProfile, Quota
from ela.errors import FatalError, IngestError, RetriableError
from ela.sinks import Bucket

# Consecutive retriable failures of one chunk before the backfill stops (re-run to resume).
# A rate-limit wait counts once however long it is, so this bounds flapping 5xx, not quotas.
MAX_ATTEMPTS = 8

# Run ids of backfill chunks live in their own uuid5 namespace.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "ela-ingest:backfill")


def backfill_profile(service: str, data_type: str) -> BackfillProfile | None:
    """How the data type is backfilled, as its connector declares it; None if it cannot be."""
    return registered(service, data_type).backfill


def backfillable_jobs(config: IngestionConfig) -> list[str]:
    """The config's jobs whose data type takes a date window."""
    return [n for n, j in config.jobs.items() if backfill_profile(j.service, j.data_type)]


# -- the plan ----------------------------------------------------------------------------------


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def chunk_run_id(env: str, job: str, first: date, last: date) -> str:
    """The run id of the chunk covering ``first``..``last`` (UTC days, both included).

    Deterministic: the same command gives each chunk the same id, so a committed chunk is found
    by its manifest and a half-landed one rewrites its own objects.
    """
    return str(uuid.uuid5(NAMESPACE, f"{env}/{job}/{first.isoformat()}/{last.isoformat()}"))


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One run of a backfill: UTC days ``first``..``last``, both included.

    Attributes:
        since / until: the window as the job's connector reads it (Strava's ``until`` is the
            next midnight, excluded; Garmin's is the last day, included).
        scheduled_at: the window's end (midnight after ``last``): the landing object's
            timestamp, fixed so that a re-run names its objects the same way.
    """

    index: int
    count: int
    first: date
    last: date
    since: datetime
    until: datetime
    scheduled_at: datetime
    run_id: str

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def label(self) -> str:
        return f"{self.first.isoformat()}..{self.last.isoformat()}"

    def task_kwargs(self, job: str, limit: int | None) -> dict[str, Any]:
        """What ``tasks.<service>.<data_type>`` is sent (task id: :attr:`run_id`)."""
        kwargs: dict[str, Any] = {
            "job": job,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "scheduled_at": self.scheduled_at.isoformat(),
        }
        if limit is not None:
            kwargs["limit"] = limit
        return kwargs


@dataclasses.dataclass(frozen=True)
class Plan:
    env: str
    job: str
    task: str
    queue: str
    incremental: bool
    first: date
    last: date
    chunk_days: int
    profile: BackfillProfile
    chunks: tuple[Chunk, ...]


def plan(
    config: IngestionConfig,
    job: str,
    since: date,
    until: date | None = None,
    chunk_days: int | None = None,
    *,
    today: date | None = None,
) -> Plan:
    """Cut ``since``..``until`` (UTC days, both included; ``until`` defaults to today) into
    chunks of ``chunk_days`` (default: the provider's), aligned on ``since``.

    Raises:
        ValueError: a one-line message (unknown or non-windowed job, bad dates or chunk size).
    """
    can = ", ".join(backfillable_jobs(config)) or "none in this config"
    if job not in config.jobs:
        raise ValueError(f"unknown job {job!r}; jobs that can be backfilled: {can}")
    spec = config.jobs[job]
    profile = backfill_profile(spec.service, spec.data_type)
    if profile is None:
        raise ValueError(
            f"{job} cannot be backfilled ({spec.task} takes no date window); "
            f"jobs that can be backfilled: {can}"
        )
    today = today or datetime.now(UTC).date()
    last = until or today
    if since > last:
        raise ValueError(f"--since {since} is after --until {last}")
    if last > today:
        raise ValueError(f"--until {last} is in the future (today is {today} UTC)")
    size = chunk_days or profile.chunk_days
    # A chunk is one run: at most what one run of the type may ask for.
    most = profile.max_chunk_days or registered(spec.service, spec.data_type).max_days or size
    if not 1 <= size <= most:
        raise ValueError(f"--chunk-days {size}: a {spec.service} run may cover 1 to {most} days")
    total = (last - since).days + 1
    count = math.ceil(total / size)
    chunks = []
    for i in range(count):
        first = since + timedelta(days=i * size)
        end = min(first + timedelta(days=size - 1), last)
        chunks.append(
            Chunk(
                index=i + 1,
                count=count,
                first=first,
                last=end,
                since=midnight(first),
                until=midnight(end + timedelta(days=1))
                if profile.until_exclusive
                else midnight(end),
                scheduled_at=midnight(end + timedelta(days=1)),
                run_id=chunk_run_id(config.env, job, first, end),
            )
        )
    return Plan(
        env=config.env,
        job=job,
        task=spec.task,
        queue=config.queue(spec.service),
        incremental=registered(spec.service, spec.data_type).incremental,
        first=since,
        last=last,
        chunk_days=size,
        profile=profile,
        chunks=tuple(chunks),
    )


# -- pacing ------------------------------------------------------------------------------------


class Pacer:
    """Keeps a backfill's API calls inside the provider's windows.

    It counts what this backfill spent (by the clock of each chunk's end) and, before a chunk,
    waits for the next window when the chunk's estimate would take a window past its budget.
    Other users of the quota (scheduled runs) are what the headroom is for; if they spend more,
    the provider's 429 and its retry_after take over (see :func:`run_backfill`).

    Args:
        quotas: the provider's windows.
        clock: epoch seconds now (tests pass a fake one).
        sleep: waits that many seconds (tests pass one that moves the fake clock).
    """

    def __init__(
        self,
        quotas: Sequence[Quota] = (),
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.quotas = tuple(quotas)
        self.clock = clock
        self.sleep = sleep
        self.spent: list[tuple[float, int]] = []
        self.waited = 0.0

    def used(self, quota: Quota, now: float | None = None) -> int:
        """Calls this backfill spent in ``quota``'s current window."""
        now = self.clock() if now is None else now
        start = quota.window_start(now)
        return sum(calls for at, calls in self.spent if at >= start)

    def delay(self, calls: int) -> tuple[float, Quota | None]:
        """How long to wait before spending ``calls`` now, and the window that makes us wait."""
        now = self.clock()
        wait, which = 0.0, None
        for quota in self.quotas:
            # A chunk bigger than a whole window's budget can only start in a fresh window.
            need = min(calls, quota.budget)
            if self.used(quota, now) + need > quota.budget:
                seconds = quota.resets_in(now) + SLACK_S
                if seconds > wait:
                    wait, which = seconds, quota
        return wait, which

    def record(self, calls: int) -> None:
        if calls > 0:
            self.spent.append((self.clock(), calls))

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self.waited += seconds
            self.sleep(seconds)


# -- running -----------------------------------------------------------------------------------

RunChunk = Callable[[Chunk, int], dict[str, Any]]
"""Runs one chunk (attempt number given) and returns its manifest with ``outcome``
(``succeeded`` or ``already_committed``); raises :class:`IngestError` when it fails."""

EventKind = Literal["start", "done", "wait", "retry", "failed"]


@dataclasses.dataclass(frozen=True)
class ChunkResult:
    chunk: Chunk
    outcome: str  # succeeded | already_committed | failed
    records: int = 0
    api_calls: int = 0
    objects: tuple[str, ...] = ()
    attempts: int = 1
    cursor_after: Any = None
    error: str | None = None
    error_kind: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunk": self.chunk.index,
            "first": self.chunk.first.isoformat(),
            "last": self.chunk.last.isoformat(),
            "since": self.chunk.since.isoformat(),
            "until": self.chunk.until.isoformat(),
            "run_id": self.chunk.run_id,
            "outcome": self.outcome,
            "records": self.records,
            "api_calls": self.api_calls,
            "objects": list(self.objects),
            "attempts": self.attempts,
            **({"error": self.error, "error_kind": self.error_kind} if self.error else {}),
        }


@dataclasses.dataclass(frozen=True)
class Event:
    """What the runner tells its progress display.

    ``wait``: before a chunk, to stay in a window (``quota`` names it); ``retry``: after a
    retriable failure, before the same chunk runs again.
    """

    kind: EventKind
    chunk: Chunk
    done: int  # chunks finished so far
    seconds: float = 0.0
    reason: str = ""
    result: ChunkResult | None = None


@dataclasses.dataclass
class Backfill:
    """A plan being run: its results so far survive an interrupt (Ctrl-C) for the report."""

    plan: Plan
    results: list[ChunkResult] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> ChunkResult | None:
        return next((r for r in self.results if r.outcome == "failed"), None)

    @property
    def complete(self) -> bool:
        return len(self.results) == len(self.plan.chunks) and self.failed is None

    def totals(self) -> dict[str, int]:
        count: dict[str, int] = {"succeeded": 0, "already_committed": 0, "failed": 0}
        for r in self.results:
            count[r.outcome] = count.get(r.outcome, 0) + 1
        return {
            "chunks": len(self.plan.chunks),
            **count,
            "remaining": len(self.plan.chunks) - count["succeeded"] - count["already_committed"],
            "records": sum(r.records for r in self.results),
            "api_calls": sum(r.api_calls for r in self.results),
        }

    def as_dict(self, waited: float = 0.0) -> dict[str, Any]:
        p = self.plan
        last = next((r for r in reversed(self.results) if r.outcome != "failed"), None)
        return {
            "env": p.env,
            "job": p.job,
            "task": p.task,
            "queue": p.queue,
            "since": p.first.isoformat(),
            "until": p.last.isoformat(),
            "chunk_days": p.chunk_days,
            "complete": self.complete,
            "totals": self.totals(),
            "waited_s": round(waited, 1),
            **({"cursor_after": last.cursor_after} if p.incremental and last else {}),
            "chunks": [r.as_dict() for r in self.results],
        }


def run_backfill(
    backfill: Backfill,
    run_chunk: RunChunk,
    *,
    pacer: Pacer | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    max_attempts: int = MAX_ATTEMPTS,
) -> Backfill:
    """Run every chunk of the plan in order; stop at the first chunk that fails for good.

    A retriable failure waits (the error's ``retry_after``, else the provider's fallback) and
    runs the same chunk again under the same run id, up to ``max_attempts`` times in a row.
    Anything else — re-auth, payload, fatal — stops the backfill; the chunks before it stay
    committed, so re-running the same command resumes there.
    """
    plan_ = backfill.plan
    profile = plan_.profile
    pacer = pacer or Pacer(profile.quotas)
    most_records = 0

    def stop(result: ChunkResult) -> Backfill:
        """Record the chunk that failed for good, announce it, and end the backfill there."""
        finished = len(backfill.results)  # chunks before this one
        backfill.results.append(result)
        on_event(Event("failed", result.chunk, finished, result=result))
        return backfill

    for chunk in plan_.chunks:
        done = len(backfill.results)
        estimate = profile.estimate(chunk.days, most_records)
        attempt = 0
        while True:
            wait, quota = pacer.delay(estimate)
            if wait > 0 and quota is not None:
                used = pacer.used(quota)
                reason = f"{quota.name} window: {used} of {quota.budget} calls spent"
                on_event(Event("wait", chunk, done, seconds=wait, reason=reason))
                pacer.pause(wait)
                continue
            on_event(Event("start", chunk, done))
            try:
                manifest = run_chunk(chunk, attempt)
            except RetriableError as exc:
                pacer.record(estimate)  # what a refused or partial attempt spent is unknown
                attempt += 1
                if attempt >= max_attempts:
                    return stop(_failed(chunk, exc, attempt, f" (after {attempt} attempts)"))
                seconds = (
                    exc.retry_after + SLACK_S
                    if exc.retry_after is not None
                    else profile.fallback_wait(pacer.clock(), attempt - 1)
                )
                on_event(Event("retry", chunk, done, seconds=seconds, reason=str(exc)))
                pacer.pause(seconds)
                continue
            except IngestError as exc:
                return stop(_failed(chunk, exc, attempt + 1))
            break
        result = _result(chunk, manifest, attempt + 1)
        pacer.record(result.api_calls)
        most_records = max(most_records, result.records)
        if profile.limit is not None and result.records >= profile.limit:
            # The run stopped at its limit: later records of the window may not have landed.
            error = FatalError(
                f"chunk {chunk.label} landed {result.records} records, the most one run may; "
                "the rest of its window may be missing: use a smaller --chunk-days"
            )
            return stop(
                dataclasses.replace(
                    result, outcome="failed", error=str(error), error_kind=error.kind
                )
            )
        backfill.results.append(result)
        on_event(Event("done", chunk, done + 1, result=result))
    return backfill


def _result(chunk: Chunk, manifest: Mapping[str, Any], attempts: int) -> ChunkResult:
    outcome = str(manifest.get("outcome", "succeeded"))
    fresh = outcome != "already_committed"  # a committed chunk called nobody this time
    return ChunkResult(
        chunk=chunk,
        outcome=outcome,
        records=int(manifest.get("records") or 0),
        api_calls=int(manifest.get("api_calls") or 0) if fresh else 0,
        objects=tuple(str(o["name"]) for o in manifest.get("objects") or ()),
        attempts=attempts,
        cursor_after=manifest.get("cursor_after"),
    )


def _failed(chunk: Chunk, exc: IngestError, attempts: int, suffix: str = "") -> ChunkResult:
    return ChunkResult(
        chunk=chunk,
        outcome="failed",
        attempts=attempts,
        error=f"{exc}{suffix}",
        error_kind=exc.kind,
    )


def inline_runner(
    config: IngestionConfig,
    plan_: Plan,
    *,
    bucket: Bucket | None = None,
    environ: Mapping[str, str] = os.environ,
    max_attempts: int = MAX_ATTEMPTS,
) -> RunChunk:
    """Run chunks in this process through :func:`ela.pipeline.run_job`, as a worker would."""
    from ela.pipeline import Overrides, run_job

    def run(chunk: Chunk, attempt: int) -> dict[str, Any]:
        return run_job(
            config,
            plan_.job,
            run_id=chunk.run_id,
            scheduled_at=chunk.scheduled_at,
            overrides=Overrides(limit=plan_.profile.limit, since=chunk.since, until=chunk.until),
            final_attempt=attempt + 1 >= max_attempts,
            attempt=attempt,
            bucket=bucket,
            environ=environ,
        )

    return run
