"""Section 4: API calls per run against the minimum, for full runs and for runs with nothing new.

Measured on section 2's local-folder round (:mod:`bench.sections.ingest`), which calls these.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import Runner, say
from bench.report import Row
from ela.connectors.garmin import SETTLE_HOURS


def full_run(label: str, why: str, minimum: int, manifest: dict[str, Any]) -> Row:
    """A full run's calls (``manifest``'s) against ``minimum``, which ``why`` explains."""
    return Row(
        f"4. calls/run: {label} (min {why})",
        manifest["api_calls"],
        minimum,
        "calls",
        "= min",
        manifest["api_calls"] <= minimum,
    )


def steady_state(runner: Runner) -> list[Row]:
    """A second run with nothing new since the first, per kind of completeness rule: Spotify
    re-reads its last 50 plays, Strava its lookback, Garmin activities its days, Garmin heart
    rate every day not yet final (today, and yesterday until it has settled)."""
    now = datetime.now(UTC)
    settling = now - datetime.combine(now.date(), datetime.min.time(), UTC)
    days = 2 if settling < timedelta(hours=SETTLE_HOURS) else 1
    rows = []
    for job, label, first, minimum in (
        ("spotify_recently_played", "Spotify recently played", True, 1),
        ("strava_activities", "Strava activities (10 days' lookback)", False, 1),
        ("garmin_activities", "Garmin activities (days 1)", False, 1),
        # The first (scheduled) run lands the config's 365 days and marks them complete.
        ("garmin_heart_rate", "Garmin heart rate (days not yet final)", True, days),
        ("todoist_projects", "Todoist projects", False, 1),
    ):
        if first:
            runner.run(job)  # lands what there is and sets the state
        manifest = runner.run(job)
        say(f"4. steady state {job}: {manifest['api_calls']} calls, {manifest['records']} records")
        rows.append(
            Row(
                f"4. calls/run, nothing new: {label}",
                manifest["api_calls"],
                minimum,
                "calls",
                "= min",
                manifest["api_calls"] <= minimum,
            )
        )
    return rows
