"""The floor under every sequential Strava client: the activities pages alone, one call after
another (requests and orjson), nothing checked, nothing written.

Numbered pages that end with a page that is not full cannot be asked for ahead without calls
past the end, so no client that makes the minimum calls can be faster than this. It prints the
same JSON line as the other scripts (its bucket argument is ignored; nothing lands).
"""

from __future__ import annotations

import json
import os
import time

import orjson
import requests

from bench.baseline._common import peak_kib

PER_PAGE = 200


def main() -> None:
    api = os.environ["STRAVA_API_URL"].rstrip("/")
    start = time.perf_counter()
    with requests.Session() as http:
        token = http.post(
            f"{api}/oauth/token",
            data={
                "client_id": os.environ["STRAVA_CLIENT_ID"],
                "client_secret": os.environ["STRAVA_CLIENT_SECRET"],
                "grant_type": "refresh_token",
                "refresh_token": os.environ["STRAVA_REFRESH_TOKEN"],
            },
            timeout=30,
        ).json()["access_token"]
        records, page = 0, 1
        while True:
            answer = http.get(
                f"{api}/api/v3/athlete/activities",
                params={"after": 0, "page": page, "per_page": PER_PAGE},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            answer.raise_for_status()
            count = len(orjson.loads(answer.content))
            records += count
            if count < PER_PAGE:
                break
            page += 1
    seconds = time.perf_counter() - start
    result = {"records": records, "seconds": seconds, "sha256": "", "peak_kib": peak_kib()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
