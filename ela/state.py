"""Job state, one object per job under ``{service}/_state/``.

What a job remembers between runs, all written only after the run's manifest (the commit):

* ``cursor``: a JSON number or ISO string that grows with time, only ever moved forwards, so a
  late or replayed run can never rewind a job.
* ``landed``: keys of records already landed (a provider id, or ``played_at`` + track id) with
  a number to order them by (a start time, a day): a run that re-reads a window lands only the
  records whose key is not here. Bounded: keys below the floor a run names (the start of the
  window no later run re-reads) are dropped, and never more than :data:`MAX_LANDED` are kept,
  the highest first. Dropping a key can only make a record land twice, never lose it.
* ``complete_through``: the last calendar day (``YYYY-MM-DD``) that has landed complete; every
  day before it has too, or lies before the job's first run.

State written before these fields existed (just a cursor) reads as an empty ``landed`` set and
no ``complete_through``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ela import naming
from ela.sinks import Bucket, get_json, put_json

# The most landed keys a job keeps. The sets stay far smaller in practice (the last 50 plays, a
# few weeks of activities); this bounds a state object (~0.5 MB at the cap, see the benchmark).
MAX_LANDED = 10_000


@dataclasses.dataclass
class JobState:
    """A job's state as read from the bucket (empty for a job that never committed)."""

    cursor: Any = None
    landed: dict[str, float] = dataclasses.field(default_factory=dict)
    complete_through: str | None = None


@dataclasses.dataclass
class StateUpdate:
    """What one committed run adds to its job's state (also recorded in its manifest).

    Attributes:
        cursor: the run's new cursor, or None to leave it.
        landed: keys of the records this run landed, with their order values.
        landed_floor: keys ordered below this are dropped (no later run re-reads them).
        complete_through: the last day now known complete, or None.
    """

    cursor: Any = None
    landed: dict[str, float] = dataclasses.field(default_factory=dict)
    landed_floor: float | None = None
    complete_through: str | None = None

    def recorded(self) -> dict[str, Any]:
        """The manifest's copy (without the cursor, which the manifest carries already), so a
        crash between manifest and state is healed by re-applying it."""
        landed = bounded(self.landed, self.landed_floor)
        out: dict[str, Any] = {}
        if landed:
            out["landed"] = landed
        if self.landed_floor is not None:
            out["landed_floor"] = self.landed_floor
        if self.complete_through is not None:
            out["complete_through"] = self.complete_through
        return out

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> StateUpdate:
        recorded = manifest.get("state_update") or {}
        return cls(
            cursor=manifest.get("cursor_after"),
            landed=dict(recorded.get("landed") or {}),
            landed_floor=recorded.get("landed_floor"),
            complete_through=recorded.get("complete_through"),
        )


def read_state(bucket: Bucket, service: str, job: str) -> JobState:
    body = get_json(bucket, naming.state(service, job))
    if not isinstance(body, dict):
        return JobState()
    landed = body.get("landed")
    return JobState(
        cursor=body.get("cursor"),
        landed=dict(landed) if isinstance(landed, dict) else {},
        complete_through=body.get("complete_through"),
    )


def read_cursor(bucket: Bucket, service: str, job: str) -> Any:
    return read_state(bucket, service, job).cursor


def commit(bucket: Bucket, service: str, job: str, update: StateUpdate, run_id: str) -> bool:
    """Merge ``update`` into the stored state; True if anything changed.

    Merging (rather than overwriting) keeps what another run of the same job committed in
    between: the cursor and ``complete_through`` only move forwards, landed keys are a union.
    """
    current = read_state(bucket, service, job)
    cursor = current.cursor
    if update.cursor is not None and (cursor is None or _ahead(update.cursor, cursor)):
        cursor = update.cursor
    landed = bounded({**current.landed, **update.landed}, update.landed_floor)
    complete = current.complete_through
    if update.complete_through is not None and (
        complete is None or update.complete_through > complete
    ):
        complete = update.complete_through
    after = JobState(cursor, landed, complete)
    if after == current:
        return False
    body: dict[str, Any] = {"job": job, "cursor": cursor, "run_id": run_id}
    if landed:
        body["landed"] = landed
    if complete is not None:
        body["complete_through"] = complete
    body["updated_at"] = datetime.now(UTC)
    put_json(bucket, naming.state(service, job), body)
    return True


def advance_cursor(bucket: Bucket, service: str, job: str, cursor: Any, run_id: str) -> bool:
    """Store ``cursor`` if it is ahead of the stored one; True if it moved."""
    return commit(bucket, service, job, StateUpdate(cursor=cursor), run_id)


def bounded(landed: Mapping[str, float], floor: float | None) -> dict[str, float]:
    """``landed`` without keys ordered below ``floor``, and at most the MAX_LANDED highest."""
    kept = {k: v for k, v in landed.items() if floor is None or v >= floor}
    if len(kept) > MAX_LANDED:
        kept = dict(sorted(kept.items(), key=lambda kv: kv[1], reverse=True)[:MAX_LANDED])
    return kept


def _ahead(new: Any, old: Any) -> bool:
    try:
        return bool(new > old)
    except TypeError:  # a changed cursor format: trust the newer run
        return new != old
