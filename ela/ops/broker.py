"""What Redis holds for one environment: queues, deliveries in workers' hands, workers' leases.

Read-only, straight from the keys kombu and the workers keep (no Celery, no broadcast to the
workers, so it answers with every worker dead): each queue's length; every message taken by a
worker and not yet acknowledged (kombu's ``unacked`` hash, with when it was taken), with the
worker holding it (``ela/leases.py``) and whether that worker's lease is alive; and whether a
run sent by ``ela run`` is still anywhere at all (:func:`locate`).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from ela.config import IngestionConfig
from ela.connectors import SERVICES
from ela.leases import Keys, as_text
from ela.ops.status import _parse_time, iso
from ela.settings import DEFAULT_BROKER, broker_prefix, redacted, result_prefix

# kombu's Redis transport keeps a message of priority p in "{queue}\x06\x16{p}" (p > 0).
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def redis_url(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("REDIS_URL") or DEFAULT_BROKER


def queues(config: IngestionConfig) -> list[str]:
    return [config.queue(service) for service in SERVICES] + [config.queue("ops")]


@dataclasses.dataclass
class Worker:
    id: str
    alive: bool
    info: dict[str, Any]
    held: set[str]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "alive": self.alive, **self.info, "held": len(self.held)}


@dataclasses.dataclass
class Delivery:
    """A message a worker took and has not acknowledged.

    Attributes:
        state: ``running`` (a live worker runs it), ``retry waiting`` (a live worker holds it
            until its countdown ends), ``dead worker`` (its worker's lease expired: a live
            worker's reaper puts it back within seconds) or ``unknown worker`` (no lease
            records it: Redis gives it back after the visibility timeout).
    """

    run_id: str
    task: str
    job: str | None
    queue: str
    state: str
    worker: str | None
    taken_at: datetime
    eta: datetime | None

    def age_s(self, now: datetime) -> int:
        return max(0, int((now - self.taken_at).total_seconds()))

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "task": self.task,
            "job": self.job,
            "queue": self.queue,
            "state": self.state,
            "worker": self.worker,
            "taken_at": iso(self.taken_at),
            "age_s": self.age_s(now),
            "eta": iso(self.eta),
        }


@dataclasses.dataclass
class BrokerReport:
    url: str
    error: str | None = None
    queued: dict[str, int] = dataclasses.field(default_factory=dict)
    workers: list[Worker] = dataclasses.field(default_factory=list)
    deliveries: list[Delivery] = dataclasses.field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for d in self.deliveries if d.state == state)

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "url": self.url,
            "reachable": self.error is None,
            "error": self.error,
            "queued": self.queued,
            "running": self.count("running"),
            "retries_waiting": self.count("retry waiting"),
            "held_by_dead_workers": self.count("dead worker"),
            "held_by_unknown_workers": self.count("unknown worker"),
            "workers": [w.as_json() for w in self.workers],
            "deliveries": [d.as_json(now) for d in self.deliveries],
        }


def connect(environ: Mapping[str, str] = os.environ) -> redis.Redis:
    return redis.Redis.from_url(redis_url(environ), socket_timeout=5, socket_connect_timeout=2)


def collect(
    config: IngestionConfig,
    environ: Mapping[str, str] = os.environ,
    now: datetime | None = None,
) -> BrokerReport:
    """The env's queues, workers and unacknowledged deliveries; ``error`` set if Redis does not
    answer (the rest of ``ela status`` does not need it)."""
    now = now or datetime.now(UTC)
    report = BrokerReport(redacted(redis_url(environ)))
    keys = Keys(broker_prefix(config.env, environ))
    try:
        client = connect(environ)
        names = queues(config)
        pipe = client.pipeline(transaction=False)
        for queue in names:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(f"{keys.prefix}{queue}{suffix}")
        lengths = pipe.execute()
        step = len(_PRIORITY_SUFFIXES)
        report.queued = {q: sum(lengths[i * step : (i + 1) * step]) for i, q in enumerate(names)}
        report.workers = _workers(client, keys, config.env)
        report.deliveries = _deliveries(client, keys, config, set(names), report.workers, now)
    except redis.RedisError as exc:
        report.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return report


def _workers(client: redis.Redis, keys: Keys, env: str) -> list[Worker]:
    """Every registered worker (all envs: a worker of either env reaps any dead one)."""
    registry = client.hgetall(keys.registry)
    pipe = client.pipeline(transaction=False)
    ids = [as_text(w) for w in registry]
    for worker in ids:
        pipe.exists(keys.lease(worker))
        pipe.smembers(keys.held(worker))
    found = pipe.execute()
    workers = []
    for index, worker in enumerate(ids):
        info = _loads(registry[worker.encode()])
        held = {as_text(t) for t in found[2 * index + 1]}
        workers.append(Worker(worker, bool(found[2 * index]), info, held))
    workers.sort(key=lambda w: (w.info.get("env") != env, not w.alive, w.id))
    return workers


def _deliveries(
    client: redis.Redis,
    keys: Keys,
    config: IngestionConfig,
    names: set[str],
    workers: list[Worker],
    now: datetime,
) -> list[Delivery]:
    holders = {tag: w for w in workers for tag in w.held}
    index: Any = client.zrange(keys.unacked_index, 0, -1, withscores=True)
    taken = {as_text(tag): float(score) for tag, score in index}
    found = []
    for tag, raw in client.hgetall(keys.unacked).items():
        try:
            payload, _exchange, routing_key = json.loads(raw)
        except ValueError:
            continue
        if routing_key not in names:  # another env's, or another app's
            continue
        headers = payload.get("headers") or {}
        task = str(headers.get("task") or "?")
        eta = _parse_time(headers.get("eta"))
        holder = holders.get(as_text(tag))
        if holder is None:
            state = "unknown worker"
        elif not holder.alive:
            state = "dead worker"
        elif eta is not None and eta > now:
            state = "retry waiting"
        else:
            state = "running"
        found.append(
            Delivery(
                run_id=str(headers.get("id") or "?"),
                task=task,
                job=_job(payload, task, config),
                queue=routing_key,
                state=state,
                worker=holder.id if holder else None,
                taken_at=datetime.fromtimestamp(taken.get(as_text(tag), now.timestamp()), UTC),
                eta=eta,
            )
        )
    found.sort(key=lambda d: d.taken_at)
    return found


def locate(
    client: redis.Redis, env: str, queue: str, run_id: str, environ: Mapping[str, str] = os.environ
) -> str | None:
    """Where a sent run is: ``done`` or ``started`` (its result or state is stored),
    ``queued``, ``taken`` (a worker holds it), or None: Redis has lost it.

    A message moves from its queue to the unacked hash in two steps (BRPOP, then the ack
    bookkeeping): a caller should see None twice, a moment apart, before believing it.
    """
    meta = client.get(f"{result_prefix(env, environ)}celery-task-meta-{run_id}")
    prefix = broker_prefix(env, environ)
    if meta is not None:
        return "done" if _loads(meta).get("status") in ("SUCCESS", "FAILURE") else "started"
    needle = run_id.encode()
    for suffix in _PRIORITY_SUFFIXES:
        if any(needle in raw for raw in client.lrange(f"{prefix}{queue}{suffix}", 0, -1)):
            return "queued"
    if any(needle in raw for raw in client.hvals(f"{prefix}unacked")):
        return "taken"
    return None


def _job(payload: Mapping[str, Any], task: str, config: IngestionConfig) -> str | None:
    """The job a message runs: its ``job`` kwarg, else the task's default job."""
    try:
        body = json.loads(base64.b64decode(payload.get("body") or ""))
        job = body[1].get("job")
        if isinstance(job, str):
            return job
    except (ValueError, TypeError, IndexError, AttributeError):
        pass
    try:
        return config.job_for_task(task)
    except (KeyError, ValueError):
        return None


def _loads(raw: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
