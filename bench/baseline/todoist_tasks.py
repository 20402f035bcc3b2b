"""Todoist active tasks, sequentially, with todoist-api-python: every page into one list."""

from __future__ import annotations

import os
from typing import Any

import todoist_api_python._core.endpoints as endpoints
from todoist_api_python.api import TodoistAPI

from bench.baseline._common import main


def run() -> tuple[list[Any], str, str]:
    endpoints.API_URL = os.environ["TODOIST_API_URL"].rstrip("/")
    api = TodoistAPI(os.environ["TODOIST_API_TOKEN"])
    records = [task.to_dict() for page in api.get_tasks(limit=200) for task in page]
    return records, "todoist", "tasks"


if __name__ == "__main__":
    main(run)
