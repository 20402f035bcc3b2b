"""Todoist completed tasks, sequentially, with todoist-api-python: a cron script's way.

Every three-month window (the API's limit per request) from ``BENCH_SINCE`` to
``BENCH_UNTIL``, every page of each, into one list.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

import todoist_api_python._core.endpoints as endpoints
from todoist_api_python.api import TodoistAPI

from bench.baseline._common import main

WINDOW = timedelta(days=88)


def run() -> tuple[list[Any], str, str]:
    endpoints.API_URL = os.environ["TODOIST_API_URL"].rstrip("/")
    api = TodoistAPI(os.environ["TODOIST_API_TOKEN"])
    since = datetime.fromisoformat(os.environ["BENCH_SINCE"])
    until = datetime.fromisoformat(os.environ["BENCH_UNTIL"])
    records = []
    while since <= until:
        end = min(until, since + WINDOW)
        pages = api.get_completed_tasks_by_completion_date(since=since, until=end, limit=200)
        records += [task.to_dict() for page in pages for task in page]
        since = end + timedelta(microseconds=1)
    return records, "todoist", "completed_tasks"


if __name__ == "__main__":
    main(run)
