"""A year of Garmin daily heart rate, sequentially, with garminconnect: one call per day,
landed as the downstream needs it (the same bytes as the worker's).

The worker's stored tokens (``ELA_TOKEN_DIR/garmin.json``) are handed to ``Garmin.login``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bench.baseline._common import garmin_login, main

DAYS = 365


def run() -> tuple[list[Any], str, str]:
    garmin = garmin_login()
    today = datetime.now(UTC).date()
    records = []
    for n in range(DAYS - 1, -1, -1):
        day = (today - timedelta(days=n)).isoformat()
        record = garmin.get_heart_rates(day)
        if record:
            # What the downstream needs, as the origin's fetcher and loader did it (docs/landing.md,
            # What lands where): the samples as objects, the day asked for, the data type.
            values = record.get("heartRateValues")
            if values is not None:
                record["heartRateValues"] = [{"timestamp": t, "value": v} for t, v in values]
            record["date"] = day
            record["data_type"] = "heart_rate"
            records.append(record)
    return records, "garmin", "heart_rate"


if __name__ == "__main__":
    main(run)
