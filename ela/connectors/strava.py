"""Strava via stravalib."""

from __future__ import annotations

from ela.connectors._pending import not_implemented, pending_service

strava = pending_service(
    "strava", ("STRAVA_CLIENT_ID", "STRAVA_CLIENT_SECRET", "STRAVA_REFRESH_TOKEN")
)
strava.data_type("activities", params=("limit",), incremental=True)(not_implemented)
strava.data_type("athlete")(not_implemented)
