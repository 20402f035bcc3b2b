"""A beat scheduler that sends every tick exactly once, whichever beat leads and whenever.

Celery's own schedulers keep ``last_run_at`` per entry in the beat process (synced to a schedule
file every 180 s), so a beat killed after a tick and restarted sends it again, a beat that takes
over from a dead one skips the ticks due meanwhile, and two beats on one shared schedule file
delete each other's file. Here:

- **one sender per env**: each beat takes a Redis lock named for the env before sending
  (:class:`LeaderLock`); the others stand by and take over within :data:`LOCK_TTL` of the
  leader's death;
- **the ticks live in Redis, next to the lock**: for every entry, the last tick claimed and the
  last tick sent (:class:`TickLedger`). A tick is claimed (atomically: only by the lock's
  holder, only if later than the last claimed) before it is sent, and marked sent after; so a
  tick is never sent by two beats, nor twice by one, across crashes and restarts;
- **missed ticks are caught up**: a new leader sends the latest tick it finds unsent if it is
  younger than the entry's ``expires`` (the job's shortest gap between ticks, so at most one),
  stamped with the tick's own minute as its scheduled time, expiring when the tick would have;
- **no schedule file**: nothing is read from or written to disk, so there is nothing to
  corrupt on a shared volume, and nothing to depend on before the lock is held.

A tick's task id (= the run id) is derived from the env, the entry and the tick, so a tick
claimed but not known to be sent (the leader died in between) is sent again under the same id
by the next leader: if the first send did reach Redis, the second run finds the first one's
manifest and commits nothing new.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis
from celery.beat import ScheduleEntry, Scheduler

from beat_schedules import SCHEDULED_AT_HEADER, beat_sending

log = logging.getLogger("ela.beat")

LOCK_TTL = 30.0  # seconds a dead leader keeps the lock; the takeover delay
RENEW_EVERY = 10.0  # the leader never sleeps longer than this between renewals
# An entry without ``expires`` (none of ours) catches up a tick missed by at most this much.
DEFAULT_CATCH_UP = 60.0
# Run ids of scheduled ticks live in their own uuid5 namespace.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "ela-ingest:beat-tick")

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
# Claim a tick: only the lock's holder, only a tick later than the last one claimed.
# KEYS: the ledger hash, the lock; ARGV: entry name, tick (epoch seconds), our lock token.
_CLAIM = """
if redis.call('get', KEYS[2]) ~= ARGV[3] then return 0 end
local last = tonumber(redis.call('hget', KEYS[1], ARGV[1]) or '-1')
if last >= tonumber(ARGV[2]) then return 0 end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# Record what a fresh entry starts from (first deploy, a new job, a wiped Redis): its latest
# tick counts as sent, as Celery's own schedulers start from "now". Never moves a cursor back.
# KEYS: the ledger hash; ARGV: entry name, the sent-field name, tick.
_BASELINE = """
if redis.call('hexists', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('hset', KEYS[1], ARGV[1], ARGV[3], ARGV[2], ARGV[3])
return 1
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


class TickLedger:
    """Per entry: the last tick claimed (``NAME``) and the last known sent (``NAME:sent``), as
    epoch seconds, in one Redis hash beside the leader lock."""

    def __init__(self, client: redis.Redis, key: str, lock: LeaderLock) -> None:
        self.client = client
        self.key = key
        self.lock = lock
        self._claim = client.register_script(_CLAIM)
        self._baseline = client.register_script(_BASELINE)

    def read(self, name: str) -> tuple[float | None, float | None]:
        """(last claimed, last sent) ticks of ``name``; None where there is none."""
        claimed, sent = self.client.hmget(self.key, [name, f"{name}:sent"])
        return _float(claimed), _float(sent)

    def baseline(self, name: str, tick: float) -> bool:
        return bool(self._baseline(keys=[self.key], args=[name, f"{name}:sent", tick]))

    def claim(self, name: str, tick: float) -> bool:
        return bool(self._claim(keys=[self.key, self.lock.key], args=[name, tick, self.lock.token]))

    def sent(self, name: str, tick: float) -> None:
        self.client.hset(self.key, f"{name}:sent", tick)


def _float(value: bytes | str | None) -> float | None:
    return float(value) if value is not None else None


def tick_run_id(env: str, entry: str, tick: datetime) -> str:
    """The task id (= run id) of ``entry``'s run for ``tick``: the same on every beat."""
    return str(uuid.uuid5(NAMESPACE, f"{env}/{entry}/{tick.astimezone(UTC).isoformat()}"))


