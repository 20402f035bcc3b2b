"""Per-job status read only from the bucket: last success, last failure, freshness, totals.

The manifests (``{service}/_runs/{job}/``) and error objects (``{service}/errors/``) are the
durable record of every run (docs/landing.md), so this works after Redis is flushed and for runs
started from beat, ``ela run``, Flower or ``celery call`` alike.

Freshness compares the last success's *scheduled* time with the job's own cron: the latest tick
that should have run by now is "due"; every tick after the last success up to now is a missed
tick. One missed tick is normal while a run is in flight; two or more means runs are failing
or not being scheduled, so the job is flagged ``stale``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ela import cron, naming
from ela.config import IngestionConfig, Job
from ela.sinks import Bucket, ObjectInfo, get_json
from ela.text import age, plural

# Past this many missed ticks the exact count stops mattering; it also bounds the cron walk
# for an hourly job whose last success is months old.
MAX_MISSED = 10_000
STALE_AFTER_MISSED = 2
# How much earlier than the newest manifest a run of a later tick may have been committed: a
# retry waits up to 15 minutes (worker.settings.MAX_RETRY_COUNTDOWN) before it commits.
SETTLE = timedelta(minutes=20)

_Reader = Callable[[str], Any]
"""An object name → its JSON body (None if missing): :func:`ela.sinks.get_json` on one bucket."""


_WINDOW = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_WINDOW_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_window(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` → a timedelta.

    Raises:
        ValueError: a one-line message naming the accepted forms.
    """
    match = _WINDOW.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"--window {text!r}: expected a positive number and a unit m, h, d or w")
    return timedelta(**{_WINDOW_UNITS[match.group(2)]: int(match.group(1))})


@dataclasses.dataclass(frozen=True)
class Freshness:
    """How a job stands against its schedule.

    Attributes:
        state: ``fresh`` (the due tick has run), ``late`` (one tick missed), ``stale`` (two or
            more), ``never`` (no success in the bucket) or ``disabled``.
        due_at: the latest tick at or before now that should have produced a run.
        missed_ticks: ticks after the last success's scheduled time up to now (None if never).
        behind_s: seconds from the last success's scheduled time to ``due_at`` (0 when fresh).
    """

    state: str
    due_at: datetime | None
    missed_ticks: int | None
    behind_s: int | None

    @property
    def stale(self) -> bool:
        return self.state == "stale"

    def text(self) -> str:
        """In words, as ``ela status`` and Flower's Jobs page say it."""
        if self.state in ("fresh", "disabled"):
            return self.state
        if self.state == "never":
            return "never succeeded"
        ticks = plural(self.missed_ticks or 0, "tick")
        return f"{self.state}: {ticks} missed, {age(self.behind_s or 0)} behind"


def freshness(
    job: Job, tz: ZoneInfo, last_scheduled_at: datetime | None, now: datetime
) -> Freshness:
    """Compare the last success's scheduled time with the job's cron at ``now``."""
    if not job.enabled:
        return Freshness("disabled", None, None, None)
    schedule = job.cron
    try:
        due = schedule.previous_run(tz, now)
    except cron.CronError:  # a yearly cron that has not fired yet: nothing can be late
        due = None
    if last_scheduled_at is None:
        return Freshness("never", due, None, None)
    if due is None or last_scheduled_at >= due:
        return Freshness("fresh", due, 0, 0)
    missed = count_ticks(schedule, tz, last_scheduled_at, now)
    state = "stale" if missed >= STALE_AFTER_MISSED else "late"
    return Freshness(state, due, missed, int((due - last_scheduled_at).total_seconds()))


def count_ticks(schedule: cron.Cron, tz: ZoneInfo, after: datetime, until: datetime) -> int:
    """Fire times strictly after ``after`` and at or before ``until`` (at most MAX_MISSED)."""
    count, cursor = 0, after
    while count < MAX_MISSED:
        batch = schedule.next_runs(tz, cursor, 500)
        inside = [run for run in batch if run <= until]
        count += len(inside)
        if len(inside) < len(batch) or not batch:
            break
        cursor = batch[-1]
    return min(count, MAX_MISSED)


