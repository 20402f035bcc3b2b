"""Todoist via todoist-api-python (httpx): active tasks, projects and sections, cursor-paged;
completed tasks by completion date, incremental.

The library sends the requests, with its auth header and its paging (``next_cursor``); what
lands is each page's JSON as Todoist sent it, kept by a response hook. The library also turns
every record into a dataclass that requires every field it knows, and refuses a record without
one (a project without ``can_assign_tasks``, seen on real accounts): that refusal becomes a
warning in the manifest, and the page still lands, because a field added, dropped or retyped
by Todoist must never lose a run.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ela import endpoints, limits
from ela.connectors.base import (
    FUTURE_SKEW,
    FetchContext,
    Paginator,
    Record,
    Service,
    http_error,
    loads,
    parse_retry_after,
    read_body,
    require,
)
from ela.connectors.pacing import BackfillProfile, Quota
from ela.connectors.strava import MAX_LOOKBACK_DAYS  # the longest lookback a job may set
from ela.errors import FatalError, IngestError, PayloadError, RetriableError

if TYPE_CHECKING:
    import httpx
    from todoist_api_python.api import TodoistAPI

COMPLETED_PATH = "tasks/completed/by_completion_date"
PAGE_SIZE = 200  # Todoist's maximum page size for list endpoints.
# Completed tasks: one request may span "up to 3 months" (todoist-api-python's docstring of
# get_completed_tasks_by_completion_date, and the API v1 reference); a longer window is cut into
# windows of this many days, which fit in any three calendar months (the shortest are 89 days).
COMPLETED_WINDOW_DAYS = 88
COMPLETED_LOOKBACK_DAYS = 7  # re-read before the cursor: offline completions sync late
COMPLETED_FIRST_DAYS = 30  # how far back a first run reaches without `days`
# Todoist's documented rate limit: 1,000 requests per user per 15 minutes.
READ_QUOTA = Quota.shared("Todoist 15-minute", 15 * 60, 1000)
INFLATE_STEP = 1 << 16  # bytes a compressed body may expand to in one step
REAUTH = "TODOIST_API_TOKEN is invalid or revoked; set a new one"


class TodoistClient:
    """A TodoistAPI whose httpx client is routed, timed out, counted and capped, and that keeps
    the body of each page it fetches (:attr:`fresh`)."""

    def __init__(self, api: TodoistAPI, ctx: FetchContext) -> None:
        self.api = api
        self.ctx = ctx
        self.fresh: dict[str, Any] | None = None

    def pages(
        self, what: str, library_pages: Iterator[list[Any]], field: str = "results"
    ) -> Iterator[Record]:
        """Every record of every page the library's paginator fetches, as Todoist sent it
        (under ``field``: ``results``, or ``items`` for completed tasks)."""
        pages = Paginator(f"todoist: {what}", self.ctx)
        while pages.has_more:
            self.fresh = None
            try:
                next(library_pages)
            except StopIteration:
                return
            except Exception as exc:
                if self.fresh is None or isinstance(exc, IngestError):
                    raise  # the request itself failed
                # The library fetched the page, then its model refused a record of it.
                self.ctx.warn(_refused(what, exc))
            body = self.fresh
            if body is None:  # a paginator that fetched nothing: not the library's
                raise PayloadError(f"{pages.name}: the library returned a page it never fetched")
            yield from pages.read(body[field])
            pages.advance(body.get("next_cursor"))


def _decoded(response: httpx.Response) -> Iterator[bytes]:
    """The body, decompressed :data:`INFLATE_STEP` bytes at a time.

    httpx would expand each 64 KiB it reads whole, up to 64 MB at once for a gzip bomb; zlib's
    ``max_length`` keeps every step small, so :func:`read_body` refuses a bomb having held
    little more than the cap. The client asks for gzip or deflate only (httpx's default).
    """
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("gzip", "deflate"):
        yield from response.iter_raw()
        return
    inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)  # 32+: a gzip or a zlib header
    for chunk in response.iter_raw():
        while chunk:
            yield inflate.decompress(chunk, INFLATE_STEP)
            chunk = inflate.unconsumed_tail
    yield inflate.flush()


def _refused(what: str, exc: Exception) -> str:
    """The warning for a page whose records todoist-api-python's model refuses (one line, no
    record values)."""
    skip = ("Input JSON", "Provided", "Expected Keys")
    lines = [line.strip() for line in str(exc).splitlines()]
    detail = " ".join(line for line in lines if line and not line.startswith(skip))
    return (
        f"todoist: {what}: todoist-api-python's model refuses some records "
        f"({type(exc).__name__}: {detail[:200]}); they land as Todoist sent them"
    )


@contextmanager
def _open(ctx: FetchContext) -> Iterator[TodoistClient]:
    import httpx
    from todoist_api_python.api import TodoistAPI

    (token,) = require(
        ctx.environ, "TODOIST_API_TOKEN", fix="create one under Todoist → Settings → Integrations"
    )
    hosts = endpoints.Hosts.of("todoist", ctx.environ, "TODOIST_API_URL")
    connect, read = endpoints.http_timeout(ctx.environ)
    cap = limits.max_body_bytes(ctx.environ)
    holder: dict[str, TodoistClient] = {}

    # The library passes its own per-request timeout (60 s read); ours wins.
    timeout = httpx.Timeout(read, connect=connect).as_dict()

    def route(request: httpx.Request) -> None:
        ctx.count_call()
        request.extensions["timeout"] = timeout
        routed = hosts.route(str(request.url))
        if routed != str(request.url):
            request.url = httpx.URL(routed)
            request.headers["Host"] = request.url.netloc.decode()

    def keep_raw(response: httpx.Response) -> None:
        # Hooks run before httpx reads the body: read it here, decoded, up to the cap, and
        # leave it where response.read() keeps it, so the library reads these same bytes.
        where = f"todoist: GET {response.url.path}"
        try:
            declared = int(response.headers.get("Content-Length", ""))
        except ValueError:
            declared = None
        try:
            response._content = read_body(_decoded(response), cap, where, declared, ctx.warn)
        except zlib.error as exc:
            response.close()
            raise PayloadError(f"{where}: the compressed body is damaged ({exc})") from exc
        except PayloadError:
            response.close()
            raise
        if not response.is_success:
            return  # the library raises HTTPStatusError; the error map reads it
        try:  # orjson (the library decodes the page again, for models we never land)
            body = loads(response.content)
        except ValueError as exc:
            raise PayloadError(f"todoist: malformed JSON from {response.url.path}") from exc
        # Lists answer {"results": [...]}; completed tasks {"items": [...]}.
        field = "items" if response.url.path.rstrip("/").endswith(COMPLETED_PATH) else "results"
        results = body.get(field) if isinstance(body, dict) else None
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise PayloadError(f"todoist: {response.url.path} returned no '{field}' list")
        holder["client"].fresh = body

    http = httpx.Client(event_hooks={"request": [route], "response": [keep_raw]})
    api = TodoistAPI(token, client=http)
    client = holder["client"] = TodoistClient(api, ctx)
    with api:  # closes the httpx client; the api object stays referenced while pages are read
        yield client


def _classify(exc: BaseException) -> IngestError | None:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return http_error(
            "todoist",
            response.status_code,
            exc.request.url.path,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            reauth=REAUTH,
            location=response.headers.get("Location"),
        )
    if isinstance(exc, (httpx.TimeoutException, httpx.TransportError)):
        return RetriableError(f"todoist: {type(exc).__name__}: {exc}")
    if isinstance(exc, (TypeError, KeyError, ValueError)):
        return PayloadError(f"todoist: unexpected record shape: {exc}")
    return None


todoist: Service[TodoistClient] = Service("todoist", open_client=_open, classify=_classify)


@todoist.data_type("tasks")
def tasks(client: TodoistClient, ctx: FetchContext) -> Iterator[Record]:
    """Active tasks, every page."""
    yield from client.pages("tasks", client.api.get_tasks(limit=PAGE_SIZE))


@todoist.data_type("projects")
def projects(client: TodoistClient, ctx: FetchContext) -> Iterator[Record]:
    """Active projects, every page."""
    yield from client.pages("projects", client.api.get_projects(limit=PAGE_SIZE))


@todoist.data_type("sections")
def sections(client: TodoistClient, ctx: FetchContext) -> Iterator[Record]:
    """Active sections of every project, every page."""
    yield from client.pages("sections", client.api.get_sections(limit=PAGE_SIZE))


def _completed_calls(days: int, most_records: int) -> int:
    """A backfill chunk's cost: one call per window, plus a page per 200 beyond the first."""
    windows = max(1, math.ceil(days / COMPLETED_WINDOW_DAYS))
    return windows + max(0, math.ceil(most_records / PAGE_SIZE) - 1)


