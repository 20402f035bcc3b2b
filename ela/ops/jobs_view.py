"""The Jobs page's data (``ela flower``, ``/jobs``): each job of the env, its status, its last
runs, and what is in flight.

Runs that ended are read from the bucket, like ``ela status``: :func:`ela.ops.status.collect`
gives each job's last success and failure and its freshness (the same rule), and the job's
manifests and error objects give its last :data:`HISTORY` runs. So the page is right after Redis
is wiped. What is queued, running or waiting for a retry is only in the broker; Flower's event
state knows it, and :func:`in_flight` reads that (any objects with the attributes of Celery's
``events.state.Task``: nothing here imports Celery or Tornado).

Every load lists the bucket again, but reads an object's body only when the object is new or
changed since the last load (:class:`CachedBucket`). With 10,000 manifests in the bucket the
first load reads about :data:`HISTORY` objects per job and the second none (``scripts/bench``,
section 6).
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

from ela import naming
from ela.config import IngestionConfig, Job, JobGroup
from ela.connectors import SERVICES
from ela.ops import status
from ela.run_input import GROUP_TASK, check, check_group, windowed
from ela.sinks import Bucket, ObjectInfo, get_json, parse_bucket_url

HISTORY = 30
"""Runs per job on the page: the chart's bars and the list of runs under it."""

CONSOLE = "https://console.cloud.google.com/storage/browser/_details"
"""Google Cloud Console's page of one object: ``{CONSOLE}/{bucket}/{object}``."""


class CachedBucket:
    """A bucket whose object bodies are kept between page loads.

    A load starts with :meth:`refresh` and ends with :meth:`prune`. Listings are asked of the
    bucket again on each load (once per prefix within a load); a body is fetched only if its
    object was listed with a size or update time other than the one kept. Bodies of objects the
    load did not list are dropped, and an object that was not listed (a run's page asking for
    one manifest) is read every time, since nothing says whether it changed.

    Attributes:
        reads: bodies fetched from the bucket so far (cache misses).
        lists: listings asked of the bucket so far.
    """

    def __init__(self, inner: Bucket) -> None:
        self.inner = inner
        self.url = inner.url
        self.reads = 0
        self.lists = 0
        self._bodies: dict[str, tuple[int, datetime, bytes]] = {}
        self._listings: dict[str, list[ObjectInfo]] = {}
        self._listed: dict[str, ObjectInfo] = {}

    def refresh(self) -> None:
        """Start a new load: every prefix is listed again."""
        self._listings.clear()
        self._listed.clear()

    def prune(self) -> None:
        """End a load: forget the bodies of objects it did not list (deleted, or not asked)."""
        self._bodies = {k: v for k, v in self._bodies.items() if k in self._listed}

    @property
    def kept(self) -> frozenset[str]:
        """The names whose bodies are kept."""
        return frozenset(self._bodies)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        if prefix not in self._listings:
            self.lists += 1
            infos = list(self.inner.list(prefix))
            self._listings[prefix] = infos
            self._listed.update((info.name, info) for info in infos)
        return iter(self._listings[prefix])

    def get_bytes(self, name: str) -> bytes | None:
        info = self._listed.get(name)
        kept = self._bodies.get(name)
        if info is not None and kept is not None and kept[:2] == (info.size, info.updated):
            return kept[2]
        self.reads += 1
        data = self.inner.get_bytes(name)
        if info is not None and data is not None:
            self._bodies[name] = (info.size, info.updated, data)
        return data

    # The page only reads; writes go straight through (the Bucket protocol has them).
    def upload(self, name: str, file: IO[bytes], size: int, content_type: str) -> None:
        self.inner.upload(name, file, size, content_type)

    def put_bytes(self, name: str, data: bytes, content_type: str) -> None:
        self.inner.put_bytes(name, data, content_type)

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def delete(self, name: str) -> None:
        self.inner.delete(name)


@dataclasses.dataclass(frozen=True)
class ObjectLink:
    """Where an object of the bucket can be looked at.

    Attributes:
        name: the object's name in the bucket.
        uri: ``gs://BUCKET/NAME``, or the ``file://`` URI of a local bucket's file.
        console: the object's page in Google Cloud Console (GCS only).
        path: the file's path (a local bucket only).
    """

    name: str
    uri: str
    console: str | None = None
    path: str | None = None


def object_link(bucket_url: str, name: str) -> ObjectLink:
    scheme, where = parse_bucket_url(bucket_url)
    if scheme == "gs":
        return ObjectLink(name, f"gs://{where}/{name}", f"{CONSOLE}/{where}/{quote(name)}")
    path = os.path.join(where, name)
    return ObjectLink(name, Path(path).as_uri(), path=path)


