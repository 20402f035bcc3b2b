"""The one place that names objects in the bucket (SPEC §4)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

LANDING_TIME = "%Y_%m_%d_%H_%M"


def landing(service: str, data_type: str, scheduled_at: datetime, run_id: str) -> str:
    """``{service}/landing/{YYYY_MM_DD_HH_MM}_{service}_{data_type}_{run8}.jsonl``.

    The origin's name plus the run id's first 8 characters, so the downstream loaders (which
    read the data type from the name) keep working and a retried run rewrites its own object.
    """
    stamp = scheduled_at.astimezone(UTC).strftime(LANDING_TIME)
    return f"{service}/landing/{stamp}_{service}_{data_type}_{run8(run_id)}.jsonl"


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