def _completed_at(raw: Record, what: str) -> float:
    """A completed task's ``completed_at``, in epoch seconds."""
    try:
        return datetime.fromisoformat(str(raw["completed_at"])).timestamp()
    except (KeyError, ValueError) as exc:
        raise PayloadError(
            f"{what}: task {raw.get('id')!r} has no valid `completed_at`; nothing was committed"
        ) from exc


def completed_key(raw: Record) -> str:
    """What tells two completions apart: the task, and when it was completed (a task
    uncompleted and completed again is a new completion)."""
    return f"{raw.get('id')} {raw.get('completed_at')}"


def windows(since: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
    """``[since, until]`` cut into windows of at most :data:`COMPLETED_WINDOW_DAYS` days,
    oldest first, each starting a microsecond after the one before ends (both ends are
    inclusive for the API)."""
    step = timedelta(days=COMPLETED_WINDOW_DAYS)
    start = since
    while start <= until:
        end = min(until, start + step)
        yield start, end
        start = end + timedelta(microseconds=1)


@todoist.data_type(
    "completed_tasks",
    params=("days", "lookback_days"),
    incremental=True,
    backfill=BackfillProfile(
        chunk_days=COMPLETED_WINDOW_DAYS,
        until_exclusive=True,  # chunks abut: one's `until` is the next one's `since`
        estimate=_completed_calls,
        quotas=(READ_QUOTA,),
        max_chunk_days=366,
    ),
)
def completed_tasks(client: TodoistClient, ctx: FetchContext) -> Iterator[Record]:
    """Tasks completed since the cursor, re-reading a lookback, by completion date.

    Active tasks never show what was done. Each run asks for the tasks completed from
    ``lookback_days`` (default :data:`COMPLETED_LOOKBACK_DAYS`) before its cursor through its
    scheduled time (a first run: the last ``days``, default :data:`COMPLETED_FIRST_DAYS`), in
    windows of at most :data:`COMPLETED_WINDOW_DAYS` days (the API refuses one over three
    months), and
    lands those whose task id + ``completed_at`` it has not landed before (the job's state): a
    task completed offline syncs with its real, earlier ``completed_at``, and a task
    uncompleted and completed again comes back with a new one. ``ctx.since`` (inclusive) /
    ``ctx.until`` (exclusive; a backfill) set the window instead, and it lands whole.

    The cursor is the newest ``completed_at`` landed (epoch seconds), never past
    :meth:`FetchContext.horizon`; landed keys are kept for :data:`MAX_LOOKBACK_DAYS`.
    """
    what = "todoist: completed_tasks"
    cursor = _cursor(ctx.cursor)
    horizon = ctx.horizon().timestamp()
    if ctx.since is not None:
        since = ctx.since
    elif cursor is not None:
        lookback = timedelta(days=ctx.lookback_days or COMPLETED_LOOKBACK_DAYS)
        since = datetime.fromtimestamp(cursor, UTC) - lookback
    else:
        since = ctx.now - timedelta(days=ctx.days or COMPLETED_FIRST_DAYS)
    # Through the run's scheduled time (and the skew a clock may have): a run that waited
    # in the queue leaves the rest to the next run's lookback.
    # An explicit `until` is exclusive, as for Strava (the API's is inclusive).
    until = ctx.until - timedelta(microseconds=1) if ctx.until else ctx.now + FUTURE_SKEW
    explicit = ctx.since is not None
    # An explicit window moves the cursor only if it joins the committed range.
    joins = ctx.since is None or (cursor is not None and ctx.since.timestamp() <= cursor)
    newest: float | None = None
    for start, end in windows(since, until):
        library_pages = client.api.get_completed_tasks_by_completion_date(
            since=start, until=end, limit=PAGE_SIZE
        )
        for raw in client.pages("completed_tasks", library_pages, "items"):
            done = _completed_at(raw, what)
            key = completed_key(raw)
            if key in ctx.landed or (not explicit and key in ctx.already_landed):
                continue
            ctx.landed[key] = done
            record = f"completed_tasks: task {raw.get('id')}, completed {raw['completed_at']},"
            if not ctx.past_horizon(done, horizon, record):
                newest = done if newest is None else max(newest, done)
            yield raw
    if joins and newest is not None and (cursor is None or newest > cursor):
        ctx.new_cursor = newest
    committed = ctx.new_cursor if ctx.new_cursor is not None else cursor
    if committed is not None:  # no later run re-reads further back
        ctx.landed_floor = committed - MAX_LOOKBACK_DAYS * 86400


def _cursor(cursor: Any) -> float | None:
    if cursor is None:
        return None
    try:
        return float(cursor)
    except (TypeError, ValueError):
        raise FatalError(f"todoist: unreadable completed_tasks cursor {cursor!r}") from None
