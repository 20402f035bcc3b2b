"""Worker leases in Redis: which worker holds which unacknowledged delivery, and who is alive.

Redis's ack emulation (kombu) keeps every message a worker took and has not acknowledged in the
``unacked`` hash, and gives it back only after the visibility timeout (hard time limit + the
longest retry countdown + 5 min: 37 min in dev, 70 in prd). That is the right wait for a worker
that is still running the task, and far too long for one that died. So every worker also keeps:

- a *lease*: a key with a short TTL that it renews every :data:`BEAT_EVERY_S` seconds from a
  thread of its own (so a task running in the main process, or the main loop blocked in a
  shutdown, does not stop it);
- the set of delivery tags it holds (written in the same transaction as kombu's ``unacked``
  entry, removed with it on ack; see ``worker/redis_transport.py``);
- an entry in the registry of workers (who it is, for ``ela status``).

A worker whose lease expired is dead: the reaper in every other worker atomically claims its
tags (:data:`_CLAIM`: check the lease is gone, move the tags into the claimer's own set, leave a
tombstone), then gives each message back to its queue with kombu's own restore, which is a
WATCH/MULTI transaction on the ``unacked`` hash: a tag is restored at most once however many
reapers race. Moving the tags first means a reaper that dies half-way leaves them in its own
set, to be claimed from it in turn. The visibility timeout stays as the last resort.

A worker that cannot renew its lease for :data:`FENCE_AFTER_S` seconds (Redis unreachable from
its host, but the host alive), or that finds its tombstone (it was frozen past its lease),
stops its runs and exits before anyone can run them a second time (see ``worker/leases.py``).

No Celery here: the worker wires it in, ``ela status`` reads it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any

import redis

# A lease lives 30 s after its last renewal, renewed every 5 s: a worker is reaped 30 to 35 s after
# it died (plus the 5 s between a reaper's passes), inside the minute a run may be missing for.
LEASE_TTL_S = 30.0
BEAT_EVERY_S = 5.0
# A worker that could not renew for its TTL less this margin stops its runs: its lease may expire
# any moment, and then another worker restores them. The margin is for the stop itself.
FENCE_MARGIN_S = 5.0
FENCE_AFTER_S = LEASE_TTL_S - FENCE_MARGIN_S
# Once a worker is shutting down its runs have at most the shutdown grace left: renew more often
# with a shorter TTL, so that if it is SIGKILLed at the end of the grace (docker stop) its runs
# are back within seconds instead of the full lease.
SHUTDOWN_TTL_S = 10.0
SHUTDOWN_BEAT_EVERY_S = 1.0
TOMBSTONE_TTL_S = 24 * 3600  # long enough for a frozen worker to wake up and find it


@dataclasses.dataclass(frozen=True)
class Keys:
    """Key names, under ``prefix`` (``ELA_REDIS_PREFIX``; empty when kombu adds it itself)."""

    prefix: str = ""

    @property
    def registry(self) -> str:
        return f"{self.prefix}ela:workers"

    def lease(self, worker: str) -> str:
        return f"{self.prefix}ela:worker:{worker}"

    def held(self, worker: str) -> str:
        return f"{self.prefix}ela:held:{worker}"

    def tombstone(self, worker: str) -> str:
        return f"{self.prefix}ela:reaped:{worker}"

    # kombu's own (worker/redis_transport.py): the unacked messages and when each was taken.
    @property
    def unacked(self) -> str:
        return f"{self.prefix}unacked"

    @property
    def unacked_index(self) -> str:
        return f"{self.prefix}unacked_index"


# Renew our lease, unless a reaper already declared us dead (then 0: stop, do not come back).
# KEYS: lease, tombstone, registry; ARGV: worker id, ttl ms, registry entry (JSON).
_RENEW = """
if redis.call('exists', KEYS[2]) == 1 then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('hset', KEYS[3], ARGV[1], ARGV[3])
return 1
"""
# Claim a dead worker's deliveries: only if its lease is gone; its tags move to the claimer's
# set in the same step, and a tombstone tells the worker, should it wake up, that it was reaped.
# KEYS: dead's lease, dead's held set, claimer's held set, registry, dead's tombstone;
# ARGV: dead's id, tombstone ttl s. Returns the tags, or false if the worker is alive.
_CLAIM = """
if redis.call('exists', KEYS[1]) == 1 then return false end
local tags = redis.call('smembers', KEYS[2])
if #tags > 0 then
  redis.call('sunionstore', KEYS[3], KEYS[3], KEYS[2])
  redis.call('del', KEYS[2])
end
redis.call('hdel', KEYS[4], ARGV[1])
redis.call('set', KEYS[5], '1', 'EX', ARGV[2])
return tags
"""


def new_worker_id(nodename: str = "") -> str:
    """Unique per process start: a restarted worker (same host name, same pid in a container)
    is a new worker, and the old one's deliveries are reaped."""
    host = (nodename or socket.gethostname()).replace(":", "_")
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One worker's lease and its view of the others', on a plain redis-py client.

    Args:
        client: a client with short socket timeouts (a renewal must not hang past the lease).
        keys: key names with the deployment's prefix.
        worker: this worker's id (:func:`new_worker_id`).
        info: what the registry shows about this worker (host, pid, env, ...).
    """

    def __init__(
        self, client: redis.Redis, keys: Keys, worker: str, info: Mapping[str, Any]
    ) -> None:
        self.client = client
        self.keys = keys
        self.worker = worker
        self.info = json.dumps({**info, "started": time.time()})
        self._renew = client.register_script(_RENEW)
        self._claim = client.register_script(_CLAIM)

    def renew(self, ttl: float = LEASE_TTL_S) -> bool:
        """Extend the lease; False if this worker was reaped (it must stop). Raises RedisError."""
        keys = [self.keys.lease(self.worker), self.keys.tombstone(self.worker), self.keys.registry]
        return bool(self._renew(keys=keys, args=[self.worker, int(ttl * 1000), self.info]))

    def release(self) -> None:
        """Let the lease go now (a clean exit): whatever is still held is reaped at once."""
        self.client.delete(self.keys.lease(self.worker))

    def dead_workers(self) -> list[str]:
        """Registered workers whose lease is gone."""
        others = [as_text(w) for w in self.client.hkeys(self.keys.registry)]
        others = [w for w in others if w != self.worker]
        if not others:
            return []
        pipe = self.client.pipeline(transaction=False)
        for worker in others:
            pipe.exists(self.keys.lease(worker))
        return [w for w, alive in zip(others, pipe.execute(), strict=True) if not alive]

    def claim(self, dead: str) -> list[str] | None:
        """Move ``dead``'s delivery tags into our own set; None if it turned out to be alive."""
        keys = [
            self.keys.lease(dead),
            self.keys.held(dead),
            self.keys.held(self.worker),
            self.keys.registry,
            self.keys.tombstone(dead),
        ]
        tags = self._claim(keys=keys, args=[dead, TOMBSTONE_TTL_S])
        if tags is None:
            return None
        return [as_text(t) for t in tags]


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (the clients here do not decode replies)."""
    return value.decode() if isinstance(value, bytes) else value
