"""Dynamic scheduling: when a job whose source forgets should look again before its next tick.

Spotify keeps only the last 50 plays. prd reads them every 3 hours, and three hours of
continuous listening is about 60 plays: the oldest would be gone before the next run. So after
each run of such a job (a data type that takes ``follow_up_plays``), the plays it landed say
how fast the user is listening, and :func:`follow_up` decides whether one extra run should come
before the next scheduled one, and when: at the moment ``follow_up_plays`` (default 35) more
plays are expected, and never sooner than 15 minutes after this run. The follow-up run decides
again, so follow-ups continue while the rate stays high and stop when it drops.

This module only decides; ``tasks/follow_up.py`` sends the run (Celery) and keeps at most one
pending per job.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from ela.config import IngestionConfig
from ela.connectors import data_type

FOLLOW_UP_PLAYS = 35  # of the 50 Spotify keeps: a margin of 15 for a faster listener
MIN_GAP = timedelta(minutes=15)  # never sooner than this after the last run (nor before a tick)


@dataclasses.dataclass(frozen=True)
class FollowUp:
    """The decision after a run: ``due`` is when to run again, or None for no follow-up (a
    pending one is then cancelled). ``reason`` says why, for the log."""

    due: datetime | None
    reason: str


def follow_up(
    config: IngestionConfig, job_name: str, manifest: dict[str, Any], now: datetime
) -> FollowUp | None:
    """The decision after a committed run of ``job_name`` that finished at ``now``; None when
    the job has no follow-ups or the run says nothing about the rate (a dry run, an explicit
    window, a run that was already committed)."""
    job = config.jobs[job_name]
    if "follow_up_plays" not in data_type(job.service, job.data_type).params:
        return None
    window = manifest.get("window") or {}
    if manifest.get("outcome") != "succeeded" or window.get("since") or window.get("until"):
        return None
    span = manifest.get("landed_span") or {}
    try:
        next_tick = job.cron.next_runs(config.global_.tz, now, 1)[0]
    except IndexError:  # no tick ahead (a cron that never fires again): nothing comes first
        next_tick = now + timedelta(days=366)
    return decide(
        count=int(manifest.get("records") or 0),
        oldest=_time(span.get("oldest")),
        newest=_time(span.get("newest")),
        previous=_time(span.get("previous")),
        threshold=job.follow_up_plays or FOLLOW_UP_PLAYS,
        now=now,
        next_tick=next_tick,
    )


def decide(
    *,
    count: int,
    oldest: datetime | None,
    newest: datetime | None,
    previous: datetime | None = None,
    threshold: int,
    now: datetime,
    next_tick: datetime,
) -> FollowUp:
    """When ``threshold`` more plays are expected, at the pace of the ``count`` plays just
    landed (from ``oldest`` to ``newest``, and since ``previous``, the newest play landed
    before; the faster of the two, so a session that just started counts): that is the
    follow-up, unless the next scheduled run comes first (within :data:`MIN_GAP` of it)."""
    if count == 0 or newest is None or oldest is None:
        return FollowUp(None, "no new plays")
    earliest = now + MIN_GAP
    paces = []
    if count >= 2 and newest > oldest:
        paces.append((newest - oldest) / (count - 1))
    if previous is not None and newest > previous:
        paces.append((newest - previous) / count)
    if paces:
        per_play = min(paces)
        due = max(earliest, newest + per_play * threshold)
        pace = f"{count} plays, one every {per_play.total_seconds() / 60:.1f} min"
    elif count >= threshold:  # all stamped at once (a sync): no pace to read, look soon
        due, pace = earliest, f"{count} plays at once"
    else:
        return FollowUp(None, f"{count} plays: too few to read a pace")
    due = due.replace(second=0, microsecond=0) + timedelta(minutes=1)  # a whole minute, later
    if due > next_tick - MIN_GAP:
        return FollowUp(None, f"{pace}: the scheduled run at {next_tick:%H:%M} UTC comes first")
    return FollowUp(due, f"{pace}: {threshold} more expected by {due:%H:%M} UTC")


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None
