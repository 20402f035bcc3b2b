"""Todoist API v1 emulator: ``/tasks`` and ``/projects`` with cursor pagination.

Shapes follow todoist-api-python's recorded responses (``tests/data/test_defaults.py``):
timestamps carry microseconds (``2025-04-03T03:14:15.926536Z``), tasks carry ``day_order``, and
``next_cursor`` is opaque: a client can only hand back what it was given (a cursor it made up,
or one for another endpoint, is a 400). With ``loop`` on, the last page's ``next_cursor`` sends
the client back to the second page, and paging never ends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from ela.sandbox.emulators.server import Emulator, Request, Response, bearer, unauthorized

DEFAULT_TOKEN = "todoist-emulator-token"
MAX_PAGE = 200  # Todoist's maximum `limit`
CURSOR_KEY = b"todoist-emulator-cursors"  # signs cursors, so only the emulator can make them


def stamp(moment: datetime) -> str:
    """Todoist's timestamp form: UTC, microseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cursor_for(endpoint: str, offset: int) -> str:
    """The opaque cursor of the page starting at ``offset`` of ``endpoint``."""
    body = offset.to_bytes(4, "big")
    mac = hmac.new(CURSOR_KEY, endpoint.encode() + body, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")


def offset_of(endpoint: str, cursor: str) -> int | None:
    """The offset a cursor of ``endpoint`` stands for, or None if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except ValueError:
        return None
    offset = int.from_bytes(raw[12:], "big")
    return offset if len(raw) == 16 and cursor == cursor_for(endpoint, offset) else None


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
        self.route("GET", r"/api/v1/tasks", self._list("tasks", lambda: self.tasks))
        self.route("GET", r"/api/v1/projects", self._list("projects", lambda: self.projects))

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
                created = base + timedelta(days=n * 3, microseconds=self.random.randrange(10**6))
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
                        "created_at": stamp(created),
                        "updated_at": stamp(created),
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
                created = base + timedelta(hours=n * 5, microseconds=self.random.randrange(10**6))
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
                        "day_order": -1,
                        "responsible_uid": None,
                        "assigned_by_uid": None,
                        "completed_at": None,
                        "added_by_uid": "2671355",
                        "added_at": stamp(created),
                        "updated_at": stamp(created),
                    }
                )

    # -- endpoints ------------------------------------------------------------------------
    def _list(self, endpoint: str, items: Any) -> Any:
        def handler(request: Request, _: re.Match[str]) -> Response:
            if bearer(request) != self.token:
                return unauthorized("Forbidden")
            try:
                limit = int(request.query.get("limit", 50))
            except ValueError:
                return invalid("limit")
            if not 1 <= limit <= MAX_PAGE:
                return invalid("limit")
            start = 0
            if request.query.get("cursor"):
                found = offset_of(endpoint, request.query["cursor"])
                if found is None:
                    return invalid("cursor")
                start = found
            with self.lock:
                rows = list(items())
            page = self.drifted(rows[start : start + limit])
            following: str | None = None
            if start + limit < len(rows):
                following = cursor_for(endpoint, start + limit)
            elif self.loop and len(rows) > limit:
                following = cursor_for(endpoint, limit)  # back to the second page, forever
            return Response(200, {"results": page, "next_cursor": following})

        return handler


def invalid(argument: str) -> Response:
    """Todoist's answer to a bad argument."""
    return Response(
        400,
        {
            "error": "Invalid argument value",
            "error_code": 20,
            "error_extra": {"argument": argument},
            "error_tag": "INVALID_ARGUMENT_VALUE",
            "http_code": 400,
        },
    )