@dataclasses.dataclass
class Totals:
    """A job's runs over the ``--stats`` window (by scheduled time)."""

    runs: int = 0
    records: int = 0
    api_calls: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    cpu_s: float | None = None  # None until the pipeline records cpu_s in its manifests
    failures: int = 0
    gaps: int = 0  # runs whose source may have dropped records before they were read

    def add(self, manifest: dict[str, Any]) -> None:
        self.runs += 1
        self.records += int(manifest.get("records") or 0)
        self.api_calls += int(manifest.get("api_calls") or 0)
        self.bytes += sum(int(obj.get("size") or 0) for obj in manifest.get("objects") or [])
        self.duration_s += float(manifest.get("duration_s") or 0)
        if manifest.get("cpu_s") is not None:
            self.cpu_s = (self.cpu_s or 0.0) + float(manifest["cpu_s"])
        self.gaps += 1 if manifest.get("possible_gap") else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "failures": self.failures,
            "records": self.records,
            "api_calls": self.api_calls,
            "bytes": self.bytes,
            "duration_s": round(self.duration_s, 3),
            "cpu_s": round(self.cpu_s, 3) if self.cpu_s is not None else None,
            "gaps": self.gaps,
        }


@dataclasses.dataclass
class JobStatus:
    job: str
    service: str
    schedule: str
    enabled: bool
    last_success: dict[str, Any] | None
    last_failure: dict[str, Any] | None
    freshness: Freshness
    totals: Totals | None = None

    def as_json(self) -> dict[str, Any]:
        fresh = self.freshness
        value: dict[str, Any] = {
            "job": self.job,
            "service": self.service,
            "schedule": self.schedule,
            "enabled": self.enabled,
            "last_success": self.last_success,
            "last_failure": self.last_failure,
            "failing": failing_since_success(self),
            "freshness": {
                "state": fresh.state,
                "stale": fresh.stale,
                "due_at": iso(fresh.due_at),
                "missed_ticks": fresh.missed_ticks,
                "behind_s": fresh.behind_s,
            },
        }
        if self.totals is not None:
            value["stats"] = self.totals.as_json()
        return value


@dataclasses.dataclass
class StatusReport:
    env: str
    bucket: str
    now: datetime
    window_start: datetime | None
    jobs: list[JobStatus]

    def as_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "bucket": self.bucket,
            "now": iso(self.now),
            "window_start": iso(self.window_start),
            "jobs": [job.as_json() for job in self.jobs],
        }


