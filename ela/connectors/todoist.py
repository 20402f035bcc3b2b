"""Todoist via todoist-api-python (httpx): active tasks and projects, cursor-paged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ela import endpoints
from ela.connectors.base import FetchContext, Record, Service, parse_retry_after, require
from ela.errors import IngestError, PayloadError, ReauthError, RetriableError

if TYPE_CHECKING:
    import httpx
    from todoist_api_python.api import TodoistAPI

PAGE_SIZE = 200  # Todoist's maximum page size for list endpoints.
LIBRARY_BASE = "https://api.todoist.com/api/v1"  # what the library hard-codes (API_URL)


class _Client:
    """A TodoistAPI whose httpx client is redirected, timed out, counted, and keeps raw pages.

    The library parses pages into dataclasses; we land the provider's JSON unchanged, so a
    response hook keeps the raw ``results`` of the page the library just fetched.
    """

    def __init__(self, api: TodoistAPI, http: httpx.Client) -> None:
        self.api = api
        self.http = http
        self.last_page: list[Record] = []

    def pages(self, paginator: Iterator[list[Any]]) -> Iterator[Record]:
        for parsed in paginator:
            if len(parsed) != len(self.last_page):
                raise PayloadError("todoist: page parsed to a different number of records")
            yield from self.last_page


@contextmanager
def _open(ctx: FetchContext) -> Iterator[_Client]:
    import httpx
    from todoist_api_python.api import TodoistAPI

    (token,) = require(
        ctx.environ, "TODOIST_API_TOKEN", fix="create one under Todoist → Settings → Integrations"
    )
    base = endpoints.url("TODOIST_API_URL", ctx.environ)
    connect, read = endpoints.http_timeout(ctx.environ)
    holder: dict[str, _Client] = {}

    # The library passes its own per-request timeout (60 s read); ours wins.
    timeout = httpx.Timeout(read, connect=connect).as_dict()

    def redirect(request: httpx.Request) -> None:
        ctx.count_call()
        request.extensions["timeout"] = timeout
        text = str(request.url)
        if base != LIBRARY_BASE and text.startswith(LIBRARY_BASE):
            request.url = httpx.URL(base + text[len(LIBRARY_BASE) :])
            request.headers["Host"] = request.url.netloc.decode()

    def keep_raw(response: httpx.Response) -> None:
        if response.is_success:
            response.read()
            try:
                body = json.loads(response.content)
            except ValueError as exc:
                raise PayloadError(f"todoist: malformed JSON from {response.url.path}") from exc
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
                raise PayloadError(f"todoist: {response.url.path} returned no 'results' list")
            holder["client"].last_page = results

    http = httpx.Client(
        event_hooks={"request": [redirect], "response": [keep_raw]},
    )
    api = TodoistAPI(token, client=http)
    client = holder["client"] = _Client(api, http)
    with api:  # closes the httpx client; the api object stays referenced while pages are read
        yield client


def _classify(exc: BaseException) -> IngestError | None:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status in (401, 403):
            return ReauthError(
                f"todoist: {status} from the API: TODOIST_API_TOKEN is invalid or revoked; "
                "set a new one"
            )
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(exc.response.headers.get("Retry-After"))
            return RetriableError(f"todoist: HTTP {status}", retry_after=retry_after)
        return PayloadError(f"todoist: HTTP {status} for {exc.request.url.path}")
    if isinstance(exc, (httpx.TimeoutException, httpx.TransportError)):
        return RetriableError(f"todoist: {type(exc).__name__}: {exc}")
    if isinstance(exc, (TypeError, KeyError, ValueError)):
        return PayloadError(f"todoist: unexpected record shape: {exc}")
    return None


todoist: Service[_Client] = Service(
    "todoist", credentials=("TODOIST_API_TOKEN",), open_client=_open, classify=_classify
)


@todoist.data_type("tasks")
def tasks(client: _Client, ctx: FetchContext) -> Iterator[Record]:
    """Active tasks, every page."""
    yield from client.pages(client.api.get_tasks(limit=PAGE_SIZE))


@todoist.data_type("projects")
def projects(client: _Client, ctx: FetchContext) -> Iterator[Record]:
    """Active projects, every page."""
    yield from client.pages(client.api.get_projects(limit=PAGE_SIZE))
