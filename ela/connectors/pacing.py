"""How a data type that takes a date window is backfilled: its chunks, its cost, its quotas.

A connector declares this next to the data type (``@service.data_type(..., backfill=...)``), so
that everything ``ela backfill`` knows about a provider lives with the provider's code. The
runner that uses it is :mod:`ela.ops.backfill`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

# Of every provider quota a backfill spends at most this share, so the scheduled runs of the
# same application (the same Strava quota) are not starved while it runs.
QUOTA_SHARE = 0.9
FALLBACK_BACKOFF_S = 30.0  # first wait for a retriable error that names no Retry-After
MAX_FALLBACK_S = 15 * 60.0
# A window "resets at :15" on the provider's clock, not necessarily ours: wait a second past it.
SLACK_S = 1.0

EstimateFn = Callable[[int, int], int]
"""(days in the chunk, most records a chunk has landed so far) → API calls it will cost."""
WaitFn = Callable[[float, int], float]
"""(now, attempt) → seconds to wait after a retriable failure that named no retry_after."""


@dataclasses.dataclass(frozen=True)
class Quota:
    """A provider rate-limit window aligned on the UTC epoch (Strava's reset at :00/:15/:30/:45
    and at midnight UTC are both epoch-aligned).

    Attributes:
        name: for messages ("Strava 15-minute").
        period_s: the window's length.
        limit: what the provider allows per window.
        budget: what a backfill lets itself spend per window (``limit`` minus headroom).
    """

    name: str
    period_s: int
    limit: int
    budget: int

    @classmethod
    def shared(cls, name: str, period_s: int, limit: int) -> Quota:
        """A quota of which the backfill takes :data:`QUOTA_SHARE` (at least one call)."""
        return cls(name, period_s, limit, max(1, math.floor(limit * QUOTA_SHARE)))

    def window_start(self, now: float) -> float:
        return now - now % self.period_s

    def resets_in(self, now: float) -> float:
        return self.period_s - now % self.period_s


def exponential_backoff(now: float, attempt: int) -> float:
    """30 s, 60 s, 120 s … up to 15 minutes: for providers whose errors say nothing of when."""
    return float(min(MAX_FALLBACK_S, FALLBACK_BACKOFF_S * 2**attempt))


@dataclasses.dataclass(frozen=True)
class BackfillProfile:
    """How one data type's past is cut into chunk runs and paced.

    Attributes:
        chunk_days: the default chunk size, in days.
        until_exclusive: Strava's ``before`` excludes ``until``; Garmin includes ``until``'s day.
        estimate: API calls one chunk will cost, before it runs.
        fallback_wait: how long to wait after a retriable failure that named no retry_after.
        quotas: the provider's rate-limit windows the backfill paces itself to.
        limit: the item limit each chunk run gets, or None for the job's own.
        max_chunk_days: the largest chunk; None means the data type's ``max_days``.
    """

    chunk_days: int
    until_exclusive: bool
    estimate: EstimateFn
    fallback_wait: WaitFn = exponential_backoff
    quotas: tuple[Quota, ...] = ()
    limit: int | None = None
    max_chunk_days: int | None = None
