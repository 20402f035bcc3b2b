"""Spotify, Strava and Garmin data types, declared (so configs validate and tasks register)
but not yet implemented: their runs fail with a clear fatal error until the connectors land."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ela.connectors.base import FetchContext, Record, Service
from ela.errors import FatalError, IngestError


def pending_service(name: str, credentials: tuple[str, ...]) -> Service[None]:
    @contextmanager
    def _open(ctx: FetchContext) -> Iterator[None]:
        raise FatalError(f"{name}: connector not implemented yet (job {ctx.job})")
        yield None

    def _classify(exc: BaseException) -> IngestError | None:
        return None

    return Service(name, credentials=credentials, open_client=_open, classify=_classify)


def not_implemented(client: Any, ctx: FetchContext) -> Iterator[Record]:
    raise FatalError(f"connector not implemented yet (job {ctx.job})")
