"""Request budgets over fixed UTC windows, shared through Redis by every worker.

Strava counts reads per application over windows that reset at :00/:15/:30/:45 and at midnight
UTC (100 and 1,000 by default), and counts refused requests too. Each worker learning the limit
from its own responses is not enough: five workers would each spend the budget before any of
them saw it exhausted. So every request first takes a unit from a shared counter for each
window; when one is spent the request is not sent, and the run is retried when the window
resets. The provider's own usage headers are folded in, so requests made elsewhere with the
same application (a laptop, another env) count as well.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("ela.ratelimit")

# Take one unit from every window, or none if any is spent (atomic across workers).
# KEYS: one counter per window; ARGV: limit_1, ttl_1, limit_2, ttl_2, ...
_ACQUIRE = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('get', key) or '0') >= tonumber(ARGV[2 * i - 1]) then return i end
end
for i, key in ipairs(KEYS) do
  redis.call('incr', key)
  redis.call('expire', key, ARGV[2 * i])
end
return 0
"""
# Raise counters to what the provider reports (never lower them).
_OBSERVE = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('get', key) or '0') < tonumber(ARGV[2 * i - 1]) then
    redis.call('set', key, ARGV[2 * i - 1], 'EX', ARGV[2 * i])
  end
end
return 0
"""


class SharedWindows:
    """Budgets for fixed windows (``(seconds, limit)`` each) under one Redis key prefix."""

    def __init__(self, client: Any, key: str, windows: Sequence[tuple[int, int]]) -> None:
        self.client = client
        self.key = key
        self.windows = list(windows)
        self._acquire = client.register_script(_ACQUIRE)
        self._observe = client.register_script(_OBSERVE)
        self._acquire_args = [v for (size, limit) in self.windows for v in (limit, size + 60)]

    def _keys(self, now: datetime) -> tuple[list[str], list[float]]:
        stamp = now.timestamp()
        keys = [f"{self.key}:{size}:{int(stamp // size)}" for size, _ in self.windows]
        resets = [size - stamp % size for size, _ in self.windows]
        return keys, resets

    def acquire(self, now: datetime | None = None) -> float | None:
        """Take one request from every window; None if granted, else seconds until it is."""
        keys, resets = self._keys(now or datetime.now(UTC))
        spent = int(self._acquire(keys=keys, args=self._acquire_args))
        return None if spent == 0 else resets[spent - 1]

    def observe(self, usage: Sequence[int], now: datetime | None = None) -> None:
        """Fold in the provider's own usage counts, one per window, in window order."""
        keys, _ = self._keys(now or datetime.now(UTC))
        args = [
            v
            for (size, _), used in zip(self.windows, usage, strict=True)
            for v in (used, size + 60)
        ]
        self._observe(keys=keys, args=args)


_SHARED: dict[tuple[str, str, tuple[tuple[int, int], ...]], SharedWindows] = {}


def shared_windows(
    environ: Mapping[str, str], name: str, identity: str, windows: Sequence[tuple[int, int]]
) -> SharedWindows | None:
    """The shared budget on ``REDIS_URL``, or None without one (or when it does not answer).

    Only an explicit ``REDIS_URL`` is used: an in-process run (``ela run --inline``, a test)
    must not write counters into whatever Redis happens to listen on localhost. Workers
    deployed with the compose files always have it. ``identity`` (e.g. an application's client
    id) is hashed into the key: quotas are per application, and the id stays out of Redis.
    """
    import redis

    url = environ.get("REDIS_URL")
    if not url:
        return None
    prefix = environ.get("ELA_REDIS_PREFIX", "")
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    key = (url, f"{prefix}ela:ratelimit:{name}:{digest}", tuple(windows))
    if key not in _SHARED:  # one client per process, not a connection and PING per run
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
        try:
            client.ping()
        except redis.RedisError:
            log.info("no Redis at %s: %s rate limits are tracked by this process only", url, name)
            return None
        _SHARED[key] = SharedWindows(client, key[1], windows)
    return _SHARED[key]


def budget(environ: Mapping[str, str], variable: str, default: tuple[int, int]) -> tuple[int, int]:
    """A ``"short,daily"`` budget from the environment (to keep part of a quota for others)."""
    value = environ.get(variable)
    if not value:
        return default
    parsed = pair(value)
    if parsed is None:
        raise ValueError(f"{variable}={value!r}: expected two integers, e.g. 90,900")
    return parsed


def pair(value: str | None) -> tuple[int, int] | None:
    """``"100,1000"`` → (100, 1000); None for a missing or malformed value."""
    try:
        short, daily = (value or "").split(",")
        return int(short), int(daily)
    except ValueError:
        return None
