"""A year of Garmin all-day stress, sequentially, with garminconnect: one call per day, landed
as the downstream needs it (the same bytes as the worker's), the way a cron script would.

The worker's stored tokens (``ELA_TOKEN_DIR/garmin.json``) are handed to ``Garmin.login``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bench.baseline._common import garmin_login, main

DAYS = 365


def _names(descriptors: Any) -> list[str]:
    """Field names by position from Garmin's descriptors (either spelling)."""
    names: dict[int, str] = {}
    for entry in descriptors or []:
        index = entry.get("index", entry.get("bodyBatteryValueDescriptorIndex"))
        key = entry.get("key", entry.get("bodyBatteryValueDescriptorKey"))
        names[index] = key
    return [names[i] for i in sorted(names)]


def run() -> tuple[list[Any], str, str]:
    garmin = garmin_login()
    today = datetime.now(UTC).date()
    records = []
    for n in range(DAYS - 1, -1, -1):
        day = (today - timedelta(days=n)).isoformat()
        record = garmin.get_all_day_stress(day)
        if not record:
            continue
        # What the downstream needs (as the origin's loader flattened heart rate): each series
        # as objects, pairs as {timestamp, value}, wider rows named by their descriptors.
        stress = record.get("stressValuesArray")
        if stress:
            record["stressValuesArray"] = [{"timestamp": t, "value": v} for t, v in stress]
        battery = record.get("bodyBatteryValuesArray")
        if battery:
            names = _names(record.get("bodyBatteryValueDescriptorsDTOList"))
            record["bodyBatteryValuesArray"] = [
                dict(zip(names, row, strict=True)) for row in battery
            ]
        record["date"] = day
        record["data_type"] = "stress"
        records.append(record)
    return records, "garmin", "stress"


if __name__ == "__main__":
    main(run)
