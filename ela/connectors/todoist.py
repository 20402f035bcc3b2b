"""Todoist via todoist-api-python (httpx): active tasks and projects, cursor-paged.

The library sends the requests, with its auth header and its paging (``next_cursor``); what
lands is each page's JSON as Todoist sent it, kept by a response hook. The library also turns
every record into a dataclass that requires every field it knows, and refuses a record without
one (a project without ``can_assign_tasks``, seen on real accounts): that refusal becomes a
warning in the manifest, and the page still lands, because a field added, dropped or retyped
by Todoist must never lose a run.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ela import endpoints, limits
from ela.connectors.base import (
    FetchContext,
    Paginator,
    Record,
    Service,
    http_error,
    parse_retry_after,
    read_body,
    require,
)
from ela.errors import IngestError, PayloadError, RetriableError

if TYPE_CHECKING:
    import httpx
    from todoist_api_python.api import TodoistAPI

PAGE_SIZE = 200  # Todoist's maximum page size for list endpoints.
INFLATE_STEP = 1 << 16  # bytes a compressed body may expand to in one step
REAUTH = "TODOIST_API_TOKEN is invalid or revoked; set a new one"


class TodoistClient:
    """A TodoistAPI whose httpx client is routed, timed out, counted and capped, and that keeps
    the body of each page it fetches (:attr:`fresh`)."""

    def __init__(self, api: TodoistAPI, ctx: FetchContext) -> None:
        self.api = api
        self.ctx = ctx
        self.fresh: dict[str, Any] | None = None

    def pages(self, what: str, library_pages: Iterator[list[Any]]) -> Iterator[Record]:
        """Every record of every page the library's paginator fetches, as Todoist sent it."""
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
            yield from pages.read(body["results"])
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
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise PayloadError(f"todoist: malformed JSON from {response.url.path}") from exc
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise PayloadError(f"todoist: {response.url.path} returned no 'results' list")
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
