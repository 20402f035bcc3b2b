"""Spotify via spotipy: recently played (incremental), the saved library, playlists, top items.

The adapter (:func:`_session`, :func:`_open`) gives spotipy a session that routes every request
to ``SPOTIFY_API_URL`` / ``SPOTIFY_ACCOUNTS_URL`` (and refuses any other host: the ``next``
links Spotify sends are followed only on the configured API host, so the bearer token goes
nowhere else), with timeouts, ``ELA_MAX_BODY_BYTES`` and a retry policy that lets a 429
surface with its Retry-After; it counts every HTTP request, and authenticates by refresh token
without ever falling back to spotipy's interactive prompt. The access token and its expiry are
kept in the TokenStore next to the refresh token and reused by later runs while more than
:data:`REUSE_MARGIN` seconds remain, so a run that has a token spends no call on the token
endpoint; a 401 to a stored token (revoked early) refreshes once and retries.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ela import endpoints, limits
from ela.connectors.base import (
    FetchContext,
    Paginator,
    Record,
    Service,
    http_error,
    in_order,
    parse_retry_after,
    read_response,
    require,
)
from ela.errors import IngestError, PayloadError, ReauthError, RetriableError
from ela.tokens import TokenStore

if TYPE_CHECKING:
    import requests
    import spotipy

PAGE_SIZE = 50  # Spotify's maximum page size for every endpoint used here.
# Offset pages in flight at once. Spotify's limit is a rolling 30 s window on the number of
# calls, which concurrency does not change; four overlaps the round trips without bursting.
PARALLEL_PAGES = 4
# Recently played keeps only the last 50 plays; one call with `after` sees all of them.
RECENTLY_PLAYED_MAX = 50
PROVIDER = "spotify"  # the TokenStore entry
# A stored access token is reused while more than this many seconds of it remain (spotipy itself
# refreshes under 60 s): a run that starts with it never needs the token endpoint.
REUSE_MARGIN = 120
SCOPES = (
    "user-read-recently-played",  # recently_played
    "user-library-read",  # saved_tracks, saved_albums
    "playlist-read-private",  # playlists
    "playlist-read-collaborative",  # playlists shared with the user
    "user-top-read",  # top_tracks, top_artists
    "user-follow-read",  # followed_artists
)
FOLLOW_SCOPE = "user-follow-read"
REAUTH_HINT = "run `ela auth spotify` (or set a new SPOTIFY_REFRESH_TOKEN)"
# Quick in-process retries for transient 5xx and refused connections; anything longer is the
# Celery task's retry (with backoff), so a worker never sleeps out a provider's outage here.
STATUS_RETRIES = 2
RETRY_BACKOFF = 0.5  # seconds, doubled per retry by urllib3
RETRY_STATUSES = (500, 502, 503, 504)  # not 429: it must reach the task with its Retry-After


# -- the adapter ----------------------------------------------------------------------------


def _hosts(environ: Mapping[str, str]) -> endpoints.Hosts:
    return endpoints.Hosts.of("spotify", environ, "SPOTIFY_API_URL", "SPOTIFY_ACCOUNTS_URL")


def _session(
    count: Callable[[], None],
    hosts: endpoints.Hosts,
    max_body: int,
    warn: Callable[[str], None] | None = None,
) -> requests.Session:
    """A requests session with the retry policy, counting every HTTP attempt into ``count``,
    sending each request only to ``hosts`` and reading no body past ``max_body`` bytes (a body
    that is not UTF-8 is said to ``warn``)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    class CountingRetry(Retry):
        """Counts the re-sends urllib3 makes inside one requests call (invisible to requests)."""

        def increment(self, *args: Any, **kwargs: Any) -> CountingRetry:
            retry = super().increment(*args, **kwargs)  # raises when no retry is left
            count()
            return retry

    class CountingAdapter(HTTPAdapter):
        def send(
            self,
            request: requests.PreparedRequest,
            stream: bool = False,
            timeout: Any = None,
            verify: bool | str = True,
            cert: Any = None,
            proxies: Mapping[str, str] | None = None,
        ) -> requests.Response:
            count()
            request.url = hosts.route(request.url or "")
            response = super().send(request, True, timeout, verify, cert, proxies)
            if not stream:
                read_response(response, max_body, "spotify", warn)
            return response

    retry = CountingRetry(
        total=STATUS_RETRIES,
        connect=STATUS_RETRIES,
        read=False,  # a read timeout surfaces at once as requests.ReadTimeout
        status=STATUS_RETRIES,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),  # POST: the token refresh, idempotent
        backoff_factor=RETRY_BACKOFF,
        respect_retry_after_header=False,  # never sleep out a 429 (Retry-After can be hours)
        raise_on_status=False,  # exhausted 5xx → its real status, not spotipy's fake 429
    )
    session = requests.Session()
    adapter = CountingAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@functools.cache  # one class per process, built on first use (spotipy loads lazily)
