"""Strava via stravalib: activities since a cursor, and the athlete profile.

stravalib is driven through its own ``Client`` methods, but four of its habits would hurt a
worker, so the client is built around them:

* it hard-codes ``https://www.strava.com`` (``ApiV3.server``, the token URL built from it): one
  transport adapter on the injected requests session routes URLs to ``STRAVA_API_URL`` (and
  refuses any other host), adds timeouts, reads no body past ``ELA_MAX_BODY_BYTES`` and counts
  every request into ``ctx.api_calls``;
* its ``DefaultRateLimiter`` sleeps up to 15 minutes inside a call: it is disabled, and an
  exhausted rate-limit window becomes a :class:`RetriableError` whose ``retry_after`` is the time
  until the window resets (:func:`rate_limit_reset`);
* it refreshes expired tokens by itself, without a lock, and keeps the rotated refresh token
  only on the client object: we refresh under ``TokenStore.locked("strava")`` instead and
  persist the new tokens at once (:func:`_tokens`);
* its ``get_activities`` and ``get_athlete`` parse records into pydantic models, which we would
  only discard (we land the provider's JSON unchanged), and which refuse real payloads (its own
  recorded athlete has ``agreed_to_terms: true``, a bool where the model wants a string): both
  are read through the client's protocol layer (``Client.protocol``, ``ApiV3``: the same
  requests, auth header and error handling below the model layer). Activities are checked
  lightly for what we rely on, an object with an integer ``id`` and a parseable
  ``start_date`` (:func:`_checked_start`); the athlete is shown to the model only to warn.

stravalib (pint, pydantic, arrow) and requests are imported only when a client is opened.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

from ela import endpoints, limits, ratelimit
from ela.connectors.base import (
    FetchContext,
    Paginator,
    Record,
    Service,
    http_error,
    in_order,
    parse_retry_after,
    read_ahead,
    read_response,
    require,
    timed_wait,
)
from ela.connectors.pacing import SLACK_S, BackfillProfile, EstimateFn, Quota
from ela.errors import FatalError, IngestError, PayloadError, ReauthError, RetriableError
from ela.tokens import TokenStore

if TYPE_CHECKING:
    import requests
    from stravalib.client import Client

PAGE_SIZE = 200  # Strava's maximum per_page for list endpoints.
# Days each activities run re-reads before its cursor, for activities uploaded after the run
# that started before it (the origin re-read 10 days on every run). A job's lookback_days wins.
LOOKBACK_DAYS = 10
# The longest lookback a job may set. Landed ids are kept this far back whatever the job's
# lookback, so lengthening it later re-lands nothing (a few hundred ids at most).
MAX_LOOKBACK_DAYS = 90
API_PREFIX = "/api/v3/"  # rate-limited, JSON records; /oauth/ is neither
# Strava hands out a new access token only when the current one has an hour or less left, and
# the longest run (the prd soft limit, 45 min) fits in that hour: refresh inside it, not sooner.
REFRESH_MARGIN_S = 3600
QUARTER_HOUR_S = 15 * 60  # Strava's short rate-limit window: resets at :00/:15/:30/:45 UTC.
DAY_S = 24 * 3600  # Strava's daily rate-limit window: resets at midnight UTC.
READ_BUDGET = (100, 1000)  # Strava's default read limits per app: per 15 minutes, per day.
PROVIDER = "strava"  # the TokenStore key
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
# Read everything including "only me" activities and the full profile: this is the person's own
# data lake, so private activities belong in it.
SCOPES = ["read", "profile:read_all", "activity:read_all"]
DEFAULT_REDIRECT_URI = "http://localhost/exchange_token"  # Strava allows localhost callbacks
REAUTH_FIX = "run `ela auth strava` (or put a new STRAVA_REFRESH_TOKEN in the environment)"

log = logging.getLogger("ela.connectors.strava")


# -- rate limits (pure) ------------------------------------------------------------------------


def rate_limit_reset(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until an exhausted Strava rate-limit window resets; None if none is exhausted.

    Strava reports two limits, each as a ``"15-minute,daily"`` pair: ``X-RateLimit-Limit`` /
    ``X-RateLimit-Usage`` for all requests and ``X-ReadRateLimit-Limit`` /
    ``X-ReadRateLimit-Usage`` for reads. A window is exhausted when its usage has reached its
    limit (the next request would be refused, and refused requests still count). The 15-minute
    windows reset at :00/:15/:30/:45 UTC, the daily ones at midnight UTC; when several are
    exhausted the latest reset wins.

    Args:
        headers: the response headers (any case).
        now: the current time, timezone-aware.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    seconds = now.timestamp()
    wait: float | None = None
    for prefix in ("x-ratelimit", "x-readratelimit"):
        limits = ratelimit.pair(lower.get(f"{prefix}-limit"))
        usage = ratelimit.pair(lower.get(f"{prefix}-usage"))
        if limits is None or usage is None:
            continue
        if usage[1] >= limits[1]:
            window = DAY_S - seconds % DAY_S
        elif usage[0] >= limits[0]:
            window = QUARTER_HOUR_S - seconds % QUARTER_HOUR_S
        else:
            continue
        wait = window if wait is None else max(wait, window)
    return wait


# -- the session adapter -----------------------------------------------------------------------


class _Transport:
    """The one transport adapter of the injected requests session.

    It is a duck-typed ``requests.adapters.BaseAdapter`` (``send`` and ``close``) wrapping a
    plain ``HTTPAdapter``, so this module need not import requests until a client is opened.
    """

    def __init__(self, ctx: FetchContext) -> None:
        from requests.adapters import HTTPAdapter

        self.inner = HTTPAdapter()
        self.hosts = endpoints.Hosts.of("strava", ctx.environ, "STRAVA_API_URL")
        self.ctx = ctx
        self.timeout = endpoints.http_timeout(ctx.environ)
        self.max_body = limits.max_body_bytes(ctx.environ)
        self.blocked_until: float | None = None  # wall clock: an exhausted window resets then
        # Every worker of every env spends the same application's quota: count it in Redis.
        self.shared = ratelimit.shared_windows(
            ctx.environ,
            "strava-reads",
            ctx.environ.get("STRAVA_CLIENT_ID", ""),
            list(
                zip(
                    (QUARTER_HOUR_S, DAY_S),
                    ratelimit.budget(ctx.environ, "ELA_STRAVA_READ_BUDGET", READ_BUDGET),
                    strict=True,
                )
            ),
        )

    def send(
        self, request: requests.PreparedRequest, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        url = request.url = self.hosts.route(request.url or "")
        api = urlsplit(url).path.startswith(API_PREFIX)
        if api and self.blocked_until is not None:
            # The last answer said the window is spent: another call would be refused and would
            # still count against the quota, so stop here and let the run be retried.
            wait = self.blocked_until - time.time()
            if wait > 0:
                raise RetriableError(
                    "strava: rate limit window exhausted; resets in "
                    f"{wait:.0f} s (X-RateLimit/X-ReadRateLimit usage)",
                    retry_after=wait,
                )
        if api and self.shared is not None:
            spent = self.shared.acquire()
            if spent is not None:
                raise RetriableError(
                    f"strava: the app's read budget is spent; resets in {spent:.0f} s "
                    "(shared by every worker, ELA_STRAVA_READ_BUDGET)",
                    retry_after=spent,
                )
        if kwargs.get("timeout") is None:  # stravalib sets none: never hang a worker
            kwargs["timeout"] = self.timeout
        self.ctx.count_call()
        response: requests.Response = self.inner.send(request, stream=True, **kwargs)
        if not stream:
            read_response(response, self.max_body, "strava", self.ctx.warn)
        if api:
            self._observe(response)
        return response

    def close(self) -> None:
        self.inner.close()

    def _observe(self, response: requests.Response) -> None:
        now = datetime.now(UTC)
        wait = rate_limit_reset(response.headers, now)
        self.blocked_until = now.timestamp() + wait if wait is not None else None
        usage = ratelimit.pair(response.headers.get("X-ReadRateLimit-Usage"))
        if self.shared is not None and usage is not None:
            self.shared.observe(usage, now)


@dataclasses.dataclass
class StravaClient:
    api: Client
    transport: _Transport


# -- tokens ------------------------------------------------------------------------------------


def _fingerprint(token: str | None) -> str | None:
    """A short digest naming which bootstrap token the store descends from (never the token)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else None