def collect(
    config: IngestionConfig,
    bucket: Bucket,
    *,
    now: datetime | None = None,
    window: timedelta | None = None,
) -> StatusReport:
    """Every job's status from ``bucket``; with ``window``, totals over that window too.

    Only the newest manifest of each job is read for the status (manifests are found by their
    objects' update times, since run ids are not ordered); ``window`` also reads every manifest
    written within it. Each manifest is read once: the newest ones are usually in the window.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    since = now - window if window is not None else None
    tz = config.global_.tz
    errors = _errors_by_job(config, bucket)
    statuses = []
    for name, job in config.jobs.items():
        infos = list(bucket.list(naming.manifests_prefix(job.service, name)))
        # One cache per job: on GCS every read is a round trip, and a job's manifests are
        # only ever wanted while its own status is built.
        read: _Reader = functools.cache(functools.partial(get_json, bucket))
        latest = _latest_manifest(read, infos)
        last_success = _success_summary(latest) if latest else None
        last_scheduled = _parse_time(latest.get("scheduled_at")) if latest else None
        failures = errors.get(name, [])
        last_failure = _failure_summary(bucket, failures[-1]) if failures else None
        totals = None
        if since is not None:
            totals = _totals(read, infos, since)
            totals.failures = sum(1 for info in failures if info.updated >= since)
        statuses.append(
            JobStatus(
                job=name,
                service=job.service,
                schedule=job.schedule,
                enabled=job.enabled,
                last_success=last_success,
                last_failure=last_failure,
                freshness=freshness(job, tz, last_scheduled, now),
                totals=totals,
            )
        )
    return StatusReport(config.env, bucket.url, now, since, statuses)


def _latest_manifest(read: _Reader, infos: list[ObjectInfo]) -> dict[str, Any] | None:
    """The job's latest own run: the manifest with the latest scheduled time among runs that
    fetched the job's own window, not an explicit one.

    A backfill chunk (or ``ela run --since``) is stamped with its window's end, which can be
    years back: counting it as the last run would call a job that just ran stale. Manifests are
    read newest first (by when they were written) until one of the job's own runs is found, and
    then those written up to :data:`SETTLE` before it, since a retried run commits a little
    after a later one may have.
    """
    best: dict[str, Any] | None = None
    best_written: datetime | None = None
    for info in sorted(infos, key=lambda info: info.updated, reverse=True):
        if best_written is not None and info.updated < best_written - SETTLE:
            break
        manifest = read(info.name)
        if not manifest or _explicit_window(manifest):
            continue
        if best_written is None:
            best_written = info.updated
        scheduled = _parse_time(manifest.get("scheduled_at")) or _EPOCH
        if best is None or scheduled > (_parse_time(best.get("scheduled_at")) or _EPOCH):
            best = manifest
    return best


def _explicit_window(manifest: dict[str, Any]) -> bool:
    window = manifest.get("window")
    return isinstance(window, dict) and any(window.get(end) for end in ("since", "until"))


def _totals(read: _Reader, infos: Iterable[ObjectInfo], since: datetime) -> Totals:
    totals = Totals()
    # A manifest is written after its run finished, so one last written before the window
    # started cannot hold a run scheduled inside it: skip reading those.
    for info in infos:
        if info.updated < since:
            continue
        manifest = read(info.name)
        scheduled = _parse_time(manifest.get("scheduled_at")) if manifest else None
        if manifest and scheduled is not None and scheduled >= since:
            totals.add(manifest)
    return totals


def _errors_by_job(config: IngestionConfig, bucket: Bucket) -> dict[str, list[ObjectInfo]]:
    """Error objects per job, oldest first, read from one listing per service.

    Error names are ``{job}_{run_id}.json``; the longest job name that prefixes one owns it, so
    ``garmin_sleep`` never claims ``garmin_sleep_extra``'s errors.
    """
    found: dict[str, list[ObjectInfo]] = {}
    for service in dict.fromkeys(job.service for job in config.jobs.values()):
        names = sorted(
            (n for n, j in config.jobs.items() if j.service == service), key=len, reverse=True
        )
        for info in bucket.list(naming.errors_prefix(service)):
            base = info.name.rsplit("/", 1)[-1]
            owner = next((n for n in names if base.startswith(f"{n}_")), None)
            if owner is not None:
                found.setdefault(owner, []).append(info)
    for infos in found.values():
        infos.sort(key=lambda info: (naming.error_day(info.name) or _EPOCH, info.updated))
    return found


def _success_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": manifest.get("run_id"),
        "scheduled_at": manifest.get("scheduled_at"),
        "finished_at": manifest.get("finished_at"),
        "records": manifest.get("records"),
        "duration_s": manifest.get("duration_s"),
        "possible_gap": manifest.get("possible_gap"),
    }


def _failure_summary(bucket: Bucket, info: ObjectInfo) -> dict[str, Any]:
    body = get_json(bucket, info.name) or {}
    return {
        "run_id": body.get("run_id"),
        "failed_at": body.get("failed_at") or iso(info.updated),
        "scheduled_at": body.get("scheduled_at"),
        "kind": body.get("kind"),
        "message": body.get("message"),
        "object": info.name,
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def failing_since_success(status: JobStatus) -> bool:
    """Whether the job's newest failure is later than its newest success."""
    failure = status.last_failure
    if failure is None:
        return False
    failed_at = _parse_time(failure.get("failed_at"))
    success = status.last_success
    finished = _parse_time(success.get("finished_at")) if success else None
    return failed_at is not None and (finished is None or failed_at > finished)