def _oauth_class() -> type[spotipy.SpotifyOAuth]:
    """SpotifyOAuth that never prompts (its token requests reach ``SPOTIFY_ACCOUNTS_URL``
    through the session's routing).

    spotipy starts its interactive flow (``input()``) when the cache is empty or the scopes
    differ; a worker must fail with a ReauthError instead of blocking on stdin. Refreshes hold
    the TokenStore lock and re-read the store, so two workers never spend the same rotating
    refresh token (and one adopts the access token the other just stored); the new access token,
    its expiry and the refresh token are persisted before the lock is released.
    """
    from spotipy.oauth2 import SpotifyOAuth

    class NoPromptOAuth(SpotifyOAuth):
        def __init__(
            self,
            *args: Any,
            store: TokenStore | None = None,
            from_store: str | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.store = store
            self.from_store = from_store  # the stored access token this run started with
            self.rejected: set[str] = set()  # access tokens the API answered 401 to
            self.renewed = False
            self._renewing = threading.Lock()  # offset pages may all get the 401 at once

        def get_auth_response(self, open_browser: bool | None = None) -> str:
            raise ReauthError(f"spotify: no usable refresh token; {REAUTH_HINT}")

        @staticmethod
        def _get_user_input(prompt: str) -> str:
            raise ReauthError(f"spotify: no usable refresh token; {REAUTH_HINT}")

        def refresh_access_token(self, refresh_token: str) -> dict[str, Any]:
            if self.store is None:
                return dict(super().refresh_access_token(refresh_token))
            with self.store.locked(PROVIDER):
                stored = self.store.read(PROVIDER) or {}
                adopted = _reusable(stored, self.rejected)
                if adopted is not None:  # another worker refreshed while we waited: use its
                    info = {**adopted, "refresh_token": stored["refresh_token"]}
                    info["scope"] = self.scope
                    self.cache_handler.save_token_to_cache(info)
                    return info
                current = stored.get("refresh_token") or refresh_token  # another worker's wins
                info = dict(super().refresh_access_token(current))
                self.store.write(PROVIDER, _stored(info))
                return info

        def renew(self, rejected: str) -> bool:
            """After a 401 to ``rejected``: refresh once if it is the stored access token (it
            may have been revoked before its expiry). True: retry the call; False: the 401
            stands (a token this run just obtained, or a second 401)."""
            with self._renewing:
                if not rejected or rejected != self.from_store:
                    return False
                if not self.renewed:
                    self.renewed = True
                    self.rejected.add(rejected)
                    cached = self.cache_handler.get_cached_token() or {}
                    self.refresh_access_token(cached.get("refresh_token") or "")
                return True

    return NoPromptOAuth


def _stored(token_info: Mapping[str, Any]) -> dict[str, Any]:
    """What the TokenStore keeps: the refresh token, and the access token with its expiry
    (epoch seconds) so the next runs reuse it instead of calling the token endpoint."""
    stored: dict[str, Any] = {
        "refresh_token": token_info["refresh_token"],
        "scope": " ".join(SCOPES),
        "updated_at": datetime.now(UTC).isoformat(),
    }
    if token_info.get("access_token") and isinstance(token_info.get("expires_at"), (int, float)):
        stored["access_token"] = token_info["access_token"]
        stored["expires_at"] = int(token_info["expires_at"])
    return stored


def _reusable(
    stored: Mapping[str, Any], rejected: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any] | None:
    """The stored access token as spotipy caches it, if more than :data:`REUSE_MARGIN` seconds
    of it remain and the API has not rejected it; else None."""
    token, expires_at = stored.get("access_token"), stored.get("expires_at")
    if not stored.get("refresh_token") or not isinstance(token, str) or not token:
        return None
    if not isinstance(expires_at, (int, float)) or expires_at - time.time() <= REUSE_MARGIN:
        return None
    if token in rejected:
        return None
    return {"access_token": token, "token_type": "Bearer", "expires_at": int(expires_at)}


@functools.cache
def _spotify_class() -> type[spotipy.Spotify]:
    """spotipy.Spotify that, after a 401, lets the auth manager refresh once and retries."""
    import spotipy
    from spotipy.exceptions import SpotifyException

    class RenewingSpotify(spotipy.Spotify):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._local = threading.local()  # the token each thread's request carried

        def _auth_headers(self) -> dict[str, str]:
            headers: dict[str, str] = super()._auth_headers()
            self._local.token = headers.get("Authorization", "").removeprefix("Bearer ")
            return headers

        def _internal_call(self, method: str, url: str, payload: Any, params: Any) -> Any:
            try:
                return super()._internal_call(method, url, payload, dict(params))
            except SpotifyException as exc:
                renew = getattr(self.auth_manager, "renew", None)
                if exc.http_status != 401 or renew is None:
                    raise
                if not renew(getattr(self._local, "token", "")):
                    raise
            return super()._internal_call(method, url, payload, dict(params))

    return RenewingSpotify


class SpotifyClient:
    """A spotipy client plus the paging every data type shares."""

    def __init__(self, sp: spotipy.Spotify, hosts: endpoints.Hosts, ctx: FetchContext) -> None:
        self.sp = sp
        self.hosts = hosts
        self.ctx = ctx

    def follow(self, url: str) -> Any:
        """GET a link the API sent (the session routes it, or refuses it)."""
        return self.sp._get(url)

    def pages(
        self,
        what: str,
        first: Callable[[int], Any],
        limit: int | None,
        under: str | None = None,
    ) -> Iterator[Record]:
        """Items of a paged endpoint, at most ``limit`` (None: all), in API order.

        The first page says how many items there are (``total``); the rest are asked for by
        offset, up to :data:`PARALLEL_PAGES` at a time, and yielded in order. Without a
        ``total`` and an ``offset`` (a cursor-paged endpoint), the ``next`` links are followed
        one by one until one is null, whatever the page's ``cursors`` still say.

        ``under`` names the key a cursor-paged endpoint wraps its paging object in
        (``/me/following`` answers ``{"artists": {"items", "next", "cursors", "total"}}``).

        Raises:
            PayloadError: a page is not JSON or not a paging object, an item is not an object,
                a page is not at the offset asked for, a ``next`` link names another host
                than the configured API's, or the pages loop (:class:`Paginator`).
        """
        size = min(PAGE_SIZE, limit) if limit else PAGE_SIZE
        pages = Paginator(f"spotify: {what}", self.ctx)
        page = _unwrap(first(size), under, what, 1)
        items = _items(page, what, 1)
        total = page.get("total")
        following = page.get("next")
        wanted = total if limit is None else min(limit, total or 0)
        if following and isinstance(total, int) and isinstance(page.get("offset"), int):
            yield from _objects(pages.read(items)[:wanted], what, 1)
            start = page["offset"] + len(items)
            yield from self._by_offset(what, pages, following, start, wanted)
        else:
            yield from self._by_next(what, pages, page, limit, under)

    def _by_offset(
        self, what: str, pages: Paginator, link: str, start: int, wanted: int
    ) -> Iterator[Record]:
        """Pages from offset ``start`` until ``wanted`` items, several requests in flight."""
        if start < wanted:
            link = self.hosts.route(link, f"{what} page {pages.number + 1}")
        split = urlsplit(link)
        query = dict(parse_qsl(split.query))
        size = int(query.get("limit", PAGE_SIZE))
        offsets = iter(range(start, wanted, size))

        def page_at(offset: int) -> list[Any]:
            """The page's items, checked in the thread that fetched it."""
            url = urlunsplit(split._replace(query=urlencode({**query, "offset": offset})))
            page = self.follow(url)
            number = offset // size + 1
            if isinstance(page, dict) and page.get("offset") not in (None, offset):
                raise PayloadError(
                    f"spotify: {what} page {number}: offset {page.get('offset')}, "
                    f"asked for {offset}"
                )
            return _items(page, what, number)

        for offset, items in in_order(page_at, offsets, PARALLEL_PAGES, "spotify-page"):
            pages.advance(offset)
            yield from _objects(pages.read(items)[: wanted - offset], what, pages.number)
            if not items:  # the library shrank while we read it: nothing further
                return

    def _by_next(
        self, what: str, pages: Paginator, page: Any, limit: int | None, under: str | None = None
    ) -> Iterator[Record]:
        """Follow ``next`` links one by one (an endpoint that does not say its ``total``, or
        a cursor-paged one). The ``total`` each page says is handed to the paginator, which
        warns when it changes while the list is read."""
        remaining = limit
        while remaining is None or remaining > 0:
            number = pages.number
            total = page.get("total")
            read = pages.read(_items(page, what, number), total)
            for item in _objects(read, what, number):
                yield item
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:  # and the items after it are not looked at
                        return
            pages.advance(page.get("next"))
            if not pages.has_more:
                return
            page = _unwrap(
                self.follow(self.hosts.route(pages.token, pages.name)), under, what, pages.number
            )


def _unwrap(page: Any, under: str | None, what: str, number: int) -> Any:
    """The paging object of a page: the page itself, or what it holds under ``under``."""
    if under is None or not isinstance(page, dict):
        return page  # _items says what is wrong with a page that is not an object
    inner = page.get(under)
    if not isinstance(inner, dict):
        raise PayloadError(f"spotify: {what} page {number}: no `{under}` paging object")
    return inner


def _objects(items: list[Any], what: str, number: int) -> Iterator[Record]:
    """A page's items, nulls (items the API cannot show) skipped, anything else refused."""
    for index, item in enumerate(items, 1):
        if item is None:
            continue
        if not isinstance(item, dict):
            raise PayloadError(f"spotify: {what} page {number}, item {index}: not an object")
        yield item


def _items(page: Any, what: str, number: int) -> list[Any]:
    # spotipy answers None for a body that is not JSON; say where it happened.
    if not isinstance(page, dict):
        raise PayloadError(f"spotify: {what} page {number}: not a JSON object")
    items = page.get("items")
    if not isinstance(items, list):
        raise PayloadError(f"spotify: {what} page {number}: no `items` list")
    return items


@contextmanager
def _open(ctx: FetchContext) -> Iterator[SpotifyClient]:
    from spotipy.cache_handler import MemoryCacheHandler

    # spotipy logs request headers (the bearer token, the client secret) at DEBUG.
    spotipy_log = logging.getLogger("spotipy")
    if spotipy_log.getEffectiveLevel() < logging.INFO:
        spotipy_log.setLevel(logging.INFO)
    client_id, client_secret, redirect_uri = require(
        ctx.environ,
        "SPOTIFY_CLIENT_ID",
        "SPOTIFY_CLIENT_SECRET",
        "SPOTIFY_REDIRECT_URI",
        fix="from the app at developer.spotify.com/dashboard",
    )
    store = TokenStore.from_env(ctx.environ)
    stored = store.read(PROVIDER) or {}
    refresh_token = stored.get("refresh_token") or ctx.environ.get("SPOTIFY_REFRESH_TOKEN")
    if not refresh_token:
        raise ReauthError(f"spotify: SPOTIFY_REFRESH_TOKEN not set and none stored; {REAUTH_HINT}")

    timeout = endpoints.http_timeout(ctx.environ)
    hosts = _hosts(ctx.environ)
    session = _session(ctx.count_call, hosts, limits.max_body_bytes(ctx.environ), ctx.warn)
    # The stored access token while it has more than REUSE_MARGIN left; otherwise an expired
    # entry with the refresh token: spotipy's first call refreshes it, never prompts.
    reusable = _reusable(stored) if stored.get("refresh_token") == refresh_token else None
    empty = {"access_token": "", "token_type": "Bearer", "expires_at": 0}
    cache = MemoryCacheHandler(
        {
            **(reusable or empty),
            "refresh_token": refresh_token,
            "scope": " ".join(sorted(SCOPES)),
        }
    )
    auth = _oauth_class()(
        client_id=client_id,
        client_secret=client_secret,
        redirect_uri=redirect_uri,
        scope=list(SCOPES),
        cache_handler=cache,
        requests_session=session,
        requests_timeout=timeout,
        open_browser=False,
        store=store,
        from_store=reusable["access_token"] if reusable else None,
    )
    sp = _spotify_class()(auth_manager=auth, requests_session=session, requests_timeout=timeout)
    try:
        yield SpotifyClient(sp, hosts, ctx)
    finally:
        session.close()


# -- the error map --------------------------------------------------------------------------


def _http_error(exc: BaseException) -> requests.HTTPError | None:
    """The HTTPError behind ``exc``: spotipy re-raises them as its own types (losing the status
    of token-endpoint failures, or failing on an unexpected error body) inside ``except``."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.HTTPError) and seen.response is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _classify(exc: BaseException) -> IngestError | None:
    import requests
    from spotipy.exceptions import SpotifyException, SpotifyOauthError

    status: int | None = None
    headers: Mapping[str, str] = {}
    http = _http_error(exc)
    where = urlsplit(http.response.url).path if http is not None else "the API"
    if isinstance(exc, SpotifyException):
        status, headers = exc.http_status, exc.headers or {}
    elif http is not None:
        status, headers = http.response.status_code, http.response.headers
    oauth_error = exc.error if isinstance(exc, SpotifyOauthError) else None

    if status == 429 or (status is not None and status >= 500):
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return http_error("spotify", status, where, retry_after=retry_after)
    if oauth_error == "invalid_grant":
        return ReauthError(
            "spotify: the refresh token was rejected (invalid_grant: expired or revoked); "
            + REAUTH_HINT
        )
    if oauth_error == "invalid_client":
        return ReauthError(
            "spotify: the token endpoint rejected SPOTIFY_CLIENT_ID / SPOTIFY_CLIENT_SECRET; "
            "copy them again from developer.spotify.com/dashboard"
        )
    if isinstance(exc, SpotifyOauthError):
        return ReauthError(
            f"spotify: authorization failed ({oauth_error or status}); {REAUTH_HINT}"
        )
    if status is not None and status >= 300:
        location = headers.get("Location")
        return http_error("spotify", status, where, reauth=REAUTH_HINT, location=location)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return RetriableError(f"spotify: {type(exc).__name__}")
    if isinstance(exc, ValueError) and status is None:  # e.g. a token response that is not JSON
        return PayloadError(f"spotify: malformed response: {type(exc).__name__}")
    return None


spotify: Service[SpotifyClient] = Service("spotify", open_client=_open, classify=_classify)


# -- data types -----------------------------------------------------------------------------


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _played_at_ms(item: Record, index: int) -> int:
    try:
        return _ms(datetime.fromisoformat(item["played_at"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(
            f"spotify: recently_played page 1, item {index}: no valid `played_at`"
        ) from exc


def play_key(item: Record) -> str:
    """What tells two plays apart: when, and which track (local files have no id)."""
    track = item.get("track")
    which = (track.get("id") or track.get("uri")) if isinstance(track, dict) else None
    return f"{item['played_at']} {which}"


@spotify.data_type(
    "recently_played",
    params=("limit", "follow_up_plays"),
    max_limit=50,
    incremental=True,
)
def recently_played(client: SpotifyClient, ctx: FetchContext) -> Iterator[Record]:
    """The plays of the last 50 not landed before, newest first as the API sends them.

    Spotify keeps only the last 50 plays, and a play listened to offline appears when the
    device syncs, among older plays: a cursor on the newest ``played_at`` would never see it.
    So every run reads all 50 (one call) and lands those whose ``played_at`` + track id is not
    among the plays landed before (the job's state); a late play lands if it is still among
    the last 50. On a first run (no state) ``limit`` says how many of the newest to land;
    older plays are before the job's start. ``since`` lands only plays from then on (also
    older than the job's start); ``until`` asks for plays before it.

    The cursor is the newest ``played_at`` landed, never later than
    :meth:`FetchContext.horizon`: a play "in 9999" lands once, with a warning. When all 50
    plays are newer than the cursor, plays between may have been lost: a warning, and
    ``possible_gap`` in the manifest.
    """
    first_run = ctx.cursor is None and not ctx.already_landed and ctx.since is None
    limit = min(ctx.limit or RECENTLY_PLAYED_MAX, RECENTLY_PLAYED_MAX)
    before = _ms(ctx.until) if ctx.until else None
    page = client.sp.current_user_recently_played(
        limit=limit if first_run else RECENTLY_PLAYED_MAX, before=before
    )
    items = _items(page, "recently_played", 1)
    plays: list[tuple[int, Record]] = []
    for index, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise PayloadError(f"spotify: recently_played page 1, item {index}: not an object")
        plays.append((_played_at_ms(item, index), item))
    if ctx.until:
        plays = [(ms, item) for ms, item in plays if ms < _ms(ctx.until)]
    if not plays:
        return
    # Plays older than what the job has ever looked at are before its start, not late.
    floor = _ms(ctx.since) if ctx.since else min(ctx.already_landed.values(), default=None)
    horizon = _ms(ctx.horizon())
    oldest = min(ms for ms, _ in plays)
    full = len(items) >= RECENTLY_PLAYED_MAX
    if full and ctx.cursor is not None and ctx.since is None and oldest > int(ctx.cursor):
        gap = {"after": _iso_ms(int(ctx.cursor)), "before": _iso_ms(oldest)}
        ctx.report["possible_gap"] = gap
        ctx.warn(
            f"recently_played: the API returned a full {RECENTLY_PLAYED_MAX} plays, all after "
            f"the newest landed before ({gap['after']}); plays between then and "
            f"{gap['before']} may be missing (more than 50 since the last run: schedule this "
            "job more often, or let follow-up runs catch up)"
        )
    landed: list[int] = []
    for ms, item in plays:
        key = play_key(item)
        if key in ctx.already_landed or (floor is not None and ms < floor):
            continue
        ctx.landed[key] = ms
        if not ctx.past_horizon(ms, horizon, f"recently_played: a play at {item['played_at']}"):
            landed.append(ms)
        yield item
    if full:
        # Every play older than the oldest of a full answer has 50 newer ones: it can never be
        # among the last 50 again, so its key need not be kept.
        ctx.landed_floor = oldest
    if landed:
        ctx.report["landed_span"] = {  # the listening pace, for follow-up runs
            "oldest": _iso_ms(min(landed)),
            "newest": _iso_ms(max(landed)),
            "previous": _iso_ms(int(ctx.cursor)) if ctx.cursor is not None else None,
        }
        if ctx.cursor is None or max(landed) > int(ctx.cursor):
            ctx.new_cursor = max(landed)


@spotify.data_type("saved_tracks", params=("limit",), max_limit=10_000)
def saved_tracks(client: SpotifyClient, ctx: FetchContext) -> Iterator[Record]:
    """The saved tracks library, newest first, up to ``limit`` (pages of 50)."""
    yield from client.pages(
        "saved_tracks", lambda n: client.sp.current_user_saved_tracks(limit=n), ctx.limit
    )


@spotify.data_type("saved_albums", params=("limit",), max_limit=10_000)
def saved_albums(client: SpotifyClient, ctx: FetchContext) -> Iterator[Record]:
    """The saved albums library, newest first, up to ``limit`` (pages of 50)."""
    yield from client.pages(
        "saved_albums", lambda n: client.sp.current_user_saved_albums(limit=n), ctx.limit
    )


@spotify.data_type("playlists", params=("limit",), max_limit=10_000)
def playlists(client: SpotifyClient, ctx: FetchContext) -> Iterator[Record]:
    """The playlists the user owns or follows, up to ``limit``."""
    yield from client.pages(
        "playlists", lambda n: client.sp.current_user_playlists(limit=n), ctx.limit
    )


# Top items: at most 50 per call, and Spotify computes only the top 50 per time range.
@spotify.data_type("top_tracks", params=("limit", "time_range"), max_limit=50)
def top_tracks(client: SpotifyClient, ctx: FetchContext) -> Iterator[Record]:
    """The user's top tracks for ``time_range``."""
    time_range = ctx.time_range or "medium_term"
    yield from client.pages(
        "top_tracks",
        lambda n: client.sp.current_user_top_tracks(limit=n, time_range=time_range),
        ctx.limit,
    )


@spotify.data_type("top_artists", params=("limit", "time_range"), max_limit=50)
def top_artists(client: SpotifyClient, ctx: FetchContext) -> Iterator[Record]:
    """The user's top artists for ``time_range``."""
    time_range = ctx.time_range or "medium_term"
    yield from client.pages(
        "top_artists",
        lambda n: client.sp.current_user_top_artists(limit=n, time_range=time_range),
        ctx.limit,
    )


@spotify.data_type("followed_artists", params=("limit",), max_limit=10_000)
def followed_artists(client: SpotifyClient, ctx: FetchContext) -> Iterator[Record]:
    """The artists the user follows, up to ``limit`` (cursor pages of 50).

    ``/me/following`` pages by cursor (``after``: the last artist id of the page before), its
    paging object under ``artists``; the last page's ``next`` is null even where
    ``cursors.after`` is still set, so the pages end where ``next`` does. Needs the scope
    ``user-follow-read``: an authorization made before it was asked for gets a 403, which is
    a re-authorization naming it.
    """
    from spotipy.exceptions import SpotifyException

    try:
        yield from client.pages(
            "followed_artists",
            lambda n: client.sp.current_user_followed_artists(limit=n),
            ctx.limit,
            under="artists",
        )
    except SpotifyException as exc:
        if exc.http_status != 403:
            raise
        raise ReauthError(
            f"spotify: followed_artists: HTTP 403 from /v1/me/following: the authorization "
            f"lacks the scope {FOLLOW_SCOPE}; run `ela auth spotify` again (it asks for "
            f"{FOLLOW_SCOPE}) and approve it"
        ) from exc


@spotify.data_type("user_profile")
def user_profile(client: SpotifyClient, ctx: FetchContext) -> Iterator[Record]:
    """The user's profile (one record, ``/me``), as Spotify sent it."""
    profile = client.sp.current_user()
    if not isinstance(profile, dict):
        raise PayloadError("spotify: user_profile: /v1/me is not a JSON object")
    yield profile


# -- `ela auth spotify` ---------------------------------------------------------------------


def authorize(
    environ: Mapping[str, str],
    store: TokenStore,
    ask: Callable[[str, bool], str],
    say: Callable[[str], None],
) -> None:
    """Interactive bootstrap: authorize the app in a browser, store the refresh token.

    Args:
        environ: SPOTIFY_CLIENT_ID / _SECRET / _REDIRECT_URI, and SPOTIFY_ACCOUNTS_URL if set.
        store: where the refresh token goes; connectors prefer it to SPOTIFY_REFRESH_TOKEN.
        ask: ``ask(prompt, secret)`` returns what the user typed.
        say: prints a line for the user.

    Raises:
        ReauthError: missing credentials, a refused authorization, a state mismatch, or a code
            the token endpoint would not exchange.
    """
    from spotipy.cache_handler import MemoryCacheHandler
    from spotipy.exceptions import SpotifyOauthError

    client_id, client_secret, redirect_uri = require(
        environ,
        "SPOTIFY_CLIENT_ID",
        "SPOTIFY_CLIENT_SECRET",
        "SPOTIFY_REDIRECT_URI",
        fix="from the app at developer.spotify.com/dashboard",
    )
    hosts = _hosts(environ)
    session = _session(lambda: None, hosts, limits.max_body_bytes(environ))  # no run to count
    cache = MemoryCacheHandler()
    auth = _oauth_class()(
        client_id=client_id,
        client_secret=client_secret,
        redirect_uri=redirect_uri,
        scope=list(SCOPES),
        cache_handler=cache,
        requests_session=session,
        requests_timeout=endpoints.http_timeout(environ),
        open_browser=False,
    )
    state = secrets.token_urlsafe(16)
    with session:
        say("Open this URL in a browser, approve access, then paste the URL you land on:")
        say(hosts.rewrite(auth.get_authorize_url(state=state)))
        code = _code_from(ask("Redirected URL (or just the code): ", False).strip(), state)
        try:
            auth.get_access_token(code=code, as_dict=False, check_cache=False)
        except SpotifyOauthError as exc:
            raise ReauthError(f"spotify: the code was not accepted: {exc.error}") from exc
        except Exception as exc:  # network trouble: the one error map words it
            raise spotify.classify(exc) from exc
    info = cache.get_cached_token() or {}
    if not info.get("refresh_token"):
        raise ReauthError("spotify: the token endpoint returned no refresh token")
    with store.locked(PROVIDER):
        store.write(PROVIDER, _stored(info))


def _code_from(answer: str, state: str) -> str:
    """The authorization code in what the user pasted: the redirected URL, or the bare code."""
    from spotipy.exceptions import SpotifyOauthError
    from spotipy.oauth2 import SpotifyOAuth

    if "://" not in answer and "=" not in answer and answer:
        return answer
    try:
        returned_state, code = SpotifyOAuth.parse_auth_response_url(answer)
    except SpotifyOauthError as exc:  # the user refused, or Spotify did
        raise ReauthError(f"spotify: authorization refused: {exc.error}") from exc
    if returned_state != state:
        raise ReauthError("spotify: the redirected URL is not from this authorization (state)")
    if not code:
        raise ReauthError("spotify: no authorization code in what was pasted")
    return str(code)
