"""Periodic housekeeping tasks (scheduled in beat_schedules, routed to ``{env}.ops``)."""

from __future__ import annotations

from ela.retention import purge_errors as purge
from ela.sinks import bucket_url, open_bucket
from worker.app import app


@app.task(name="tasks.purge_errors")
def purge_errors() -> dict[str, object]:
    """Delete error objects older than the env's error_retention_days."""
    config = app.ela_config
    bucket = open_bucket(bucket_url(config.global_.gcs_bucket))
    deleted = purge(bucket, config)
    return {"deleted": len(deleted), "retention_days": config.global_.error_retention_days}
