"""Incremental cursors, one object per job under ``{service}/_state/``.

Cursors are plain JSON numbers or ISO strings that grow with time; a cursor is only ever moved
forwards, so a late or replayed run can never rewind a job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ela import naming
from ela.sinks import Bucket, get_json, put_json


def read_cursor(bucket: Bucket, service: str, job: str) -> Any:
    state = get_json(bucket, naming.state(service, job))
    return state.get("cursor") if isinstance(state, dict) else None


def advance_cursor(bucket: Bucket, service: str, job: str, cursor: Any, run_id: str) -> bool:
    """Store ``cursor`` if it is ahead of the stored one; True if it moved."""
    current = read_cursor(bucket, service, job)
    if current is not None and not _ahead(cursor, current):
        return False
    put_json(
        bucket,
        naming.state(service, job),
        {"job": job, "cursor": cursor, "run_id": run_id, "updated_at": datetime.now(UTC)},
    )
    return True


def _ahead(new: Any, old: Any) -> bool:
    try:
        return bool(new > old)
    except TypeError:  # a changed cursor format: trust the newer run
        return new != old