@dataclasses.dataclass(frozen=True)
class Run:
    """One ended run: its manifest (``ok``) or its error object.

    Attributes:
        written: when the object was written (the bucket's update time): runs are in this order.
        records: the manifest's record count (None for a failure).
        kind, message: the error's kind and message (None for a success).
        object: the manifest's or the error object's name.
        landing: the names of the run's landing objects.
    """

    job: str
    run_id: str
    ok: bool
    written: datetime
    scheduled_at: datetime | None
    records: int | None
    kind: str | None
    message: str | None
    object: str
    landing: tuple[str, ...]


def _run(job: str, info: ObjectInfo, ok: bool, body: Mapping[str, Any]) -> Run:
    landing = tuple(str(o.get("name")) for o in body.get("objects") or [] if isinstance(o, dict))
    return Run(
        job=job,
        run_id=str(body.get("run_id") or ""),
        ok=ok,
        written=info.updated,
        scheduled_at=parse_time(body.get("scheduled_at")),
        records=int(body.get("records") or 0) if ok else None,
        kind=None if ok else str(body.get("kind") or "unknown"),
        message=None if ok else str(body.get("message") or ""),
        object=info.name,
        landing=landing,
    )


CHART_HEIGHT = 36
BAR_WIDTH = 6
BAR_STEP = 8  # a bar and the gap after it


@dataclasses.dataclass(frozen=True)
class Bar:
    """One run on a job's chart: ``x`` from the left, ``height`` up from the baseline."""

    run: Run
    x: int
    height: int


def chart(runs: Sequence[Run]) -> list[Bar]:
    """Bars for ``runs`` (oldest first), newest at the right, heights by records.

    A failure is a full-height bar (drawn in the failure colour); a run with no records a 2-pixel
    stub, so that it still shows.
    """
    runs = runs[-HISTORY:]
    most = max((r.records or 0 for r in runs if r.ok), default=0)
    left = (HISTORY - len(runs)) * BAR_STEP
    bars = []
    for i, run in enumerate(runs):
        if not run.ok:
            height = CHART_HEIGHT
        else:
            height = max(2, round(CHART_HEIGHT * (run.records or 0) / most)) if most else 2
        bars.append(Bar(run, left + i * BAR_STEP, height))
    return bars


@dataclasses.dataclass
class JobView:
    """One job's row on the page.

    Attributes:
        next_run: the cron's next tick (UTC); None when the job is disabled.
        runs: its last :data:`HISTORY` runs, oldest first.
        limit: the limit a run uses unless told otherwise (None if the job takes none).
        max_limit: the most the provider's API returns for it (None: no maximum).
        windowed: whether ``since``/``until`` apply to it.
    """

    name: str
    job: Job
    status: status.JobStatus
    next_run: datetime | None
    runs: list[Run]
    takes_limit: bool
    limit: int | None
    max_limit: int | None
    windowed: bool

    @property
    def bars(self) -> list[Bar]:
        return chart(self.runs)

    @property
    def failures(self) -> int:
        return sum(1 for run in self.runs if not run.ok)


@dataclasses.dataclass
class Board:
    """Everything the Jobs page shows from the bucket and the config, as of ``now``.

    Attributes:
        reads: object bodies this load read from the bucket (the rest came from the cache).
    """

    env: str
    bucket: str
    config_path: str
    tz: ZoneInfo
    now: datetime
    jobs: list[JobView]
    groups: dict[str, JobGroup]
    reads: int


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """A run's own object: its manifest, or else its error object, in full."""

    job: str
    run_id: str
    ok: bool
    body: dict[str, Any]
    object: ObjectLink
    landing: tuple[ObjectLink, ...]


