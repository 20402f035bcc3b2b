"""A beat scheduler that only sends while it holds the environment's leader lock.

Two beats started against the same Redis and env (a redeploy overlapping the old container, a
second ``ela beat`` by mistake) would both send every tick, and every tick would land twice
under two run ids. Each beat here takes a Redis lock named for the env before sending; the
others stand by, renewing nothing and keeping their entries' ``last_run_at`` at "now" so that,
when they take over after the leader dies, they do not replay ticks the leader already sent.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

import redis
from celery.beat import PersistentScheduler

log = logging.getLogger("ela.beat")

LOCK_TTL = 30.0  # seconds a dead leader keeps the lock; the takeover delay
RENEW_EVERY = 10.0  # the leader never sleeps longer than this between renewals

# Extend the lock only if it is still ours (another beat may have taken an expired one).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# Delete the lock only if it is still ours: a get-then-delete could drop the lock another beat
# took in between, after ours expired.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, client: redis.Redis, key: str, ttl: float = LOCK_TTL) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take the lock or extend it if ours; False if another beat holds it."""
        if self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            return True
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])


class SingleBeatScheduler(PersistentScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        conf = self.app.conf
        prefix = (conf.broker_transport_options or {}).get("global_keyprefix", "")
        env = self.app.main.removeprefix("ela-")
        self.lock = LeaderLock(redis.Redis.from_url(conf.broker_url), f"{prefix}ela:{env}:beat")
        self.leading: bool | None = None  # None until the first tick has tried the lock

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            held = self.lock.hold()
        except redis.RedisError as exc:
            # Redis is away (a restart, a failover): nothing can be sent now either. Keep the
            # schedule as it is, so that ticks due meanwhile go out once the lock is held again
            # (or, if another beat takes over after our lock expires, from its standby "now").
            log.warning("beat: cannot reach Redis for the leader lock (%s); retrying", exc)
            return RENEW_EVERY / 2
        if not held:
            if self.leading is not False:
                log.warning("beat: another beat leads this environment; standing by")
            self.leading = False
            now = self.app.now()
            for entry in self.schedule.values():
                entry.last_run_at = now
            return RENEW_EVERY / 2
        if not self.leading:
            log.info("beat: leading this environment (lock %s)", self.lock.key)
            self.leading = True
        return float(min(super().tick(*args, **kwargs), RENEW_EVERY))

    def close(self) -> None:
        if self.leading:
            self.lock.release()
        super().close()
