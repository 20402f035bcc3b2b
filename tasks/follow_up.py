"""Follow-up runs (:mod:`ela.followup` decides when): sent as Celery countdowns, one per job.

One Redis key per job holds its pending follow-up, ``{due time} {chain}``, or ``run:{task id}``
while the follow-up runs. Every run of the job that can read a pace writes it: a new due time
(the follow-up waiting picks it up) or nothing (the pending one is cancelled), so at most one
follow-up is pending and it always reflects the latest run.

A follow-up is a message of the job's own task with ``follow_up={chain}``. It waits in hops of
at most :data:`worker.settings.MAX_RETRY_COUNTDOWN`, like a retry: a message held longer than
the broker's visibility timeout would be delivered a second time. Each hop reads the key again,
so a later due time or a cancellation takes effect at the next hop, and a hop whose chain is no
longer the key's (cancelled, then a new follow-up planned) ends.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ela.followup import follow_up
from worker.app import config
from worker.settings import MAX_RETRY_COUNTDOWN

if TYPE_CHECKING:
    from celery import Task

log = logging.getLogger("tasks.follow_up")

RUNNING = "run:"
# A key outlives its due time by this much (a running follow-up by RUNNING_FOR), so a chain lost
# with Redis or a killed worker stops blocking new follow-ups soon after.
GRACE = timedelta(seconds=2 * MAX_RETRY_COUNTDOWN)
RUNNING_FOR = timedelta(hours=2)
# Set the due time, keeping the chain of a follow-up that waits; else start the chain given.
# Returns the chain to send a first message for, or "" when one waits already.
# KEYS: the job's key; ARGV: due time, new chain, ttl.
_PLAN = """
local value = redis.call('get', KEYS[1])
if value and string.sub(value, 1, 4) ~= 'run:' then
  local chain = string.match(value, ' (.*)$')
  redis.call('set', KEYS[1], ARGV[1] .. ' ' .. chain, 'EX', ARGV[3])
  return ''
end
redis.call('set', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[3])
return ARGV[2]
"""
# Claim a due follow-up for this task, if the key still holds what was read.
_CLAIM = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


def key(job: str) -> str:
    return f"{os.environ.get('ELA_REDIS_PREFIX', '')}ela-{config.env}-follow-up:{job}"


def take(task: Task, job: str, chain: str) -> tuple[dict[str, Any] | None, str | None]:
    """For a follow-up message of ``chain``: ``(None, due)`` when the job is to run now (``due``
    is None for a redelivered message that had claimed it), else ``(result, None)``: the
    message went on for another hop (``waiting``) or is no longer wanted (``cancelled``)."""
    client = task.backend.client
    claim = client.register_script(_CLAIM)
    own = f"{RUNNING}{task.request.id}"
    while True:
        value = _text(client.get(key(job)))
        if value == own:  # this message was redelivered: it is still ours to run
            return None, None
        due_text, _, pending = (value or "").partition(" ")
        if not value or value.startswith(RUNNING) or pending != chain:
            return {"outcome": "cancelled", "job": job}, None
        wait = (datetime.fromisoformat(due_text) - datetime.now(UTC)).total_seconds()
        if wait > 0:
            hop(task, job, chain, wait)
            return {"outcome": "waiting", "job": job, "follow_up_at": due_text}, None
        if claim(keys=[key(job)], args=[value, own, int(RUNNING_FOR.total_seconds())]):
            return None, due_text
        # The due time changed between reading and claiming: read it again.


def hop(task: Task, job: str, chain: str, wait: float) -> None:
    task.apply_async(
        kwargs={"job": job, "follow_up": chain}, countdown=min(wait, MAX_RETRY_COUNTDOWN)
    )


def plan(task: Task, job: str, manifest: dict[str, Any]) -> None:
    """After a committed run: set, move or cancel the job's pending follow-up. Best effort: the
    run is committed whatever happens here, and the next run decides again."""
    try:
        _plan(task, job, manifest)
    except Exception:
        log.exception("%s: could not plan a follow-up run", job)


def _plan(task: Task, job: str, manifest: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    decision = follow_up(config, job, manifest, now)
    if decision is None:
        return
    client = task.backend.client
    if decision.due is None:
        if client.delete(key(job)):
            log.info("%s: pending follow-up cancelled (%s)", job, decision.reason)
        return
    ttl = int((decision.due - now + GRACE).total_seconds())
    plan_script = client.register_script(_PLAN)
    chain = _text(
        plan_script(keys=[key(job)], args=[decision.due.isoformat(), uuid.uuid4().hex[:12], ttl])
    )
    if chain:  # no follow-up message waits: send the first of a new chain
        hop(task, job, chain, (decision.due - now).total_seconds())
    log.info("%s: follow-up run at %s (%s)", job, decision.due.isoformat(), decision.reason)


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
