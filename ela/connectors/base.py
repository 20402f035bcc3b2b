"""The one shape every connector has.

A provider is a :class:`Service`: a way to open an authenticated client (the adapter that points
the real client library at ``*_API_URL`` endpoints, with timeouts and call counting) and an
error map. Each of its data types is one generator function registered with
``@service.data_type(...)`` that takes the client and a :class:`FetchContext` and yields the
provider's records unchanged (a per-day record wrapped in :class:`DayRecord`; what the
downstream needs of records is done in one place, :mod:`ela.downstream`). Adding a data type
is adding one such function.

What every provider shares lives here, once: :class:`Paginator` (the way through a paged
endpoint, which refuses a source that loops), :func:`http_error` (what an HTTP status means to
the caller) and :func:`read_body` (a response body, refused past ``ELA_MAX_BODY_BYTES``). The
one URL rewrite and host check is :class:`ela.endpoints.Hosts`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar, get_args
from urllib.parse import urlsplit

import orjson

from ela.connectors.pacing import BackfillProfile
from ela.endpoints import origin
from ela.errors import (
    FatalError,
    IngestError,
    PayloadError,
    ReauthError,
    RetriableError,
    TimeLimitError,
)

Param = Literal[
    "limit",
    "time_range",
    "days",
    "lookback_days",
    "settle_hours",
    "user_timezone",
    "follow_up_plays",
]
PARAMS: tuple[Param, ...] = get_args(Param)
# How far past now a cursor may move. A record stamped later than this (a device whose clock is
# wrong: a play "in 9999") still lands, with a warning, but never moves a cursor past now, where
# it would make every later run skip what really comes next.
FUTURE_SKEW = timedelta(minutes=10)
Record = dict[str, Any]
C = TypeVar("C")
K = TypeVar("K")
T = TypeVar("T")
Page = TypeVar("Page", bound=Sequence[Any])


class DayRecord(dict[str, Any]):
    """A record of one calendar day (Garmin sleep, heart rate): the provider's object, and the
    day it was asked for, which :mod:`ela.downstream` stamps on it as ``date``."""

    def __init__(self, record: Record, day: date) -> None:
        super().__init__(record)
        self.day = day


@dataclasses.dataclass
class FetchContext:
    """What a data-type function needs for one run, and what it reports back.

    Attributes:
        job: the job name, for messages.
        limit / time_range / days: the job's parameters after overrides.
        since / until: an explicit window from the caller (``ela run --since``, backfill).
        cursor: the incremental cursor committed by the last successful run, or None.
        now: the run's scheduled time (UTC); date windows are computed from it, not the clock.
        environ: the process environment (credentials, endpoint overrides).
        new_cursor: set by incremental data types; committed only after the manifest.
        api_calls: incremented by the adapter (:meth:`count_call`) for every HTTP request.
        warnings: things the manifest should carry (e.g. a possible gap in recently played).
        page: the page whose records are being read (set by :class:`Paginator`), so that an
            error raised further on, such as the spool's disk cap, can say where it happened.
        lookback_days / settle_hours / user_timezone: completeness settings of the job.
        already_landed: keys of records landed by earlier runs (the job's state), with their
            order values: a data type that re-reads a window skips these.
        complete_through: the last day the job has landed complete (state), or None.
        landed: keys of the records this run lands; committed to the state after the manifest.
        landed_floor: keys ordered below this may be forgotten (no later run re-reads them).
        new_complete_through: the last day known complete after this run.
        report: entries the data type adds to the manifest (``possible_gap``,
            ``partial_days``, ...).
        upstream: for a data type that follows another (:attr:`DataType.follows`), the keys
            the followed type's jobs have landed (their state's ``landed``), with their order
            values: its work list (Strava laps and streams: the activities landed).
        upstream_jobs: the jobs ``upstream`` was read from (none: no such job in the config).
    """

    job: str
    now: datetime
    environ: Mapping[str, str]
    limit: int | None = None
    time_range: str | None = None
    days: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: Any = None
    new_cursor: Any = None
    api_calls: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)
    page: str = ""
    lookback_days: int | None = None
    settle_hours: int | None = None
    user_timezone: str | None = None
    already_landed: Mapping[str, float] = dataclasses.field(default_factory=dict)
    complete_through: str | None = None
    landed: dict[str, float] = dataclasses.field(default_factory=dict)
    landed_floor: float | None = None
    new_complete_through: str | None = None
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    upstream: Mapping[str, float] = dataclasses.field(default_factory=dict)
    upstream_jobs: tuple[str, ...] = ()
    _calls_lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, repr=False, compare=False
    )

    def warn(self, message: str) -> None:
        """Add a warning to the manifest, once however often it is raised."""
        if message not in self.warnings:
            self.warnings.append(message)

    def horizon(self) -> datetime:
        """The latest time a cursor may move to: now (the later of the scheduled time and the
        clock, for a run that waited in the queue) plus :data:`FUTURE_SKEW`."""
        return max(self.now, datetime.now(UTC)) + FUTURE_SKEW

    def past_horizon(self, stamp: float, horizon: float, record: str) -> bool:
        """Whether ``stamp`` (in the units of ``horizon``, from :meth:`horizon`) is too late to
        move a cursor. Such a record lands all the same; the run warns, naming ``record``, and
        leaves its stamp out of the cursor (a device with a wrong clock must not make every
        later run skip what really comes next)."""
        if stamp <= horizon:
            return False
        self.warn(
            f"{record} is later than now: landed, but the cursor does not move past now (a "
            "device clock is wrong?)"
        )
        return True

    def count_call(self) -> None:
        """One HTTP request made; safe from the threads of :func:`in_order`."""
        with self._calls_lock:
            self.api_calls += 1


def in_order(
    fetch: Callable[[K], T], keys: Iterable[K], parallel: int, name: str
) -> Iterator[tuple[K, T]]:
    """``(key, fetch(key))`` in the order of ``keys``, up to ``parallel`` calls in flight.

    Calls are made in the consumer's thread, one after another, until two in a row have each
    waited longer than the interpreter's thread switch interval (5 ms) for their answer; from
    then on they go to a thread pool, the next sent as each result is taken, with one more in
    flight each time the consumer finds a result not back yet, up to ``parallel``. A call
    answered sooner gains less from travelling beside the consumer's work than it loses: a
    thread back from the network may wait that long for the interpreter while the consumer
    holds it, and a year of Garmin days at no latency was slower four at a time than one by
    one. A failed call raises when its turn comes; then, or when the consumer stops early,
    calls not yet started are cancelled.
    """
    pending = iter(keys)
    waits = 0  # consecutive calls that waited longer than a thread switch
    for key in pending:
        result, waited = timed_wait(fetch, key)
        waits = waits + 1 if waited else 0
        yield key, result
        if waits >= 2 and parallel > 1:
            yield from _in_flight(fetch, pending, parallel, name)
            return


def timed_wait(call: Callable[[K], T], arg: K) -> tuple[T, bool]:
    """``call(arg)``, and whether it waited for its answer longer than the interpreter's thread
    switch interval (5 ms): the time it did not run, its wall time less this thread's CPU time.
    Past that, a call gains by travelling beside other work; short of it, a thread making it
    would mostly compete for the interpreter. Measured in a thread no other one competes with
    (the consumer's, before it has anything else to do), it is the provider's time."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = call(arg)
    waited = (time.perf_counter() - wall) - (time.thread_time() - cpu)
    return result, waited > sys.getswitchinterval()


def _in_flight(
    fetch: Callable[[K], T], pending: Iterator[K], parallel: int, name: str
) -> Iterator[tuple[K, T]]:
    """:func:`in_order`'s calls once they travel beside the consumer's work."""
    width = 2
    with ThreadPoolExecutor(parallel, thread_name_prefix=name) as pool:
        window: deque[tuple[K, Future[T]]] = deque(
            (key, pool.submit(fetch, key)) for key in itertools.islice(pending, width)
        )
        try:
            while window:
                key, future = window.popleft()
                if width < parallel and not future.done():
                    width += 1  # sent before the consumer's last item, and still not back
                result = future.result()
                window.extend(
                    (k, pool.submit(fetch, k))
                    for k in itertools.islice(pending, width - len(window))
                )
                yield key, result
        finally:
            for _, waiting in window:
                waiting.cancel()


class _Handoff:
    """Between :func:`read_ahead`'s producer thread and its consumer: at most one item waits."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.waiting: deque[tuple[bool, Any]] = deque()  # (True, item) or (False, error/None)
        self.unfinished = 0  # items handed over that the consumer has not finished with
        self.closed = False  # the consumer has stopped

    def put(self, entry: tuple[bool, Any]) -> bool:
        """Hand over ``entry`` once the slot is free; False if the consumer has stopped."""
        with self.cond:
            self.cond.wait_for(lambda: self.closed or not self.waiting)
            if self.closed:
                return False
            self.waiting.append(entry)
            self.unfinished += 1
            self.cond.notify_all()
            return True

    def settle(self) -> None:
        """Return once the consumer has finished with every item handed over (or stopped)."""
        with self.cond:
            self.cond.wait_for(lambda: self.closed or self.unfinished == 0)

    def take(self, finished: bool) -> tuple[bool, Any]:
        """The next entry; ``finished``: the consumer is done with the one it took before."""
        with self.cond:
            if finished:
                self.unfinished -= 1
                self.cond.notify_all()
            self.cond.wait_for(lambda: bool(self.waiting))
            entry = self.waiting.popleft()
            self.cond.notify_all()
            return entry

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def read_ahead(
    produce: Callable[[Callable[[], None]], Iterator[T]], name: str
) -> Generator[T, None, None]:
    """What ``produce`` yields, made by a thread of its own while the consumer works.

    The producer goes on to its next item as soon as it has handed one over, without waiting
    for the consumer to come back for it: a paged endpoint's next call leaves the moment the
    last page shows there is one. At most one item waits, so the producer is at most one item
    (and the one it is making) ahead. ``produce`` is given ``settle``, which returns once the
    consumer has finished with everything handed over, for a producer whose next step depends
    on what the consumer made of it. A failure of the producer is raised to the consumer in
    its turn, after the items before it; a consumer that stops stops the producer once the
    item it is making is done.
    """
    handoff = _Handoff()

    def run() -> None:
        try:
            for item in produce(handoff.settle):
                if not handoff.put((True, item)):
                    return
            handoff.put((False, None))
        except BaseException as exc:  # the consumer raises it, with its traceback
            handoff.put((False, exc))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        finished = False
        while True:
            more, value = handoff.take(finished)
            if not more:
                if value is not None:
                    raise value
                return
            yield value
            finished = True
    finally:
        handoff.close()
        thread.join()


class Paginator:
    """The way through one paged endpoint: numbers its pages and refuses a source that loops.

    As in Meltano SDK's paginator, the loop asks :attr:`has_more`, fetches the page for
    :attr:`token`, hands its records to :meth:`read` and the next page's token to
    :meth:`advance` (None at the end)::

        pages = Paginator("todoist: tasks", ctx)
        while pages.has_more:
            body = fetch(pages.token)
            yield from pages.read(body["results"])
            pages.advance(body["next_cursor"])

    A token seen before (a cursor or ``next`` link that repeats or cycles) means the source
    loops, and so does a page whose records repeat an earlier page's (paging by number or
    offset, where the token never repeats, against a server that ignores it): either is a
    :class:`PayloadError` naming the page, instead of spooling the same records until the
    time limit. A page is known by its length and its first and last records, which costs two
    small serialisations a page, nothing per record.

    Args:
        what: names the endpoint in messages (``"todoist: tasks"``).
        ctx: the run's context; its ``page`` follows the page being read.
        token: the first page's token (None: the endpoint's first page).
    """

    def __init__(self, what: str, ctx: FetchContext | None = None, token: Any = None) -> None:
        self.what = what
        self.ctx = ctx
        self.token = token
        self.number = 1  # of the page being fetched or read
        self.has_more = True
        self._tokens: dict[Hashable, int] = {} if token is None else {token: 1}
        self._pages: dict[bytes, int] = {}
        self._total: tuple[int, int] | None = None  # the first count the source said, and where
        self._total_changed = False  # warned once per run

    @property
    def name(self) -> str:
        """The current page, for messages: ``"todoist: tasks page 3"``."""
        return f"{self.what} page {self.number}"

    def read(self, items: Page, total: int | None = None) -> Page:
        """The current page's records, once they are known not to repeat an earlier page's.

        ``total`` is the count the page says the whole list has, if it says one. A list that
        changes while it is read (an artist followed between two pages) says a new count: the
        run goes on to the end its links lead to, and warns, since what changed before the
        point already read shows only on the next run.
        """
        if isinstance(total, int):
            if self._total is None:
                self._total = (total, self.number)
            elif total != self._total[0] and not self._total_changed and self.ctx is not None:
                self._total_changed = True
                first, page = self._total
                self.ctx.warn(
                    f"{self.name}: the source counts {total} items, page {page} said {first}: "
                    "the list changed while it was read; the change shows in full on the next run"
                )
        if items:
            first = self._pages.setdefault(_fingerprint(items), self.number)
            if first != self.number:
                raise PayloadError(
                    f"{self.name} repeats page {first} (the same {len(items)} records): the "
                    "source loops; nothing was committed"
                )
        if self.ctx is not None:
            self.ctx.page = self.name
        return items

    def advance(self, token: Any) -> None:
        """Move on to the page for ``token``; a falsy token means there is none."""
        if not token:
            self.has_more = False
            return
        self.number += 1
        first = self._tokens.setdefault(token, self.number)
        if first != self.number:
            shown = str(token) if len(str(token)) <= 120 else str(token)[:117] + "..."
            raise PayloadError(
                f"{self.name}: its token {shown!r} is page {first}'s again: the source loops; "
                "nothing was committed"
            )
        self.token = token


def _fingerprint(items: Sequence[Any]) -> bytes:
    """What identifies a page: its length and its first and last records."""
    digest = hashlib.blake2b(len(items).to_bytes(8, "little"), digest_size=16)
    for item in (items[0], items[-1]):
        try:
            digest.update(orjson.dumps(item))
        except orjson.JSONEncodeError:  # an integer beyond 64 bits, say
            digest.update(repr(item).encode())
    return digest.digest()


def http_error(
    service: str,
    status: int,
    where: str,
    *,
    retry_after: float | None = None,
    reauth: str = "",
    location: str | None = None,
) -> IngestError:
    """The one map from an HTTP status to what the caller must do; every provider uses it.

    - 429, 408 and 5xx: try again later (after ``retry_after``, the provider's Retry-After).
    - 401 and 403: the credentials were refused or lack a scope: re-authorize (``reauth``).
    - 3xx: the API redirected a call, which it never does for these endpoints, and following
      it could carry the credentials elsewhere: a ``payload`` error naming where it pointed.
    - any other 4xx (400, 404, 410, ...): ``fatal``: the request is wrong or the endpoint has
      gone, and asking again will not change that.

    Args:
        service: the provider, first in the message.
        status: the HTTP status.
        where: what was asked for (a path, a day), for the message.
        retry_after: seconds the provider asked to wait, if it said.
        reauth: what a person does about a refused credential.
        location: a redirect's ``Location``.
    """
    said = f"{service}: HTTP {status} from {where}"
    if status in (408, 429) or status >= 500:
        return RetriableError(said, retry_after=retry_after)
    if status in (401, 403):
        what = (
            "the credentials were refused"
            if status == 401
            else "access was refused (revoked, or a scope is missing)"
        )
        return ReauthError(f"{said}: {what}; {reauth}" if reauth else f"{said}: {what}")
    if 300 <= status < 400:
        target = origin(location) if location else "somewhere not said"
        return PayloadError(
            f"{said}: redirected to {target}; not followed (credentials go only to the "
            "configured hosts)"
        )
    return FatalError(f"{said}: the request is refused; retrying will not change that")


def read_body(
    chunks: Iterable[bytes],
    limit: int,
    where: str,
    declared: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> bytes:
    """A response body from its decoded (decompressed) chunks, refused once it passes ``limit``.

    A body that is not valid UTF-8 (every API here sends UTF-8 JSON) has the bad bytes replaced
    by U+FFFD and ``warn`` says where: requests would replace them without a word, and a strict
    parser would fail the run over one bad byte in a name.

    Args:
        chunks: the body as it is decoded, a chunk at a time.
        limit: ``ELA_MAX_BODY_BYTES``.
        where: the service and request, for the message.
        declared: the Content-Length, if any: a body that says it is too long is refused
            before a byte of it is read.
        warn: where to say that bytes were replaced (the run's manifest warnings).

    Raises:
        PayloadError: the body is longer than ``limit``; the caller closes the response.
    """
    if declared is not None and declared > limit:
        raise _too_big(where, limit, declared)
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_big(where, limit, None)
        parts.append(chunk)
    body = b"".join(parts)
    if body.isascii():
        return body
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if warn is not None:
            warn(
                f"{where}: the body is not valid UTF-8 (byte 0x{body[exc.start]:02x} at "
                f"{exc.start:,}); landed with such bytes replaced by U+FFFD"
            )
        return body.decode("utf-8", "replace").encode()
    return body


def read_response(
    response: Any, limit: int, service: str, warn: Callable[[str], None] | None = None
) -> None:
    """Read a ``requests.Response``'s body through :func:`read_body` (decoded, capped), and
    keep it where requests keeps what ``.content`` read, so the client library reads the same
    bytes. For transports that sent the request with ``stream=True``.

    Raises:
        PayloadError: the body passed ``limit`` (the response is closed).
    """
    request = response.request
    where = f"{service}: {request.method} {urlsplit(request.url or '').path}"
    try:
        declared: int | None = int(response.headers.get("Content-Length", ""))
    except ValueError:
        declared = None
    try:
        response._content = read_body(response.iter_content(1 << 16), limit, where, declared, warn)
    except PayloadError:
        response.close()
        raise
    _decode_once(response)


def loads(data: bytes) -> Any:
    """JSON decoded by orjson (a third of the standard library's time), or by the standard
    library where orjson refuses what it accepts (``NaN``, an integer past 64 bits): the same
    value, or the same ``ValueError``, either way."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _decode_once(response: Any) -> None:
    """Make the ``requests.Response``'s ``json()`` decode its body once, with orjson.

    Decoding is most of a client's work per page (a page of 200 Strava activities, a day of
    Garmin heart rate), and orjson takes a third of the time of the standard library's json,
    which requests uses; stravalib's protocol layer even decodes each body twice (once to look
    for an error message, once for its return value). A body orjson refuses (not UTF-8, an
    integer past 64 bits, ``NaN``) is decoded the library's way, so the value is the same, or
    the error. Later calls return the same object as the first.

    The response becomes an instance of a subclass whose ``json`` does this: a function set on
    the instance would need the response, and would make a reference cycle if it held it
    (each page would then wait in memory for the cyclic garbage collector: a worker's pool
    process grew 14 MB over a run of 5,000 Strava activities), or lose it if it held it weakly
    (garminconnect calls ``session.request(...).json()`` on a response nothing else holds).
    """
    kind: Any = type(response)
    if not getattr(kind, "decodes_once", False):
        response.__class__ = _decoding(kind)


@functools.cache
def _decoding(base: Any) -> type:
    """``base`` (a requests ``Response`` class), whose ``json()`` is :func:`_decode_once`'s."""

    def json(self: Any, **kwargs: Any) -> Any:
        decoded = self.__dict__.get("_ela_decoded", _NOTHING)
        if decoded is _NOTHING:
            try:
                decoded = orjson.loads(self.content)
            except orjson.JSONDecodeError:
                decoded = base.json(self, **kwargs)  # raises as the library would
            self._ela_decoded = decoded
        return decoded

    namespace = {"json": json, "decodes_once": True, "__module__": base.__module__}
    return type(base.__name__, (base,), namespace)


_NOTHING = object()


def _too_big(where: str, limit: int, declared: int | None) -> PayloadError:
    said = f"says it is {declared:,} bytes" if declared is not None else "goes on"
    return PayloadError(
        f"{where}: the body {said}, more than ELA_MAX_BODY_BYTES ({limit:,} bytes, counted "
        "after decompression); nothing was committed"
    )


FetchFn = Callable[[Any, FetchContext], Iterator[Record]]


@dataclasses.dataclass(frozen=True)
class DataType:
    """One kind of record a service lands; the job config names it as ``service``/``data_type``.

    Attributes:
        params: which job parameters apply (others are a validation error).
        max_limit: the most the provider API can return for ``limit``, or None if unbounded.
        max_days: the most days a single run may ask for, or None.
        incremental: whether the job keeps a cursor in ``_state/``.
        keeps_state: whether the job keeps any state (a cursor, landed keys, complete days).
        backfill: how ``ela backfill`` cuts and paces a past window, for a type that takes one.
        follows: the data type of the same service whose landed keys are this one's work
            list (``FetchContext.upstream``), or None.
    """

    service: str
    name: str
    fetch: FetchFn
    params: frozenset[Param] = frozenset()
    max_limit: int | None = None
    max_days: int | None = None
    incremental: bool = False
    keeps_state: bool = False
    backfill: BackfillProfile | None = None
    follows: str | None = None
    doc: str = ""

    @property
    def task_name(self) -> str:
        return f"tasks.{self.service}.{self.name}"


class Service(Generic[C]):
    """A provider: how to open its client, how to read its errors, and its data types."""

    def __init__(
        self,
        name: str,
        *,
        open_client: Callable[[FetchContext], AbstractContextManager[C]],
        classify: Callable[[BaseException], IngestError | None],
    ) -> None:
        self.name = name
        self.open_client = open_client
        self._classify = classify
        self.data_types: dict[str, DataType] = {}

    def data_type(
        self,
        name: str,
        *,
        params: tuple[Param, ...] = (),
        max_limit: int | None = None,
        max_days: int | None = None,
        incremental: bool = False,
        keeps_state: bool = False,
        backfill: BackfillProfile | None = None,
        follows: str | None = None,
    ) -> Callable[[FetchFn], FetchFn]:
        """Register the decorated generator as this service's data type ``name``."""

        def register(fn: FetchFn) -> FetchFn:
            self.data_types[name] = DataType(
                service=self.name,
                name=name,
                fetch=fn,
                params=frozenset(params),
                max_limit=max_limit,
                max_days=max_days,
                incremental=incremental,
                keeps_state=keeps_state or incremental,
                backfill=backfill,
                follows=follows,
                doc=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
            )
            return fn

        return register

    def classify(self, exc: BaseException) -> IngestError:
        """Map any exception raised while fetching to retry / re-auth / payload / fatal."""
        if isinstance(exc, IngestError):
            return exc
        # Celery's soft time limit (billiard's SoftTimeLimitExceeded), named not imported:
        # the domain package does not depend on Celery.
        if type(exc).__name__ == "SoftTimeLimitExceeded":
            return TimeLimitError(
                f"{self.name}: the run exceeded the environment's time limit "
                "(global.timeout_minutes); nothing was committed"
            )
        mapped = self._classify(exc)
        if mapped is not None:
            return mapped
        if isinstance(exc, (TimeoutError, ConnectionError)):
            return RetriableError(f"{self.name}: network error: {exc}")
        return FatalError(f"{self.name}: unexpected {type(exc).__name__}: {exc}")


def require(environ: Mapping[str, str], *names: str, fix: str = "") -> list[str]:
    """The values of credential variables, or a ReauthError naming the missing ones."""
    missing = [n for n in names if not environ.get(n)]
    if missing:
        hint = fix or "set it in the environment (or .env for docker compose)"
        raise ReauthError(f"{', '.join(missing)} not set: {hint}")
    return [environ[n] for n in names]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; dates are rare for these APIs)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
