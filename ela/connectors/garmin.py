"""Garmin Connect via garminconnect."""

from __future__ import annotations

from ela.connectors._pending import not_implemented, pending_service

MAX_DAYS = 366  # one call per day for sleep/heart rate: a year is the most one run may ask for

garmin = pending_service("garmin", ("GARMIN_USERNAME", "GARMIN_PASSWORD"))
garmin.data_type("activities", params=("days",), max_days=MAX_DAYS)(not_implemented)
garmin.data_type("sleep", params=("days",), max_days=MAX_DAYS)(not_implemented)
garmin.data_type("heart_rate", params=("days",), max_days=MAX_DAYS)(not_implemented)
