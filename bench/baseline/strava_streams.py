"""Strava streams of 200 activities, sequentially, with stravalib, as a cron script would:
refresh the token, list the activities (pages of 200), then one streams call per activity.

Each call is the one ``Client.get_activity_streams(id)`` makes (every stream type stravalib
knows, ``key_by_type=true``), read through its protocol layer so the records are Strava's JSON,
wrapped as the product lands them (``{"activity_id", "streams"}``); a manual entry's 404 is
skipped.
"""

from __future__ import annotations

from typing import Any

from stravalib.exc import ObjectNotFound
from stravalib.strava_model import StreamType

from bench.baseline._common import main
from bench.baseline.strava_activities import logged_in


def run() -> tuple[list[Any], str, str]:
    client = logged_in(rate_limit_requests=False)
    ids: list[int] = []
    page = 1
    while True:
        batch = client.protocol.get("/athlete/activities", after=0, page=page, per_page=200)
        ids.extend(a["id"] for a in batch)
        if len(batch) < 200:
            break
        page += 1
    keys = ",".join(StreamType.model_json_schema()["enum"])
    records: list[Any] = []
    for ident in ids:
        try:
            body = client.protocol.get(
                "/activities/{id}/streams", id=ident, keys=keys, key_by_type=True
            )
        except ObjectNotFound:
            continue
        if body:
            records.append({"activity_id": ident, "streams": body})
    return records, "strava", "streams"


if __name__ == "__main__":
    main(run)
