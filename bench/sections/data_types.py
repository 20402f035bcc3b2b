"""Section 9: the data types added after the origin's thirteen jobs.

Each provider's module (``bench/<provider>_more.py``) measures its own new types: API calls per
run at their minimum (rows of item 4) and, for the biggest, ingest against a plain sequential
script with the same library (rows of item 2). The table sorts them into those items.
"""

from __future__ import annotations

from bench import garmin_more, spotodo_more, strava_more
from bench.harness import Context
from bench.report import Row


def rows(ctx: Context) -> list[Row]:
    return [
        *spotodo_more.call_rows(ctx.tmp),
        *spotodo_more.ingest_rows(ctx.tmp, ctx.repeats),
        *strava_more.api_call_rows(ctx.tmp),
        *strava_more.ingest_rows(ctx.tmp, ctx.repeats, ctx.latency),
        *garmin_more.call_rows(ctx.tmp),
        *garmin_more.ingest_rows(ctx.tmp, ctx.repeats, ctx.latency),
    ]
