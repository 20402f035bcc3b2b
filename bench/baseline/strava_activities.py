"""Strava activities, sequentially, with stravalib: refresh the token, then page until empty.

Records are the API's JSON as stravalib's protocol layer returns it (``Client.protocol.get``),
so the JSONL is the same as the product's; stravalib's host is fixed to www.strava.com, so the
session sends its requests to ``STRAVA_API_URL`` instead.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from stravalib.client import Client

from bench.baseline._common import main

LIBRARY_BASE = "https://www.strava.com"


class Redirected(requests.Session):
    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        text = url.decode() if isinstance(url, bytes) else url
        if text.startswith(LIBRARY_BASE):
            text = os.environ["STRAVA_API_URL"].rstrip("/") + text[len(LIBRARY_BASE) :]
        return super().request(method, text, *args, **kwargs)


def logged_in(**options: Any) -> Client:
    """A stravalib client pointed at ``STRAVA_API_URL``, its token refreshed as a script would."""
    client = Client(requests_session=Redirected(), **options)
    token = client.refresh_access_token(
        client_id=int(os.environ["STRAVA_CLIENT_ID"]),
        client_secret=os.environ["STRAVA_CLIENT_SECRET"],
        refresh_token=os.environ["STRAVA_REFRESH_TOKEN"],
    )
    client.access_token = token["access_token"]
    client.refresh_token = token["refresh_token"]
    client.token_expires = token["expires_at"]
    return client


def run() -> tuple[list[Any], str, str]:
    client = logged_in()
    records: list[Any] = []
    page = 1
    while True:
        batch = client.protocol.get("/athlete/activities", after=0, page=page, per_page=200)
        if not batch:
            break
        records.extend(batch)
        page += 1
    return records, "strava", "activities"


if __name__ == "__main__":
    main(run)
