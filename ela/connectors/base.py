"""The one shape every connector has.

A provider is a :class:`Service`: a way to open an authenticated client (the adapter that points
the real client library at ``*_API_URL`` endpoints, with timeouts and call counting) and an
error map. Each of its data types is one generator function registered with
``@service.data_type(...)`` that takes the client and a :class:`FetchContext` and yields the
provider's records unchanged (a per-day record wrapped in :class:`DayRecord`; what the
downstream needs of records is done in one place, :mod:`ela.downstream`). Adding a data type
is adding one such function.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar

from ela.errors import FatalError, IngestError, ReauthError, RetriableError, TimeLimitError

Param = Literal["limit", "time_range", "days"]
Record = dict[str, Any]
C = TypeVar("C")
K = TypeVar("K")
T = TypeVar("T")


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
    _calls_lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, repr=False, compare=False
    )

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def count_call(self) -> None:
        """One HTTP request made; safe from the threads of :func:`in_order`."""
        with self._calls_lock:
            self.api_calls += 1


def in_order(
    fetch: Callable[[K], T], keys: Iterable[K], parallel: int, name: str
) -> Iterator[tuple[K, T]]:
    """``(key, fetch(key))`` in the order of ``keys``, up to ``parallel`` calls in flight.

    The next call is sent as each result is taken. A failed call raises when its turn comes;
    then, or when the consumer stops early, calls not yet started are cancelled.
    """
    pending = iter(keys)
    with ThreadPoolExecutor(parallel, thread_name_prefix=name) as pool:
        window: deque[tuple[K, Future[T]]] = deque(
            (key, pool.submit(fetch, key)) for key in itertools.islice(pending, parallel)
        )
        try:
            while window:
                key, future = window.popleft()
                result = future.result()
                window.extend((k, pool.submit(fetch, k)) for k in itertools.islice(pending, 1))
                yield key, result
        finally:
            for _, waiting in window:
                waiting.cancel()


FetchFn = Callable[[Any, FetchContext], Iterator[Record]]


@dataclasses.dataclass(frozen=True)
class DataType:
    """One kind of record a service lands; the job config names it as ``service``/``data_type``.

    Attributes:
        params: which job parameters apply (others are a validation error).
        max_limit: the most the provider API can return for ``limit``, or None if unbounded.
        max_days: the most days a single run may ask for, or None.
        incremental: whether the job keeps a cursor in ``_state/``.
    """

    service: str
    name: str
    fetch: FetchFn
    params: frozenset[Param] = frozenset()
    max_limit: int | None = None
    max_days: int | None = None
    incremental: bool = False
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
        credentials: tuple[str, ...],
        open_client: Callable[[FetchContext], AbstractContextManager[C]],
        classify: Callable[[BaseException], IngestError | None],
    ) -> None:
        self.name = name
        self.credentials = credentials
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
