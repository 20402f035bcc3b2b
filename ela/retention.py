"""Error objects are kept for the env's ``error_retention_days`` (7 dev, 14 prd), then deleted.

On GCS a lifecycle rule does it (``ela bucket setup``); everywhere, and for local buckets the
only way, the daily ``tasks.purge_errors`` deletes error objects filed under a day older than the
retention. Age comes from the day in the object's name (the day the run failed), which is what a
person reading ``errors/2026-11-18/`` expects, and is the same on every sink.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ela import naming
from ela.config import IngestionConfig
from ela.connectors import SERVICES
from ela.sinks import Bucket, GCSBucket


def lifecycle_rule(config: IngestionConfig) -> dict[str, Any]:
    """Delete ``{service}/errors/…`` objects older than the retention."""
    return {
        "action": {"type": "Delete"},
        "condition": {
            "age": config.global_.error_retention_days,
            "matchesPrefix": [naming.errors_prefix(service) for service in SERVICES],
        },
    }


def apply_lifecycle(bucket: GCSBucket, config: IngestionConfig) -> dict[str, Any]:
    """Set our rule on the bucket, keeping any rules of its own that others added."""
    rule = lifecycle_rule(config)
    gcs = bucket.bucket
    gcs.reload()
    ours = set(rule["condition"]["matchesPrefix"])
    kept = [
        dict(r)
        for r in gcs.lifecycle_rules
        if set(r.get("condition", {}).get("matchesPrefix", [])) != ours
    ]
    gcs.lifecycle_rules = [*kept, rule]
    gcs.patch()
    return rule


def purge_errors(bucket: Bucket, config: IngestionConfig, now: datetime | None = None) -> list[str]:
    """Delete error objects filed more than ``error_retention_days`` ago; returns their names."""
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(days=config.global_.error_retention_days)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    deleted = []
    for service in SERVICES:
        for obj in bucket.list(naming.errors_prefix(service)):
            day = naming.error_day(obj.name)
            if day is not None and day < cutoff:
                bucket.delete(obj.name)
                deleted.append(obj.name)
    return deleted
