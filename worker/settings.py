"""Celery settings derived from one environment's config. Each links to its doc:
https://docs.celeryq.dev/en/stable/userguide/configuration.html"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kombu import Queue

from ela.config import IngestionConfig
from ela.connectors import SERVICES
from ela.run_input import route
from ela.settings import DEFAULT_BROKER, broker_prefix, result_prefix

# The longest a retry may wait in the broker (Strava's 15-minute window). Longer waits fail the
# run instead: the next scheduled run picks up from the same cursor.
MAX_RETRY_COUNTDOWN = 15 * 60
# How long a stopping worker lets its runs go on before it cancels them and puts them back on
# their queues (with any retry waiting on a countdown). A run of the shipped configs takes
# seconds; a long one (a year of Garmin heart rate, a Strava history) is redone by the next
# worker instead of holding a deploy. The compose files give the worker 10 s more than this
# before Docker's SIGKILL (stop_grace_period), for the cancel and the requeue.
SHUTDOWN_GRACE_S = 15


def hard_time_limit(config: IngestionConfig) -> int:
    """Soft limit plus a grace period for the task to record its failure."""
    soft = config.global_.timeout_minutes * 60
    return soft + max(60, soft // 10)


def ops_queue(config: IngestionConfig) -> str:
    """Where group fan-out and housekeeping run."""
    return config.queue("ops")


def queues(config: IngestionConfig) -> list[str]:
    return [config.queue(service) for service in SERVICES] + [ops_queue(config)]


def celery_settings(
    config: IngestionConfig, environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    broker = environ.get("REDIS_URL") or DEFAULT_BROKER
    soft = config.global_.timeout_minutes * 60
    hard = hard_time_limit(config)
    return {
        # https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-url
        "broker_url": broker,
        # Redis redelivers a message not acked within the visibility timeout; it must outlast
        # the longest a task can hold one: the hard limit plus a retry's countdown.
        # https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
        # A key prefix per env (ela.settings.broker_prefix): dev and prd on one Redis share no
        # queue, unacked hash, event or control channel, so neither sees the other's workers.
        "broker_transport_options": {
            "visibility_timeout": hard + MAX_RETRY_COUNTDOWN + 300,
            "global_keyprefix": broker_prefix(config.env, environ),
        },
        "broker_connection_retry_on_startup": True,
        # #broker-transport — kombu's Redis transport, made to survive a Redis restart with
        # acks_late tasks in flight (see worker/redis_transport.py).
        "broker_transport": "worker.redis_transport:Transport",
        # #result-backend — results are summaries for `ela run --wait` and Flower; the durable
        # record is the manifest in the bucket.
        "result_backend": broker,
        "result_expires": 24 * 3600,
        "result_extended": True,
        "result_backend_transport_options": {
            "global_keyprefix": result_prefix(config.env, environ)
        },
        # #task-serializer — JSON only: no pickle from the broker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # #timezone — crontabs are read in the config's timezone.
        "timezone": config.global_.timezone,
        "enable_utc": True,
        # #worker-concurrency
        "worker_concurrency": config.global_.max_parallel_jobs,
        # #task-soft-time-limit / #task-time-limit
        "task_soft_time_limit": soft,
        "task_time_limit": hard,
        # #task-acks-late / #task-reject-on-worker-lost — a run killed mid-way is redelivered;
        # runs are idempotent (same run id, same object names), so twice is safe.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # #worker-soft-shutdown-timeout — SIGTERM (remapped to SIGQUIT by `ela worker`, or
        # SIGQUIT from the compose files' stop_signal) lets running tasks go on this long, then
        # cancels them and requeues every unacknowledged message, waiting retries included.
        # Without REMAP_SIGTERM a plain SIGTERM is Celery's unbounded warm shutdown.
        "worker_soft_shutdown_timeout": SHUTDOWN_GRACE_S,
        # #worker-prefetch-multiplier — long tasks: take one at a time.
        "worker_prefetch_multiplier": 1,
        # #task-queues — a worker consumes only its own env's queues.
        "task_queues": [Queue(name) for name in queues(config)],
        "task_default_queue": ops_queue(config),
        "task_create_missing_queues": False,
        "task_routes": (
            lambda name, args, kwargs, options, task=None, **kw: {"queue": route(config, name)},
        ),
        # #worker-send-task-events / #task-send-sent-event — what Flower shows.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        # #beat-scheduler — one sending beat per env, every tick sent once, the last ticks in
        # Redis (no schedule file: beat_schedule_filename and `beat -s` are not used).
        "beat_scheduler": "beat_schedules.scheduler:SingleBeatScheduler",
        "imports": ("tasks",),
    }
