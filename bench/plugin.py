"""A benchmark-only service whose one data type yields nothing.

Registered into the connector registry *before* the worker app loads its config, so the real
task (``tasks.bench.nothing``, an :class:`tasks.base.IngestTask`), routing, pipeline, bucket
writes and result backend all run; only the provider is absent. The product never imports this:
the benchmark's worker is started with ``celery -A bench.worker``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ela.connectors import SERVICES
from ela.connectors.base import FetchContext, Record, Service
from ela.errors import IngestError

NAME = "bench"
JOB = "bench_nothing"


@contextmanager
def _open(ctx: FetchContext) -> Iterator[None]:
    yield None


def _classify(exc: BaseException) -> IngestError | None:
    return None


bench: Service[None] = Service(NAME, open_client=_open, classify=_classify)


@bench.data_type("nothing")
def nothing(client: None, ctx: FetchContext) -> Iterator[Record]:
    """Yields no record: a run is pure orchestration (task, pipeline, manifest, result)."""
    yield from ()


def register() -> None:
    """Add the service to the registry (idempotent); call before ``worker.app`` is imported."""
    SERVICES.setdefault(NAME, bench)  # type: ignore[arg-type]


TASK = f"tasks.{NAME}.nothing"