class JobsBoard:
    """The env's jobs as the page shows them, read through one :class:`CachedBucket`.

    One load at a time (a lock): the cache is shared by every request of the process.
    """

    def __init__(self, config: IngestionConfig, bucket: Bucket) -> None:
        self.config = config
        self.bucket = CachedBucket(bucket)
        self.last: Board | None = None  # the latest load, for updates that need no new read
        self._lock = threading.Lock()

    def build(self, now: datetime | None = None) -> Board:
        with self._lock:
            self.bucket.refresh()
            reads = self.bucket.reads
            report = status.collect(self.config, self.bucket, now=now)
            # The same listing collect() just made (CachedBucket keeps it for this load), owned
            # by jobs the way `ela status` decides it.
            errors = status._errors_by_job(self.config, self.bucket)
            views = [self._view(js, errors.get(js.job, []), report.now) for js in report.jobs]
            self.bucket.prune()
            self.last = Board(
                env=self.config.env,
                bucket=self.bucket.url,
                config_path=self.config.path,
                tz=self.config.global_.tz,
                now=report.now,
                jobs=views,
                groups=dict(self.config.job_groups),
                reads=self.bucket.reads - reads,
            )
            return self.last

    def _view(self, js: status.JobStatus, errors: list[ObjectInfo], now: datetime) -> JobView:
        job = self.config.jobs[js.job]
        data_type = SERVICES[job.service].data_types[job.data_type]
        listed = [(i, True) for i in self.bucket.list(naming.manifests_prefix(job.service, js.job))]
        latest = sorted([*listed, *((i, False) for i in errors)], key=lambda p: p[0].updated)
        runs = []
        for info, ok in latest[-HISTORY:]:
            body = get_json(self.bucket, info.name)
            if isinstance(body, dict):
                runs.append(_run(js.job, info, ok, body))
        takes_limit = "limit" in data_type.params
        return JobView(
            name=js.job,
            job=job,
            status=js,
            next_run=job.cron.next_runs(self.config.global_.tz, now, 1)[0] if job.enabled else None,
            runs=runs,
            takes_limit=takes_limit,
            limit=self.config.effective_limit(js.job) if takes_limit else None,
            max_limit=data_type.max_limit if takes_limit else None,
            windowed=windowed(data_type),
        )

    def run(self, job_name: str, run_id: str) -> RunRecord | None:
        """``run_id``'s manifest, or else its error object; None if the bucket has neither.

        ``job_name`` must be a job of the config and ``run_id`` a checked run id
        (:func:`ela.run_input.check_run_id`): both become part of object names.
        """
        job = self.config.jobs[job_name]
        url = self.bucket.url
        name = naming.manifest(job.service, job_name, run_id)
        ok = True
        body = get_json(self.bucket.inner, name)
        if body is None:
            ok = False
            own = f"{job_name}_{run_id}.json"
            found = [
                info
                for info in self.bucket.inner.list(naming.errors_prefix(job.service))
                if info.name.rsplit("/", 1)[-1] == own
            ]
            if not found:
                return None
            name = max(found, key=lambda info: info.updated).name
            body = get_json(self.bucket.inner, name)
        if not isinstance(body, dict):
            return None
        landing = tuple(
            object_link(url, str(o["name"]))
            for o in body.get("objects") or []
            if isinstance(o, dict) and o.get("name")
        )
        return RunRecord(job_name, run_id, ok, body, object_link(url, name), landing)


# -- Run now -------------------------------------------------------------------------------------

OVERRIDES = ("limit", "since", "until")
"""The Run form's fields: the overrides a job may take (ela.run_input says which apply)."""

_WHOLE = re.compile(r"[+-]?\d+")


def run_request(
    config: IngestionConfig, target: str, form: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    """The task and keyword arguments that run ``target`` (a job or a group) with the form's
    overrides, checked by :mod:`ela.run_input` like every other way of sending a run.

    Form fields are text: an empty one is left out, a whole number given for ``limit`` is sent as
    one, and anything else goes to the schema as typed, which refuses it naming the field.

    Raises:
        InputError: one line, ``task: field: what is wrong``.
    """
    overrides: dict[str, Any] = {}
    for field in OVERRIDES:
        text = (form.get(field) or "").strip()
        if text:
            overrides[field] = int(text) if field == "limit" and _WHOLE.fullmatch(text) else text
    if target in config.jobs:
        task = config.jobs[target].task
        return task, check(config, task, {**overrides, "job": target}).kwargs()
    check_group(config, {**overrides, "group": target})
    return GROUP_TASK, {**overrides, "group": target}


# -- in flight (Flower's event state) -------------------------------------------------------------


class TaskState(Protocol):
    """What :func:`in_flight` reads of a task in Flower's state (``celery.events.state.Task``)."""

    uuid: str
    name: str | None
    state: str
    kwargs: Any
    retries: int | None
    eta: Any
    timestamp: float | None


# Celery's task states of a run that has not ended, as the page words them. A retry waits in the
# worker for its countdown: RETRY until the worker receives the new message, then RECEIVED again
# with ``retries`` > 0 and an ``eta``.
_WAITING = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "STARTED": "running",
    "RETRY": "retry waiting",
}
ENDED = frozenset({"SUCCESS", "FAILURE", "REVOKED", "REJECTED", "IGNORED"})


