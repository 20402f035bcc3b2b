"""Celery settings derived from one environment's config. Each links to its doc:
https://docs.celeryq.dev/en/stable/userguide/configuration.html"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kombu import Queue

from ela.config import IngestionConfig
from ela.connectors import SERVICES
from ela.settings import DEFAULT_BROKER

# The longest a retry may wait in the broker (Strava's 15-minute window). Longer waits fail the
# run instead: the next scheduled run picks up from the same cursor.
MAX_RETRY_COUNTDOWN = 15 * 60


def hard_time_limit(config: IngestionConfig) -> int:
    """Soft limit plus a grace period for the task to record its failure."""
    soft = config.global_.timeout_minutes * 60
    return soft + max(60, soft // 10)


def ops_queue(config: IngestionConfig) -> str:
    """Where group fan-out and housekeeping run."""
    return config.queue("ops")


def queues(config: IngestionConfig) -> list[str]:
    return [config.queue(service) for service in SERVICES] + [ops_queue(config)]


def route(config: IngestionConfig, task_name: str) -> str:
    """``tasks.<service>.<data_type>`` → ``{env}.{service}``; anything else → ``{env}.ops``."""
    parts = task_name.split(".")
    if len(parts) == 3 and parts[0] == "tasks" and parts[1] in SERVICES:
        return config.queue(parts[1])
    return ops_queue(config)


def celery_settings(
    config: IngestionConfig, environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    broker = environ.get("REDIS_URL") or DEFAULT_BROKER
    soft = config.global_.timeout_minutes * 60
    hard = hard_time_limit(config)
    state_dir = environ.get("ELA_STATE_DIR", ".ela")
    prefix = environ.get("ELA_REDIS_PREFIX", "")
    return {
        # https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-url
        "broker_url": broker,
        # Redis redelivers a message not acked within the visibility timeout; it must outlast
        # the longest a task can hold one: the hard limit plus a retry's countdown.
        # https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
        # ELA_REDIS_PREFIX keeps a sandbox's keys apart from a real deployment on the same Redis.
        "broker_transport_options": {
            "visibility_timeout": hard + MAX_RETRY_COUNTDOWN + 300,
            **({"global_keyprefix": prefix} if prefix else {}),
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
        "result_backend_transport_options": {"global_keyprefix": f"{prefix}ela-{config.env}-"},
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
        # #beat-scheduler — one sending beat per env, however many are started.
        "beat_scheduler": "beat_schedules.scheduler:SingleBeatScheduler",
        # #beat-schedule-filename
        "beat_schedule_filename": os.path.join(state_dir, f"celerybeat-schedule-{config.env}"),
        "imports": ("tasks",),
    }
