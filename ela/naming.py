"""The one place that names objects in the bucket (docs/landing.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

LANDING_TIME = "%Y_%m_%d_%H_%M"


def landing(service: str, data_type: str, scheduled_at: datetime, run_id: str) -> str:
    """``{service}/landing/{YYYY_MM_DD_HH_MM}_{run8}_{service}_{data_type}.jsonl``.

    The origin's name with the run id's first 8 characters after the time stamp: a retried run
    rewrites its own object, and the name still ends in ``_{service}_{data_type}.jsonl``, which
    is how the downstream loaders tell a file's data type (the current Spotify loader takes
    only names that end in ``_{data_type}.jsonl``). None of them reads the time stamp.

    Objects landed before this name was adopted end ``_{service}_{data_type}_{run8}.jsonl``;
    nothing in this product reads landing names (status, retention and backfill go by
    manifests and error objects), so buckets holding both kinds keep working.
    """
    stamp = scheduled_at.astimezone(UTC).strftime(LANDING_TIME)
    return f"{service}/landing/{stamp}_{run8(run_id)}_{service}_{data_type}.jsonl"


def manifest(service: str, job: str, run_id: str) -> str:
    return f"{service}/_runs/{job}/{run_id}.json"


def manifests_prefix(service: str, job: str) -> str:
    return f"{service}/_runs/{job}/"


def state(service: str, job: str) -> str:
    return f"{service}/_state/{job}.json"


def error(service: str, job: str, run_id: str, at: datetime) -> str:
    return f"{service}/errors/{at.astimezone(UTC):%Y-%m-%d}/{job}_{run_id}.json"


def errors_prefix(service: str) -> str:
    return f"{service}/errors/"


_ERROR_DAY = re.compile(r"^[a-z]+/errors/(\d{4}-\d{2}-\d{2})/")


def error_day(name: str) -> datetime | None:
    """The UTC day an error object was filed under, from its name."""
    match = _ERROR_DAY.match(name)
    return datetime.strptime(match.group(1), "%Y-%m-%d").replace(tzinfo=UTC) if match else None


def run8(run_id: str) -> str:
    return run_id.replace("-", "")[:8]
