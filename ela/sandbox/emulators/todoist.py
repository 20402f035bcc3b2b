"""Todoist API v1 emulator: ``/tasks`` and ``/projects`` with cursor pagination.

Shapes follow todoist-api-python's recorded responses (``tests/data/test_defaults.py``):
timestamps carry microseconds (``2025-04-03T03:14:15.926536Z``), tasks carry ``day_order``, and
``next_cursor`` is opaque: a client can only hand back what it was given (a cursor it made up,
or one for another endpoint, is a 400). With ``loop`` on, the last page's ``next_cursor`` sends
the client back to the second page, and paging never ends.

Sections carry API v1's fields (``section_order``, ``is_collapsed``, ``is_archived``,
``is_deleted``; the library's older fixture says ``order`` / ``collapsed``, and its model takes
both). Completed tasks (``/tasks/completed/by_completion_date``) answer ``{"items", "next_cursor"}``
for a ``since``/``until`` window of at most three months (longer: a 400), newest completion
first. They have a clock (``clock``): a completion shows once it has synced, and one made
offline syncs late with its real, earlier ``completed_at`` (:meth:`complete_late`); a task
uncompleted and completed again shows once, with its new ``completed_at`` (:meth:`recomplete`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
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


def page_start(endpoint: str, request: Request) -> int | None:
    """Where the page a request asks for starts: 0 without a cursor, None for a bad one."""
    cursor = request.query.get("cursor")
    return offset_of(endpoint, cursor) if cursor else 0


class TodoistEmulator(Emulator):
    """Serves ``{url}/api/v1/...``; point ``TODOIST_API_URL`` at :attr:`api_url`."""

    name = "todoist"

    def __init__(
        self,
        projects: int = 25,
        tasks: int = 1500,
        token: str = DEFAULT_TOKEN,
        seed: int = 7,
        completed: int = 200,
        clock: Callable[[], datetime] | None = None,
        completed_days: int = 60,
    ) -> None:
        super().__init__(seed)
        self.token = token
        self.projects: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.add_projects(projects)
        self.add_tasks(tasks)
        self.route("GET", r"/api/v1/tasks", self._list("tasks", lambda: self.tasks))
        self.route("GET", r"/api/v1/projects", self._list("projects", lambda: self.projects))
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sections: list[dict[str, Any]] = []
        self.add_sections(max(1, projects) * 3)
        self.route("GET", r"/api/v1/sections", self._list("sections", self._live_sections))
        # Completions (task records with `completed_at`), and when each synced (by task id).
        self.completed: list[dict[str, Any]] = []
        self.synced_at: dict[str, datetime] = {}
        self.add_completed(completed, days=completed_days)
        self.route("GET", r"/api/v1/tasks/completed/by_completion_date", self._completed_by_date)

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

    def add_sections(self, count: int) -> None:
        """Sections spread over the projects; one in eight deleted (never served, but it
        still takes its place in a page: see :meth:`_live_sections`)."""
        with self.lock:
            for _ in range(count):
                n = len(self.sections)
                project = self.projects[n % len(self.projects)] if self.projects else None
                added = datetime(2024, 2, 1, tzinfo=UTC) + timedelta(
                    days=n, microseconds=self.random.randrange(10**6)
                )
                self.sections.append(
                    {
                        "id": f"6Z{n:06d}",
                        "user_id": "2671355",
                        "project_id": project["id"] if project else "6X000000",
                        "added_at": stamp(added),
                        "updated_at": stamp(added),
                        "archived_at": None,
                        "name": self.random.choice(["Next", "Waiting", "Someday", "Done", "Ideas"]),
                        "section_order": n // max(1, len(self.projects)) + 1,
                        "is_archived": False,
                        "is_deleted": n % 8 == 7,
                        "is_collapsed": False,
                    }
                )

    def _live_sections(self) -> list[dict[str, Any] | None]:
        """Sections as paged: a deleted one is dropped from its page after the page is cut
        (None here), so a page can be short, or empty, and still have a ``next_cursor``."""
        return [None if s["is_deleted"] else s for s in self.sections]

    def add_completed(
        self, count: int, days: int = 60, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        """``count`` completions spread over the ``days`` before ``end`` (default: now)."""
        end = end or self.clock()
        with self.lock:
            new = []
            for _ in range(count):
                done = end - timedelta(seconds=self.random.uniform(0, days * 86400))
                new.append(self._completion(done))
            self.completed.extend(new)
            return new

    def _completion(self, done: datetime, task_id: str | None = None) -> dict[str, Any]:
        n = len(self.completed)
        task = {**self.tasks[n % len(self.tasks)]} if self.tasks else {}
        added = done - timedelta(days=self.random.randint(0, 40), seconds=1)
        task.update(
            id=task_id or f"6W{n:07d}",
            content=f"done item {n}",
            checked=True,
            added_at=stamp(added),
            completed_at=stamp(done),
            updated_at=stamp(done),
        )
        return task

    def complete_late(self, done: datetime, synced: datetime) -> dict[str, Any]:
        """A task completed offline at ``done`` that reaches Todoist at ``synced``."""
        with self.lock:
            task = self._completion(done)
            self.completed.append(task)
            self.synced_at[task["id"]] = synced
            return task

    def recomplete(self, task_id: str, done: datetime) -> dict[str, Any]:
        """Uncomplete ``task_id`` and complete it again at ``done``: it shows once, anew."""
        with self.lock:
            old = next(t for t in self.completed if t["id"] == task_id)
            self.completed.remove(old)
            task = {**old, "completed_at": stamp(done), "updated_at": stamp(done)}
            self.completed.append(task)
            self.synced_at.pop(task_id, None)
            return task

    # -- endpoints ------------------------------------------------------------------------
    def _completed_by_date(self, request: Request, _: re.Match[str]) -> Response:
        if bearer(request) != self.token:
            return unauthorized("Forbidden")
        try:
            since = datetime.fromisoformat(request.query["since"])
            until = datetime.fromisoformat(request.query["until"])
            limit = int(request.query.get("limit", 50))
        except (KeyError, ValueError):
            return invalid("since" if "since" not in request.query else "until")
        if since.tzinfo is None:  # a naive time is the user's; this user's zone is UTC
            since = since.replace(tzinfo=UTC)
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        if not 1 <= limit <= MAX_PAGE:
            return invalid("limit")
        if until < since or until > add_months(since, 3):
            return invalid("until")  # "up to 3 months" per request
        endpoint = f"completed {since.isoformat()} {until.isoformat()}"
        start = page_start(endpoint, request)
        if start is None:
            return invalid("cursor")
        with self.lock:
            now = self.clock()
            rows = [
                t
                for t in self.completed
                if since <= datetime.fromisoformat(t["completed_at"]) <= until
                and self.synced_at.get(t["id"], datetime.fromisoformat(t["completed_at"])) <= now
            ]
        rows.sort(key=lambda t: t["completed_at"], reverse=True)
        page = self.drifted(rows[start : start + limit])
        following = cursor_for(endpoint, start + limit) if start + limit < len(rows) else None
        return Response(200, {"items": page, "next_cursor": following})

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
            start = page_start(endpoint, request)
            if start is None:
                return invalid("cursor")
            with self.lock:
                rows = list(items())
            page = self.drifted([r for r in rows[start : start + limit] if r is not None])
            following: str | None = None
            if start + limit < len(rows):
                following = cursor_for(endpoint, start + limit)
            elif self.loop and len(rows) > limit:
                following = cursor_for(endpoint, limit)  # back to the second page, forever
            return Response(200, {"results": page, "next_cursor": following})

        return handler


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months (the day clipped to the month's last)."""
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    for day in (moment.day, 30, 29, 28):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


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
