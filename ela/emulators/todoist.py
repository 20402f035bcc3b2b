"""Todoist API v1 emulator: ``/tasks`` and ``/projects`` with cursor pagination."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from ela.emulators.server import Emulator, Request, Response, bearer, unauthorized

DEFAULT_TOKEN = "todoist-emulator-token"
MAX_PAGE = 200  # Todoist's maximum `limit`


class TodoistEmulator(Emulator):
    """Serves ``{url}/api/v1/...``; point ``TODOIST_API_URL`` at :attr:`api_url`."""

    name = "todoist"

    def __init__(
        self, projects: int = 25, tasks: int = 1500, token: str = DEFAULT_TOKEN, seed: int = 7
    ) -> None:
        super().__init__(seed)
        self.token = token
        self.projects: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.add_projects(projects)
        self.add_tasks(tasks)
        self.route("GET", r"/api/v1/tasks", self._list(lambda: self.tasks))
        self.route("GET", r"/api/v1/projects", self._list(lambda: self.projects))

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v1"

    def environ(self) -> dict[str, str]:
        return {"TODOIST_API_URL": self.api_url, "TODOIST_API_TOKEN": self.token}

    # -- data -----------------------------------------------------------------------------
    def add_projects(self, count: int) -> None:
        base = datetime(2024, 1, 1, tzinfo=UTC)
        with self.lock:
            for _ in range(count):
                n = len(self.projects)
                created = base + timedelta(days=n * 3)
                self.projects.append(
                    {
                        "id": f"6X{n:06d}",
                        "name": "Inbox" if n == 0 else f"Project {n}",
                        "description": "",
                        "child_order": n,
                        "color": self.random.choice(["berry_red", "blue", "green", "grey"]),
                        "is_collapsed": False,
                        "is_shared": False,
                        "is_favorite": n % 7 == 0,
                        "is_archived": False,
                        "can_assign_tasks": False,
                        "view_style": "list",
                        "created_at": created.isoformat().replace("+00:00", "Z"),
                        "updated_at": created.isoformat().replace("+00:00", "Z"),
                        "parent_id": None,
                        "inbox_project": n == 0,
                        "workspace_id": None,
                        "folder_id": None,
                    }
                )

    def add_tasks(self, count: int) -> None:
        base = datetime(2025, 1, 1, tzinfo=UTC)
        words = ["review", "write", "call", "plan", "buy", "fix", "read", "ship", "book", "clean"]
        with self.lock:
            for _ in range(count):
                n = len(self.tasks)
                created = base + timedelta(hours=n * 5)
                due = created.date() + timedelta(days=self.random.randint(0, 30))
                self.tasks.append(
                    {
                        "id": f"6Y{n:07d}",
                        "content": f"{self.random.choice(words)} item {n}",
                        "description": "",
                        "project_id": self.projects[n % len(self.projects)]["id"],
                        "section_id": None,
                        "parent_id": None,
                        "labels": [],
                        "priority": self.random.randint(1, 4),
                        "due": {
                            "date": due.isoformat(),
                            "string": due.isoformat(),
                            "lang": "en",
                            "is_recurring": False,
                            "timezone": None,
                        }
                        if n % 3
                        else None,
                        "deadline": None,
                        "duration": None,
                        "is_collapsed": False,
                        "child_order": n,
                        "responsible_uid": None,
                        "assigned_by_uid": None,
                        "completed_at": None,
                        "added_by_uid": "2671355",
                        "added_at": created.isoformat().replace("+00:00", "Z"),
                        "updated_at": created.isoformat().replace("+00:00", "Z"),
                    }
                )

    # -- endpoints ------------------------------------------------------------------------
    def _list(self, items: Any) -> Any:
        def handler(request: Request, _: re.Match[str]) -> Response:
            if bearer(request) != self.token:
                return unauthorized("Forbidden")
            try:
                limit = int(request.query.get("limit", 50))
            except ValueError:
                return Response(400, {"error": "limit must be an integer"})
            if not 1 <= limit <= MAX_PAGE:
                return Response(400, {"error": f"limit must be between 1 and {MAX_PAGE}"})
            start = int(request.query["cursor"]) if request.query.get("cursor") else 0
            with self.lock:
                rows = list(items())
            page = rows[start : start + limit]
            more = start + limit < len(rows)
            return Response(
                200, {"results": page, "next_cursor": str(start + limit) if more else None}
            )

        return handler