@dataclasses.dataclass(frozen=True)
class Flight:
    """A run that has not ended: queued, running, or waiting for its retry.

    Attributes:
        target: the job (or, for ``tasks.run_group``, the group) it runs.
        state: ``queued``, ``running`` or ``retry waiting``.
        since: the time of its latest event.
        eta: when a waiting retry is due.
    """

    run_id: str
    target: str
    task: str
    state: str
    since: datetime | None
    eta: datetime | None
    retries: int


def in_flight(tasks: Iterable[TaskState], config: IngestionConfig) -> dict[str, list[Flight]]:
    """The env's runs that have not ended, by job or group name, oldest first."""
    found: dict[str, list[Flight]] = {}
    for task in tasks:
        if task.state not in _WAITING:
            continue
        target = run_target(task, config)
        if target is None:
            continue
        retries = int(task.retries or 0)
        state = "retry waiting" if task.state == "RECEIVED" and retries else _WAITING[task.state]
        stamp = datetime.fromtimestamp(task.timestamp, UTC) if task.timestamp else None
        flight = Flight(
            task.uuid, target, str(task.name), state, stamp, parse_time(task.eta), retries
        )
        found.setdefault(target, []).append(flight)
    for flights in found.values():
        flights.sort(key=lambda f: f.since or _EPOCH)
    return found


def run_target(task: TaskState, config: IngestionConfig) -> str | None:
    """The job a task runs (or the group, for ``tasks.run_group``), if it is one of ``config``'s.

    Flower knows a task's keyword arguments as the repr the worker sent in its events.
    """
    kwargs = _kwargs(task.kwargs)
    if task.name == GROUP_TASK:
        group = kwargs.get("group")
        return group if isinstance(group, str) and group in config.job_groups else None
    job = kwargs.get("job")
    if job is None and task.name:
        try:
            job = config.job_for_task(task.name)
        except (KeyError, ValueError):  # not one of ours, or ambiguous without job=
            return None
    if not isinstance(job, str) or job not in config.jobs or config.jobs[job].task != task.name:
        return None
    return job


_JOB_KWARG = re.compile(r"""['"](job|group)['"]:\s*['"]([a-z][a-z0-9_]*)['"]""")


def _kwargs(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        return {}
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        # Celery cuts long reprs ("..."); the job's name comes early.
        return {m.group(1): m.group(2) for m in _JOB_KWARG.finditer(value)}
    return parsed if isinstance(parsed, dict) else {}


def activity(
    tasks: Iterable[TaskState], config: IngestionConfig, after: float
) -> tuple[float, set[str], bool]:
    """What happened to the env's runs after ``after`` (a Flower event timestamp).

    Returns:
        The newest event's timestamp (``after`` if none is newer), the jobs and groups whose runs
        had events since, and whether one of those runs ended (then the bucket has news).
    """
    newest, changed, ended = after, set(), False
    for task in tasks:
        stamp = task.timestamp or 0.0
        if stamp <= after:
            continue
        target = run_target(task, config)
        if target is None:
            continue
        newest = max(newest, stamp)
        changed.add(target)
        ended = ended or task.state in ENDED
    return newest, changed, ended


# -- formatting ----------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string (a naive one is UTC) or a datetime → an aware UTC datetime."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def local_time(value: Any, tz: ZoneInfo) -> str:
    """``2025-11-01 15:00 CET`` in the config's zone (``-`` for nothing)."""
    moment = parse_time(value)
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if moment else "-"


def utc_time(value: Any) -> str:
    """``2025-11-01 14:00 UTC``."""
    moment = parse_time(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def both_times(value: Any, tz: ZoneInfo) -> str:
    """``2025-11-01 15:00 CET · 14:00 UTC``; the UTC time alone when the config's zone is UTC."""
    moment = parse_time(value)
    if moment is None:
        return "-"
    local = moment.astimezone(tz)
    if local.tzname() == "UTC":
        return utc_time(moment)
    return f"{local_time(moment, tz)} · {moment:%H:%M} UTC"


def ago(value: Any, now: datetime) -> str:
    """``45 s ago``, ``12 min ago``, ``3.5 h ago``, ``2.0 d ago``; ``in 5 min`` for the future."""
    moment = parse_time(value)
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    if -5 < seconds < 0:  # an event stamped by a worker whose clock runs a little ahead
        seconds = 0.0
    span = abs(seconds)
    if span < 90:
        text = f"{span:.0f} s"
    elif span < 5400:
        text = f"{span / 60:.0f} min"
    elif span < 172800:
        text = f"{span / 3600:.1f} h"
    else:
        text = f"{span / 86400:.1f} d"
    return f"{text} ago" if seconds >= 0 else f"in {text}"
