"""The dlt peer: one source through a dlt REST API pipeline into a local folder, as JSONL.

Run by ``python -m bench --peer dlt`` with the Python of the bench's own dlt environment
(``.bench-venvs/dlt``), never the product's: this file imports dlt and the standard library only
(it is run by path, so not even ``bench``). It is what a data engineer would write instead of
this service: ``rest_api_source`` (dlt's declarative REST client: the paginator, a bearer
token) into the ``filesystem`` destination with ``loader_file_format="jsonl"``, dlt's defaults
otherwise (it infers a schema, normalizes each record, unnests lists into child tables and keeps
a load package on disk before loading).

Usage: ``python bench/peer_dlt.py SOURCE FOLDER`` with SOURCE one of ``spotify``, ``todoist``,
``strava`` and the emulators' variables in the environment (``*_API_URL`` and credentials, as
the product reads them). It prints one JSON line: records (rows of the source's own table),
seconds (token → load finished, imports excluded) and peak_kib (this process' VmHWM).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import dlt
from dlt.sources.rest_api import rest_api_source


def _token(url: str, form: dict[str, str], basic: tuple[str, str] | None = None) -> Any:
    """An OAuth refresh-token grant, as each provider's docs describe it."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode())
    if basic:
        pair = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {pair}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def spotify(env: dict[str, str]) -> dict[str, Any]:
    token = _token(
        env["SPOTIFY_ACCOUNTS_URL"].rstrip("/") + "/api/token",
        {"grant_type": "refresh_token", "refresh_token": env["SPOTIFY_REFRESH_TOKEN"]},
        (env["SPOTIFY_CLIENT_ID"], env["SPOTIFY_CLIENT_SECRET"]),
    )["access_token"]
    return {
        "client": {
            "base_url": env["SPOTIFY_API_URL"],
            "auth": {"type": "bearer", "token": token},
        },
        "resources": [
            {
                "name": "saved_tracks",
                "endpoint": {
                    "path": "me/tracks",
                    "params": {"limit": 50},  # Spotify's maximum page
                    "data_selector": "items",
                    "paginator": {"type": "json_link", "next_url_path": "next"},
                },
            }
        ],
    }


def todoist(env: dict[str, str]) -> dict[str, Any]:
    return {
        "client": {
            "base_url": env["TODOIST_API_URL"].rstrip("/") + "/",
            "auth": {"type": "bearer", "token": env["TODOIST_API_TOKEN"]},
        },
        "resources": [
            {
                "name": "tasks",
                "endpoint": {
                    "path": "tasks",
                    "params": {"limit": 200},  # Todoist's maximum page
                    "data_selector": "results",
                    "paginator": {
                        "type": "cursor",
                        "cursor_path": "next_cursor",
                        "cursor_param": "cursor",
                    },
                },
            }
        ],
    }


def strava(env: dict[str, str]) -> dict[str, Any]:
    api = env["STRAVA_API_URL"].rstrip("/")
    token = _token(
        f"{api}/oauth/token",
        {
            "client_id": env["STRAVA_CLIENT_ID"],
            "client_secret": env["STRAVA_CLIENT_SECRET"],
            "grant_type": "refresh_token",
            "refresh_token": env["STRAVA_REFRESH_TOKEN"],
        },
    )["access_token"]
    return {
        "client": {"base_url": f"{api}/api/v3/", "auth": {"type": "bearer", "token": token}},
        "resources": [
            {
                "name": "activities",
                "endpoint": {
                    "path": "athlete/activities",
                    "params": {"after": 0, "per_page": 200},  # Strava's maximum page
                    "data_selector": "$",
                    "paginator": {
                        "type": "page_number",
                        "base_page": 1,
                        "page_param": "page",
                        "total_path": None,
                        "stop_after_empty_page": True,
                    },
                },
            }
        ],
    }


SOURCES = {"spotify": spotify, "todoist": todoist, "strava": strava}


def peak_kib() -> int:
    """This process' peak resident set size (VmHWM), KiB, as the worker's is measured."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    name, folder = sys.argv[1], Path(sys.argv[2])
    env = dict(os.environ)
    start = time.perf_counter()
    source = rest_api_source(SOURCES[name](env), name=name)
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{name}",
        pipelines_dir=str(folder / "pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=(folder / "bucket").as_uri()),
        dataset_name=name,
    )
    info = pipeline.run(source, loader_file_format="jsonl")
    seconds = time.perf_counter() - start
    info.raise_on_failed_jobs()
    table = next(iter(source.resources))
    records = pipeline.last_trace.last_normalize_info.row_counts.get(table, 0)
    print(json.dumps({"records": records, "seconds": seconds, "peak_kib": peak_kib()}))


if __name__ == "__main__":
    main()