class SingleBeatScheduler(Scheduler):
    """Celery's in-memory scheduler (no schedule file), sending from the Redis tick ledger."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        conf = self.app.conf
        prefix = (conf.broker_transport_options or {}).get("global_keyprefix", "")
        self.env = self.app.main.removeprefix("ela-")
        client = redis.Redis.from_url(conf.broker_url, socket_timeout=5, socket_connect_timeout=5)
        self.lock = LeaderLock(client, f"{prefix}ela:{self.env}:beat")
        self.ledger = TickLedger(client, f"{prefix}ela:{self.env}:beat:ticks", self.lock)
        self.leading: bool | None = None  # None until the first tick has tried the lock
        self._published: Any = None  # what the last apply_async returned

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send what is due if we lead; return the seconds to sleep before the next call."""
        try:
            held = self.lock.hold()
            if not held:
                if self.leading is not False:
                    log.warning("beat: another beat leads this environment; standing by")
                self.leading = False
                return RENEW_EVERY / 2
            if not self.leading:
                log.info("beat: leading this environment (lock %s)", self.lock.key)
                self.leading = True
            return min(self.send_due(self.app.now()), RENEW_EVERY)
        except redis.RedisError as exc:
            # Redis is away (a restart, a failover): nothing can be sent now either. The ledger
            # keeps what was sent, so the ticks due meanwhile go out once it answers again
            # (from whichever beat holds the lock then), within their expiry.
            log.warning("beat: cannot reach Redis (%s); retrying", exc)
            return RENEW_EVERY / 2

    def send_due(self, now: datetime) -> float:
        """Send every entry's latest unsent tick that has not expired; return the seconds until
        the next tick of any entry."""
        wait = RENEW_EVERY
        for entry in list(self.schedule.values()):
            horizon = timedelta(seconds=_expires(entry))
            claimed, sent = self.ledger.read(entry.name)
            if claimed is None:
                latest = latest_tick(entry, now, now - horizon)
                self.ledger.baseline(entry.name, (latest or now).timestamp())
            else:
                if sent is None or sent < claimed:
                    # Claimed by a beat that died (or failed to publish) before it was sent.
                    self._resend(entry, claimed, now, horizon)
                oldest = max(_at(claimed, now), now - horizon)
                tick = latest_tick(entry, now, oldest)
                if tick is not None and self.ledger.claim(entry.name, tick.timestamp()):
                    self._send(entry, tick, now, horizon)
            wait = min(wait, _next_tick(entry, now).total_seconds())
        return max(wait, 0.0)

    def _resend(
        self, entry: ScheduleEntry, claimed: float, now: datetime, horizon: timedelta
    ) -> None:
        tick = _at(claimed, now)
        if now - tick < horizon:
            log.warning("beat: %s's %s tick was claimed but not sent; sending it", entry.name, tick)
            self._send(entry, tick, now, horizon)

    def _send(
        self, entry: ScheduleEntry, tick: datetime, now: datetime, horizon: timedelta
    ) -> None:
        """Publish ``entry`` for ``tick`` (through ``apply_entry``, which Sentry's cron monitoring
        wraps) and record it as sent if the publish went through."""
        stamp = tick.astimezone(UTC)
        due = copy.copy(entry)
        headers = {**entry.options.get("headers", {}), SCHEDULED_AT_HEADER: stamp.isoformat()}
        due.options = {
            **entry.options,
            "task_id": tick_run_id(self.env, entry.name, stamp),
            "headers": headers,
            "expires": stamp + horizon,  # when the tick expires, not `expires` after sending
        }
        late = (now - tick).total_seconds()
        if late > RENEW_EVERY:
            log.warning(
                "beat: %s's tick of %s is %.0f s late (no beat led); sending it now",
                entry.name,
                stamp.isoformat(),
                late,
            )
        self._published = None
        sending = beat_sending.set((entry.task, due.options["task_id"], dict(entry.kwargs)))
        try:
            self.apply_entry(due, producer=self.producer)  # logs "Sending due task", any error
        finally:
            beat_sending.reset(sending)
        if self._published is not None:
            self.ledger.sent(entry.name, tick.timestamp())

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        self._published = super().apply_async(entry, producer, advance=False, **kwargs)
        return self._published

    def close(self) -> None:
        if self.leading:
            try:
                self.lock.release()
            except redis.RedisError as exc:  # it expires by itself
                log.warning("beat: leader lock not released (%s)", exc)
        super().close()


def _expires(entry: ScheduleEntry) -> float:
    value = entry.options.get("expires")
    return float(value) if isinstance(value, (int, float)) else DEFAULT_CATCH_UP


def _at(epoch: float, like: datetime) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC).astimezone(like.tzinfo)


def _next_tick(entry: ScheduleEntry, after: datetime) -> timedelta:
    """From ``after`` (the schedule's now) to the entry's first tick after it."""
    return entry.schedule.remaining_estimate(after)


def latest_tick(entry: ScheduleEntry, now: datetime, oldest: datetime) -> datetime | None:
    """The entry's latest tick after ``oldest`` and at or before ``now``; None if none.

    Ticks come from the schedule's cron itself (:class:`beat_schedules.JobCrontab`), not from
    Celery's ``remaining_estimate``, which reads the clock again: when that clock had moved
    half a second past ``now`` (slow sends within one beat tick), the estimate no longer landed
    on the tick and this walk never got past it.
    """
    schedule = entry.schedule
    zone = ZoneInfo(schedule.zone)
    found = None
    cursor = oldest
    while True:
        (tick,) = schedule.cron.next_runs(zone, cursor, 1)
        if tick > now:
            return found
        found = cursor = tick
