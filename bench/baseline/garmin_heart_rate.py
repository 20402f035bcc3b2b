"""A year of Garmin daily heart rate, sequentially, with garminconnect: one call per day,
landed as the downstream needs it (the same bytes as the worker's).

The worker's stored tokens (``ELA_TOKEN_DIR/garmin.json``) are handed to ``Garmin.login``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import garminconnect.client as library
from garminconnect import Garmin

from bench.baseline._common import main

DAYS = 365


def run() -> tuple[list[Any], str, str]:
    garmin = Garmin()
    garmin.client._connectapi = os.environ["GARMIN_API_URL"].rstrip("/")
    garmin.client._sso = sso = os.environ["GARMIN_SSO_URL"].rstrip("/")
    library.DI_TOKEN_URL = f"{sso}/di-oauth2-service/oauth/token"
    garmin.login(tokenstore=(Path(os.environ["ELA_TOKEN_DIR"]) / "garmin.json").read_text())
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