def _usable(stored: Mapping[str, Any] | None, environ: Mapping[str, str]) -> bool:
    """Stored tokens can be used as they are: present, not superseded, not about to expire."""
    if not stored or _superseded(stored, environ):
        return False
    try:
        return float(stored["expires_at"]) - time.time() > REFRESH_MARGIN_S
    except (KeyError, TypeError, ValueError):
        return False


def _superseded(stored: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    """True when STRAVA_REFRESH_TOKEN was changed since the store was bootstrapped from it: the
    person re-authorized and put the new token in the environment, which must win."""
    env_token = environ.get("STRAVA_REFRESH_TOKEN")
    return bool(env_token) and _fingerprint(env_token) != stored.get("bootstrap")


def _tokens(
    api: Client, store: TokenStore, environ: Mapping[str, str], client_id: int, secret: str
) -> Mapping[str, Any]:
    """Access and refresh tokens to use now, refreshing (and persisting) them if they expire.

    Strava rotates the refresh token on every refresh and the old one stops working, so the
    refresh happens under the store's lock, the store is re-read inside it (another worker may
    have refreshed while we waited), and the new tokens are written before anything else.
    """
    stored = store.read(PROVIDER)
    if _usable(stored, environ):
        return cast(Mapping[str, Any], stored)
    with store.locked(PROVIDER):
        stored = store.read(PROVIDER)
        if _usable(stored, environ):
            return cast(Mapping[str, Any], stored)
        if stored and stored.get("refresh_token") and not _superseded(stored, environ):
            refresh_token = str(stored["refresh_token"])
        else:
            (refresh_token,) = require(environ, "STRAVA_REFRESH_TOKEN", fix=REAUTH_FIX)
        info = api.refresh_access_token(
            client_id=client_id, client_secret=secret, refresh_token=refresh_token
        )
        tokens = _stored_form(info, environ)
        store.write(PROVIDER, tokens)
        log.info("strava: access token refreshed; rotated refresh token stored")
        return tokens


def _stored_form(info: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    return {
        "access_token": info["access_token"],
        "refresh_token": info["refresh_token"],
        "expires_at": int(info["expires_at"]),
        "bootstrap": _fingerprint(environ.get("STRAVA_REFRESH_TOKEN")),
        "updated_at": datetime.now(UTC).isoformat(),
    }


def _app_credentials(environ: Mapping[str, str]) -> tuple[int, str]:
    client_id, secret = require(
        environ,
        "STRAVA_CLIENT_ID",
        "STRAVA_CLIENT_SECRET",
        fix="copy them from https://www.strava.com/settings/api",
    )
    try:
        return int(client_id), secret
    except ValueError:
        raise ReauthError(
            "STRAVA_CLIENT_ID must be the numeric client id from "
            "https://www.strava.com/settings/api"
        ) from None


# -- opening a client --------------------------------------------------------------------------


def _quiet_stravalib(record: logging.LogRecord) -> bool:
    """Drop stravalib's root-logger advice to put credentials in os.environ: it wants them to
    refresh on its own, which we deliberately leave to :func:`_tokens`."""
    return not record.pathname.endswith(os.path.join("stravalib", "protocol.py"))


@contextmanager
def _stravalib_client(ctx: FetchContext) -> Iterator[StravaClient]:
    """A stravalib Client on our session, its own rate limiter and auto-refresh disabled."""
    import requests
    from stravalib.client import Client

    transport = _Transport(ctx)
    session = requests.Session()
    for prefix in ("https://", "http://"):  # every request, whatever stravalib builds
        session.mount(prefix, cast(requests.adapters.BaseAdapter, transport))
    root = logging.getLogger()
    root.addFilter(_quiet_stravalib)
    try:
        api = Client(rate_limit_requests=False, requests_session=session)
    finally:
        root.removeFilter(_quiet_stravalib)
    # stravalib picks these up from os.environ to refresh expired tokens by itself, outside our
    # lock, and would lose the rotated refresh token: without them it never tries.
    api.protocol.client_id = None
    api.protocol.client_secret = None
    with session:
        yield StravaClient(api, transport)


@contextmanager
def _open(ctx: FetchContext) -> Iterator[StravaClient]:
    client_id, secret = _app_credentials(ctx.environ)
    store = TokenStore.from_env(ctx.environ)
    with _stravalib_client(ctx) as client:
        tokens = _tokens(client.api, store, ctx.environ, client_id, secret)
        client.api.access_token = str(tokens["access_token"])
        client.api.refresh_token = str(tokens["refresh_token"])
        client.api.token_expires = int(tokens["expires_at"])
        try:
            yield client
        except Exception as exc:
            response = getattr(exc, "response", None)
            if getattr(response, "status_code", None) == 401:
                _forget_access_token(store, str(tokens["access_token"]))
            raise


def _forget_access_token(store: TokenStore, access_token: str) -> None:
    """Strava refused an access token we thought valid (revoked, or its clock disagrees with
    ours): mark it expired so the next run refreshes instead of failing the same way for hours.
    If the refresh token was revoked too, that refresh fails with the same re-auth message."""
    with store.locked(PROVIDER):
        stored = store.read(PROVIDER)
        if stored and stored.get("access_token") == access_token:  # not already replaced
            store.write(PROVIDER, {**stored, "expires_at": 0})


# -- the error map -----------------------------------------------------------------------------


def _classify(exc: BaseException) -> IngestError | None:
    import requests
    from pydantic import ValidationError

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return _classify_status(exc, exc.response)
    if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
        return RetriableError(f"strava: {type(exc).__name__}: {exc}")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return RetriableError(f"strava: connection dropped mid-response: {exc}")
    if isinstance(exc, ValidationError):
        return PayloadError(f"strava: a record failed stravalib's validation: {exc}")
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return PayloadError(f"strava: unexpected payload: {type(exc).__name__}: {exc}")
    return None


def _classify_status(exc: requests.HTTPError, response: requests.Response) -> IngestError:
    from stravalib.exc import ApplicationInactive

    status = response.status_code
    path = urlsplit(response.url).path
    said = str(exc)  # stravalib's message: status, reason, Strava's errors; never a token
    if path.endswith("/oauth/token") and status in (400, 401, 403):
        return ReauthError(
            f"strava: the refresh token was refused ({said}): it is invalid or was revoked; "
            + REAUTH_FIX
        )
    if isinstance(exc, ApplicationInactive):
        return FatalError(f"strava: {said}")
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429:
        reset = rate_limit_reset(response.headers, datetime.now(UTC))
        waits = [w for w in (reset, retry_after) if w is not None]
        # A 429 without usable headers is most likely the 15-minute window.
        retry_after = max(waits) if waits else _seconds_to_quarter_hour()
    return http_error(
        "strava",
        status,
        path,
        retry_after=retry_after,
        reauth=f"it needs the {','.join(SCOPES)} scopes; {REAUTH_FIX}",
        location=response.headers.get("Location"),
    )


def _seconds_to_quarter_hour() -> float:
    return QUARTER_HOUR_S - time.time() % QUARTER_HOUR_S


strava: Service[StravaClient] = Service(
    "strava",
    open_client=_open,
    classify=_classify,
)


# -- data types --------------------------------------------------------------------------------


# Backfill: one list page holds 200 activities and a month of even a very active athlete is well
# under that, so a 30-day chunk costs one read. Shorter chunks would spend more reads for the same
# data (ten years in 30-day chunks is ~122 reads, a bit more than one 15-minute window), longer
# ones would make a failed chunk costlier and objects bigger.
CHUNK_DAYS = 30
# One chunk's item limit. The job's own limit (20 to 1000) paces scheduled runs; a chunk must land
# its whole window, and nobody records 10,000 activities in a month, so this only guards against a
# runaway window (a chunk that reaches it fails loudly).
CHUNK_LIMIT = 10_000


def read_quotas(short: int = READ_BUDGET[0], daily: int = READ_BUDGET[1]) -> tuple[Quota, ...]:
    """Strava's read limits, by default its default ones (100 per 15 minutes, 1,000 per day)."""
    return (
        Quota.shared("Strava 15-minute", QUARTER_HOUR_S, short),
        Quota.shared("Strava daily", DAY_S, daily),
    )


def _chunk_calls(days: int, most_records: int) -> int:
    # stravalib stops at the first page shorter than per_page, so n activities cost n//200 + 1
    # reads; the token refresh goes to /oauth/, which Strava does not rate-limit.
    return most_records // PAGE_SIZE + 1


def _next_quarter_hour(now: float, attempt: int) -> float:
    # A 429 that names no reset (or one reported by a worker, whose result does not carry
    # retry_after) is most likely the 15-minute window.
    return QUARTER_HOUR_S - now % QUARTER_HOUR_S + SLACK_S


@strava.data_type(
    "activities",
    params=("limit", "lookback_days"),
    incremental=True,
    backfill=BackfillProfile(
        chunk_days=CHUNK_DAYS,
        max_chunk_days=366,
        until_exclusive=True,
        estimate=_chunk_calls,
        fallback_wait=_next_quarter_hour,
        quotas=read_quotas(),
        limit=CHUNK_LIMIT,
    ),
)
def activities(client: StravaClient, ctx: FetchContext) -> Iterator[Record]:
    """Activities since the cursor, oldest first, up to ``limit``, re-reading a lookback.

    Strava's ``after`` filters on start time, so an activity uploaded after a run but started
    before its cursor (a watch synced the next morning, an entry made by hand) would never be
    seen: each run re-reads ``lookback_days`` (default :data:`LOOKBACK_DAYS`) before the cursor
    and lands only the activities whose id is not among those landed before (the job's state).
    A run with nothing new is still one call: the lookback fits in the same page.

    The request always carries ``after`` (epoch 0 on a first run): Strava then answers oldest
    first, so a ``limit`` lands the oldest unlanded activities and the next run continues from
    the newest of them, instead of landing the newest and skipping what lies in between.
    ``ctx.since`` replaces the cursor as the lower bound (inclusive) and ``ctx.until`` sets
    ``before`` (exclusive). The cursor (``start_date`` epoch seconds of the newest activity
    landed, never later than :meth:`FetchContext.horizon`) moves only when the landed range
    joins the committed one, so an explicit window that starts after the cursor never makes the
    next run skip the gap before it.

    Pages come from stravalib's protocol layer, the way its ``get_activities`` pages them
    (``page``/``per_page``, stopping at a short page or at ``limit``) but without parsing each
    record into a pydantic model that would be discarded: records are landed as Strava sent
    them, after :func:`_checked_start`. The next page is asked for while this one is spooled.
    Without a ``limit``, a window of many pages is read from both ends at once
    (:func:`_from_both_ends`): the object then holds the newest end's pages newest first.
    """
    import requests

    cursor = _cursor_epoch(ctx.cursor)
    lookback = int(timedelta(days=ctx.lookback_days or LOOKBACK_DAYS).total_seconds())
    if ctx.since is not None:
        # Strava's `after` is exclusive; one second earlier makes `since` inclusive.
        after = ctx.since - timedelta(seconds=1)
        joins = cursor is not None and ctx.since.timestamp() <= cursor
    else:
        after = datetime.fromtimestamp(max(0, cursor - lookback) if cursor else 0, UTC)
        joins = True
    before = _epoch_of(ctx.until) if ctx.until is not None else None
    horizon = _epoch_of(ctx.horizon())
    per_page = min(PAGE_SIZE, ctx.limit or PAGE_SIZE)  # no larger page than needed
    newest: int | None = None
    landed = 0
    since = _epoch_of(after)
    what = f"strava: {API_PREFIX}athlete/activities"

    def get(oldest_first: bool, pages: Paginator) -> Any:
        """One page of the window from one end; runs in a paging thread."""
        try:
            return client.api.protocol.get(
                "/athlete/activities",
                before=before,
                after=since if oldest_first else None,  # no `after`: Strava answers newest first
                page=pages.token,
                per_page=per_page,
            )
        except requests.exceptions.JSONDecodeError as exc:
            raise PayloadError(f"{pages.name}: malformed JSON") from exc

    def one_end(settle: Callable[[], None]) -> Iterator[tuple[str, Any]]:
        """Each page (its name, its body) in turn, oldest first, the next asked for the moment
        this one shows there is one: a full page is never the last. With a ``limit``, which
        lands the oldest unlanded activities, so the pages must come in order."""
        pages = Paginator(what, token=1)  # ctx.page follows the page being read, below
        fetched = 0
        while pages.has_more:
            body = get(True, pages)
            if not isinstance(body, list):
                yield pages.name, body  # refused where it is read, naming its records
                return
            yield pages.name, pages.read(body)  # a repeated page goes no further
            fetched += len(body)
            pages.advance(pages.token + 1 if len(body) >= per_page else None)
            if pages.has_more and ctx.limit and fetched >= ctx.limit:
                settle()  # records already landed do not count: is the limit reached?
                if landed >= ctx.limit:
                    return

    def both_ends(settle: Callable[[], None]) -> Iterator[tuple[str, Any]]:
        top = before if before is not None else _epoch_of(ctx.now)
        return _from_both_ends(get, Paginator(what, token=1), per_page, top)

    # Page N+1 is asked for as soon as page N arrives full, and travels while page N is checked
    # and spooled: the call a sequential loop makes next anyway. Without a limit the window is
    # also read from its newest end while the gap between the ends holds two pages or more
    # (:func:`_from_both_ends`); the calls still go through the transport's budget and
    # rate-limit checks, and a page that repeats an earlier one is refused.
    for name, body in read_ahead(one_end if ctx.limit else both_ends, "strava-pages"):
        if not isinstance(body, list):
            raise PayloadError(f"{name} is not a list (records from #{landed + 1})")
        ctx.page = name
        for raw in body:
            if ctx.limit and landed >= ctx.limit:
                break
            started = _checked_start(raw, landed + 1)
            key = str(raw["id"])
            if key in ctx.landed or (ctx.since is None and key in ctx.already_landed):
                continue  # read from both ends, or re-read in the lookback and landed before
            landed += 1
            ctx.landed[key] = started
            record = f"activities: activity {key}, started {raw['start_date']},"
            if not ctx.past_horizon(started, horizon, record):
                newest = started if newest is None else max(newest, started)
            yield raw
        if ctx.limit and landed >= ctx.limit:
            break
    if joins and newest is not None and (cursor is None or newest > cursor):
        ctx.new_cursor = newest
    committed = ctx.new_cursor if ctx.new_cursor is not None else cursor
    if committed is not None:  # no later run re-reads further back
        ctx.landed_floor = committed - MAX_LOOKBACK_DAYS * 86400


@strava.data_type("athlete")
def athlete(client: StravaClient, ctx: FetchContext) -> Iterator[Record]:
    """The authenticated athlete's profile (one record), as Strava sent it.

    The request ``Client.get_athlete`` makes, without its model round trip: stravalib's
    ``DetailedAthlete`` only says, as a warning, where the profile differs from what it expects.
    """
    import requests
    from pydantic import ValidationError
    from stravalib.model import DetailedAthlete

    try:
        raw = client.api.protocol.get("/athlete")
    except requests.exceptions.JSONDecodeError as exc:
        raise PayloadError(f"strava: malformed JSON in {API_PREFIX}athlete (record #1)") from exc
    if not isinstance(raw, dict):
        raise PayloadError("strava: the athlete profile (record #1) is not an object")
    try:
        DetailedAthlete.model_validate(raw)
    except ValidationError as exc:
        fields = ", ".join(
            f"{'.'.join(map(str, e['loc']))} ({e['type']})" for e in exc.errors()[:5]
        )
        ctx.warn(
            f"strava: athlete: stravalib's DetailedAthlete model refuses {fields}; the "
            "profile lands as Strava sent it"
        )
    yield raw


# -- what hangs off each activity: laps and streams --------------------------------------------

# Per-activity calls in flight at once. Each is one read of the same quota however many fly
# together; this only shortens a catch-up, which the read budget stops cleanly anyway.
PARALLEL_ACTIVITIES = 4
# A laps or streams backfill chunk lists its window's activities (a read per 200) and makes one
# read per activity. 30 days is the activities chunk too; a very active athlete's month (two a
# day: 61 reads) still fits in one 15-minute window's budget (90 of 100), so a chunk never needs
# more than one window. A longer chunk could not start in any window.
PER_ACTIVITY_CHUNK_DAYS = 30


def _per_activity_calls(days: int, most_records: int) -> int:
    # The window's activity pages, plus one read per activity: at most one a day is the guess
    # before a chunk has run; the pacer counts what each chunk really spent.
    return max(days, most_records) // PAGE_SIZE + 1 + max(days, most_records)


def _laps_calls(days: int, most_records: int) -> int:
    # Laps are several records per activity: records say nothing of activities, the days do.
    return days // PAGE_SIZE + 1 + days


def _per_activity_backfill(estimate: EstimateFn) -> BackfillProfile:
    """Laps' and streams' backfill: chunks that fit one 15-minute window, paced to Strava's."""
    return BackfillProfile(
        chunk_days=PER_ACTIVITY_CHUNK_DAYS,
        max_chunk_days=PER_ACTIVITY_CHUNK_DAYS,
        until_exclusive=True,
        estimate=estimate,
        fallback_wait=_next_quarter_hour,
        quotas=read_quotas(),
    )


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """One activity's call: its body, or what it raised, or None if it was never made."""

    body: Any = None
    error: BaseException | None = None
    skipped: bool = False


def _work_list(client: StravaClient, ctx: FetchContext, what: str) -> list[tuple[int, int]]:
    """(start epoch, activity id) of every activity this run may do, oldest first.

    Scheduled runs: the activities landed by the config's activities jobs (their state) that
    this job has not done (its own state). An explicit window (``ela run --since``, a backfill
    chunk): the window's activities as Strava lists them, a read per 200, less those done.
    """
    if ctx.since is None:
        if not ctx.upstream_jobs:
            ctx.warn(
                f"strava: {what} follows the activities a strava/activities job lands, and this "
                "config has none: nothing to do (add one, or use --since for a window)"
            )
        return sorted(
            (int(start), int(key))
            for key, start in ctx.upstream.items()
            if key not in ctx.already_landed
        )
    after = _epoch_of(ctx.since - SECOND)  # Strava's `after` is exclusive
    before = _epoch_of(ctx.until) if ctx.until is not None else None
    pages = Paginator(f"strava: {API_PREFIX}athlete/activities", token=1)
    found: list[tuple[int, int]] = []
    while pages.has_more:
        body = client.api.protocol.get(
            "/athlete/activities", before=before, after=after, page=pages.token, per_page=PAGE_SIZE
        )
        if not isinstance(body, list):
            raise PayloadError(f"{pages.name} is not a list")
        for raw in pages.read(body):
            start = _checked_start(raw, len(found) + 1)
            if str(raw["id"]) not in ctx.already_landed:
                found.append((start, int(raw["id"])))
        pages.advance(pages.token + 1 if len(body) >= PAGE_SIZE else None)
    return sorted(found)


def _per_activity(
    client: StravaClient,
    ctx: FetchContext,
    what: str,
    fetch: Callable[[int], Any],
    land: Callable[[int, Any], Iterator[Record]],
) -> Iterator[Record]:
    """For each activity of the work list (:func:`_work_list`), up to ``limit``: one call,
    ``fetch(id)``, and the records ``land(id, body)`` makes of its answer, in activity order.

    Each activity done (landed, or answered 404: a manual entry has no streams; an activity
    deleted since it landed has neither) goes into this job's ``landed`` state, so it costs
    one call per type, once. When the read budget or a rate-limit window runs out (the
    transport refuses the call, or Strava answers 429), a scheduled run stops there: what it
    got is committed and the rest is the next run's (``pending_activities`` in the manifest).
    An explicit window lands whole or not at all (the retriable error: a backfill runs the
    chunk again once the window resets). Other errors fail the run, as anywhere.
    """
    import requests

    work = _work_list(client, ctx, what)
    if ctx.limit:
        work = work[: ctx.limit]
    starts = dict((ident, start) for start, ident in work)
    stop = threading.Event()

    def call(ident: int) -> _Outcome:
        if stop.is_set():
            return _Outcome(skipped=True)
        try:
            return _Outcome(body=fetch(ident))
        except Exception as exc:  # judged in order, below
            return _Outcome(error=exc)

    refused: IngestError | None = None
    missing: list[int] = []
    done = 0
    for ident, outcome in in_order(call, list(starts), PARALLEL_ACTIVITIES, f"strava-{what}"):
        if outcome.skipped:
            continue
        if outcome.error is not None:
            exc = outcome.error
            response = getattr(exc, "response", None)
            if isinstance(exc, requests.HTTPError) and getattr(response, "status_code", 0) == 404:
                missing.append(ident)
            else:
                error = strava.classify(exc)
                if not isinstance(error, RetriableError) or ctx.since is not None:
                    raise error from exc
                refused = refused or error
                stop.set()
                continue
        else:
            ctx.page = f"strava: {API_PREFIX}activities/{ident}/{what}"
            yield from land(ident, outcome.body)
        ctx.landed[str(ident)] = starts[ident]
        done += 1
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        ctx.warn(
            f"strava: {what}: {len(missing)} activities have none (404: a manual entry has no "
            f"streams; an activity deleted since it landed has nothing): {shown}"
        )
    if refused is not None:
        if done == 0:
            raise refused  # nothing to commit: retried like any run the budget refuses
        pending = len(work) - done
        ctx.report["pending_activities"] = pending
        ctx.warn(
            f"strava: {what}: the read budget ran out after {done} activities ({refused}); the "
            f"other {pending} are the next run's"
        )
    if ctx.since is None and ctx.upstream:
        # Ids the activities jobs no longer keep can never be asked for again: forget them too.
        ctx.landed_floor = min(ctx.upstream.values())


@strava.data_type(
    "laps",
    params=("limit",),
    keeps_state=True,
    follows="activities",
    backfill=_per_activity_backfill(_laps_calls),
)
def laps(client: StravaClient, ctx: FetchContext) -> Iterator[Record]:
    """The laps of each activity landed since this job last ran, one record per lap.

    The request ``Client.get_activity_laps`` makes (``GET /activities/{id}/laps``, with its
    ``page``/``per_page``), read below stravalib's ``Lap`` model, as Strava sent it: each lap
    names its activity (``activity.id``). An activity recorded without laps has one, the whole
    activity; a manual entry has none. See :func:`_per_activity` for which activities, and
    what the read budget does.
    """

    def fetch(ident: int) -> list[Any]:
        found: list[Any] = []
        pages = Paginator(f"strava: {API_PREFIX}activities/{ident}/laps", token=1)
        while pages.has_more:  # stravalib's BatchedResultsIterator: until a short page
            body = client.api.protocol.get(
                "/activities/{id}/laps", id=ident, page=pages.token, per_page=PAGE_SIZE
            )
            if not isinstance(body, list):
                raise PayloadError(f"{pages.name} is not a list")
            found.extend(pages.read(body))
            pages.advance(pages.token + 1 if len(body) >= PAGE_SIZE else None)
        return found

    def land(ident: int, body: list[Any]) -> Iterator[Record]:
        for position, lap in enumerate(body, 1):
            if not isinstance(lap, dict):
                raise PayloadError(f"strava: lap {position} of activity {ident} is not an object")
            yield lap

    yield from _per_activity(client, ctx, "laps", fetch, land)


def stream_keys() -> list[str]:
    """Every stream type, as stravalib asks for them when none are named (its own list)."""
    from stravalib.strava_model import StreamType

    return list(StreamType.model_json_schema()["enum"])


@strava.data_type(
    "streams",
    params=("limit",),
    keeps_state=True,
    follows="activities",
    backfill=_per_activity_backfill(_per_activity_calls),
)
def streams(client: StravaClient, ctx: FetchContext) -> Iterator[Record]:
    """The streams of each activity landed since this job last ran: one record per activity,
    ``{"activity_id": id, "streams": {...}}``.

    The request ``Client.get_activity_streams(id)`` makes with no types named (every type
    stravalib knows, ``key_by_type=true``), read below its ``Stream`` model. ``streams`` is
    Strava's answer as sent, keyed by type, holding only the types the activity has (no
    ``heartrate`` without a strap, no ``latlng`` indoors); the answer does not say which
    activity it belongs to, hence the wrapper. A manual entry has no streams (404): nothing
    lands for it, and it is done. Downstream, ``latlng`` rows become ``{"lat", "lng"}``
    objects (:mod:`ela.downstream`).
    """
    keys = ",".join(stream_keys())

    def fetch(ident: int) -> Any:
        return client.api.protocol.get(
            "/activities/{id}/streams", id=ident, keys=keys, key_by_type=True
        )

    def land(ident: int, body: Any) -> Iterator[Record]:
        if not isinstance(body, dict):
            raise PayloadError(
                f"strava: the streams of activity {ident} are not an object keyed by type"
            )
        if body:  # {}: nothing recorded; the activity is done all the same
            yield {"activity_id": ident, "streams": body}

    yield from _per_activity(client, ctx, "streams", fetch, land)


# -- snapshots: clubs and gear -----------------------------------------------------------------


@strava.data_type("clubs")
def clubs(client: StravaClient, ctx: FetchContext) -> Iterator[Record]:
    """The athlete's clubs, as Strava lists them (a snapshot).

    The requests ``Client.get_athlete_clubs`` makes (``GET /athlete/clubs``, ``page`` and
    ``per_page`` until a short page), read below its ``SummaryClub`` model. A club the
    athlete asked to join and is not yet admitted to is listed, ``membership: "pending"``.
    """
    pages = Paginator(f"strava: {API_PREFIX}athlete/clubs", ctx, token=1)
    while pages.has_more:
        body = client.api.protocol.get("/athlete/clubs", page=pages.token, per_page=PAGE_SIZE)
        if not isinstance(body, list):
            raise PayloadError(f"{pages.name} is not a list")
        yield from pages.read(body)
        pages.advance(pages.token + 1 if len(body) >= PAGE_SIZE else None)


@strava.data_type("gear")
def gear(client: StravaClient, ctx: FetchContext) -> Iterator[Record]:
    """Each of the athlete's bikes and shoes in detail (a snapshot): ``GET /athlete`` for
    their ids (``bikes``/``shoes``), then ``Client.get_gear``'s request, ``GET /gear/{id}``,
    for each, read below its ``DetailedGear`` model. A gear id Strava no longer knows (404:
    deleted between the two reads) is skipped with a warning."""
    import requests

    athlete = client.api.protocol.get("/athlete")
    if not isinstance(athlete, dict):
        raise PayloadError("strava: the athlete profile is not an object (reading gear ids)")
    ids: list[str] = []
    for kind in ("bikes", "shoes"):
        for item in athlete.get(kind) or []:
            if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
                ids.append(item["id"])
    for ident in dict.fromkeys(ids):
        ctx.page = f"strava: {API_PREFIX}gear/{ident}"
        try:
            body = client.api.protocol.get("/gear/{id}", id=ident)
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                ctx.warn(f"strava: gear {ident} is listed on the athlete but not found (404)")
                continue
            raise
        if not isinstance(body, dict):
            raise PayloadError(f"strava: gear {ident} is not an object")
        yield body


@dataclasses.dataclass
class _End:
    """One end of the activities window, read a page at a time towards the other end."""

    pages: Paginator
    oldest_first: bool
    ids: set[int] = dataclasses.field(default_factory=set)  # of every record it read
    edge: int | None = None  # start_date epoch of the last record it read
    spacing: float = 1.0  # seconds between starts on its last full page
    through: bool = False  # a short page, or the ends met: nothing is left to read

    def took(self, body: list[Any], other: _End, per_page: int) -> None:
        """Take in a page this end read (and handed over): move its edge, or end the window."""
        if len(body) < per_page:
            self.through = True
            return
        ids = {r["id"] for r in body if isinstance(r, dict) and isinstance(r.get("id"), int)}
        met = not ids.isdisjoint(other.ids)
        self.ids |= ids
        first, last = (_checked_start(r, 0) for r in (body[0], body[-1]))
        self.edge, self.spacing = last, max(abs(last - first) / (len(body) - 1), 1.0)
        if met:  # and the newest end's last start is not after the oldest end's
            newest, oldest = (other, self) if self.oldest_first else (self, other)
            assert newest.edge is not None and oldest.edge is not None  # both have read
            self.through = newest.edge <= oldest.edge
        self.pages.advance(self.pages.token + 1)


def _from_both_ends(
    get: Callable[[bool, Paginator], Any], pages: Paginator, per_page: int, top: int
) -> Iterator[tuple[str, Any]]:
    """The pages (name, body) of an activities window, read from both of its ends at once.

    Strava numbers its pages and says no total, so a page is known to exist only when the one
    before it came back full: read from one end, a window of n activities takes n // 200 + 1
    calls one after another. This reads it from the oldest end (``after``: oldest first) and,
    while the gap between the two ends should hold two pages or more, from the newest end too
    (no ``after``: newest first), one call in flight per end. That is, if the first call
    waited for its answer longer than the interpreter's thread switch interval (5 ms): a
    provider that answers sooner is read from one end, in this thread, since calls made by
    other threads would only compete with the reader for the interpreter (5-15% slower,
    measured). The run is complete when an end comes back short (it read through to the
    other), or when the ends meet: they share an activity, and the newest end's last start
    is not after the oldest end's. Activities that start in the same second as the one they
    share are as safe as at any page boundary of paging by number: Strava lists them in one
    order, and the newest end in its reverse.

    The gap is estimated from the start times at the ends and the sparser of the two ends' last
    pages. A second call goes out only while that estimate is two pages or more: it is wasted
    (one call more than reading from one end) only if the gap holds less than one page, less
    than half as dense as the pages around it. Before the newest end has read anything its
    edge is only bounded, by ``top`` (the window's ``before``, or now), and the estimate is a
    page smaller: the newest end's first call is wasted only if the athlete recorded
    much less for a long time before ``top``. At most one call is wasted, since the run ends
    with the page that makes the ends meet. Overlapping pages are yielded whole: the reader
    skips activities it has already landed in this run.

    Args:
        get: ``get(oldest_first, pages)`` calls for page ``pages.token`` from that end.
        pages: the oldest end's paginator, which names the endpoint in messages.
        per_page: the page size asked for; a shorter page is the last.
        top: epoch seconds the window ends before.
    """
    oldest = _End(pages, True)
    newest = _End(Paginator(f"{pages.what}, newest first", token=1), False)

    def gap() -> float:
        """The activities the gap between the two ends should hold."""
        assert oldest.edge is not None  # the oldest end reads first
        if newest.edge is None:  # `top` is only a bound: the athlete may have paused since
            return (top - oldest.edge) / oldest.spacing - per_page
        return (newest.edge - oldest.edge) / max(oldest.spacing, newest.spacing)

    # The first page in this thread, while the reader has nothing else to do: how long the call
    # waits for its answer is the provider's, not time spent waiting for the interpreter.
    body, both = timed_wait(functools.partial(get, True), oldest.pages)
    while True:
        if not isinstance(body, list):
            yield oldest.pages.name, body  # refused where it is read, naming its records
            return
        yield oldest.pages.name, oldest.pages.read(body)  # a repeated page goes no further
        oldest.took(body, newest, per_page)
        if oldest.through:
            return
        if both:
            break
        body = get(True, oldest.pages)

    flight: dict[Future[Any], _End] = {}
    with ThreadPoolExecutor(2, thread_name_prefix="strava-ends") as pool:
        while True:
            for end in (oldest, newest):
                if end not in flight.values() and (not flight or gap() >= 2 * per_page):
                    flight[pool.submit(get, end.oldest_first, end.pages)] = end
            done, _ = wait(flight, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: not flight[f].oldest_first):
                end = flight.pop(future)
                body = future.result()
                if not isinstance(body, list):
                    yield end.pages.name, body
                    return
                yield end.pages.name, end.pages.read(body)
                end.took(body, newest if end.oldest_first else oldest, per_page)
            if oldest.through or newest.through:
                return  # a call still in flight is waited for by the pool, and dropped


def _cursor_epoch(cursor: Any) -> int | None:
    """The committed cursor as epoch seconds (it is stored as a JSON number)."""
    if cursor is None:
        return None
    try:
        return int(cursor)
    except (TypeError, ValueError):
        raise FatalError(f"strava: unreadable activities cursor {cursor!r}") from None


def _epoch_of(moment: datetime) -> int:
    """Epoch seconds, as stravalib sends them (a naive datetime is UTC; fractions are dropped,
    towards the past). By subtraction rather than ``calendar.timegm(timetuple())``: the same
    number in a third of the time, once per activity read."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // SECOND


def _checked_start(raw: Any, position: int) -> int:
    """The ``start_date`` of activity ``position`` (1-based in this run) as epoch seconds,
    after the checks that stand in for stravalib's model: what we rely on downstream is an
    object with an integer ``id`` and a parseable ``start_date``.

    Raises:
        PayloadError: naming the activity's position in this run.
    """
    if not isinstance(raw, dict):
        raise PayloadError(
            f"strava: activity #{position} of this run is not an object (a {type(raw).__name__})"
        )
    ident = raw.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool):
        raise PayloadError(f"strava: activity #{position} of this run has no integer id")
    try:
        started = datetime.fromisoformat(raw["start_date"])
    except (KeyError, TypeError, ValueError):
        raise PayloadError(
            f"strava: activity #{position} of this run has no valid start_date (id {ident})"
        ) from None
    return _epoch_of(started)  # naive is UTC: Strava's start_date is


# -- `ela auth strava` -------------------------------------------------------------------------


def authorize(
    environ: Mapping[str, str],
    store: TokenStore,
    ask: Callable[[str, bool], str],
    say: Callable[[str], None],
) -> None:
    """Authorize this app for the person's Strava account and store the tokens.

    Prints the authorize URL, asks for the code Strava put in the redirect (the bare code or
    the whole URL), exchanges it through stravalib and writes the tokens to ``store``, where
    every worker picks them up on its next run.

    Args:
        environ: STRAVA_CLIENT_ID / STRAVA_CLIENT_SECRET, optionally STRAVA_API_URL and
            STRAVA_REDIRECT_URI (default ``http://localhost/exchange_token``).
        store: where the tokens go.
        ask: ``ask(prompt, secret)`` returns what the person typed.
        say: prints a line for the person.

    Raises:
        ReauthError: missing credentials or a refused code.
        RetriableError: Strava could not be reached.
    """
    import requests

    client_id, secret = _app_credentials(environ)
    redirect_uri = environ.get("STRAVA_REDIRECT_URI") or DEFAULT_REDIRECT_URI
    ctx = FetchContext(job="auth strava", now=datetime.now(UTC), environ=environ)
    with _stravalib_client(ctx) as client:
        url = client.api.authorization_url(
            client_id=client_id,
            redirect_uri=redirect_uri,
            approval_prompt="force",
            scope=SCOPES,  # type: ignore[arg-type]  # Literal list, checked by stravalib
        )
        url = client.transport.hosts.rewrite(url)
        say("Open this URL, approve access, then paste the code from the page you land on")
        say(f"(or that page's whole URL): {url}")
        code = _code_from(ask("Strava code: ", False))
        if not code:
            raise ReauthError("strava: no code given; " + REAUTH_FIX)
        try:
            info = client.api.exchange_code_for_token(
                client_id=client_id, client_secret=secret, code=code
            )
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (400, 401):
                raise ReauthError(
                    f"strava: the code was refused ({exc}): codes are single-use and expire "
                    "quickly; run `ela auth strava` again"
                ) from exc
            raise strava.classify(exc) from exc
        except Exception as exc:
            raise strava.classify(exc) from exc
    with store.locked(PROVIDER):
        store.write(PROVIDER, _stored_form(cast(Mapping[str, Any], info), environ))
    say(f"Strava authorized; tokens stored in {store.where} for the workers to use.")


def _code_from(answer: str) -> str:
    """The authorization code from a pasted code or a pasted redirect URL."""
    answer = answer.strip()
    if "code=" in answer:
        return parse_qs(urlsplit(answer).query).get("code", [""])[-1]
    return answer
