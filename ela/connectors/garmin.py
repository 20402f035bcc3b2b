"""Garmin Connect via garminconnect 0.3: activities, daily sleep and daily heart rate.

Workers never log in. ``ela auth garmin`` (:func:`authorize`) logs in once with the password,
MFA included, and stores the library's tokens (``Client.dumps()``) in the :class:`TokenStore`;
workers resume from them, refresh them through the library when they expire, and write the
refreshed ones back. Missing tokens, or tokens that can no longer be refreshed, fail the run
with a :class:`ReauthError` that says to run ``ela auth garmin``.

garminconnect is imported only when a client is opened: it imports curl_cffi (41 MB).
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ela import endpoints, limits
from ela.connectors.base import (
    DayRecord,
    FetchContext,
    FetchFn,
    Paginator,
    Param,
    Record,
    Service,
    http_error,
    in_order,
    parse_retry_after,
    read_response,
)
from ela.connectors.pacing import BackfillProfile
from ela.errors import FatalError, IngestError, PayloadError, ReauthError, RetriableError
from ela.tokens import TokenStore

if TYPE_CHECKING:
    from garminconnect import Garmin

MAX_DAYS = 366  # one call per day for sleep/heart rate: a year is the most one run may ask for
PROVIDER = "garmin"  # the TokenStore key
# The display name the daily URLs carry, cached apart from the tokens (that entry holds exactly
# what ``Client.dumps()`` produced) so runs need not ask for the profile every time.
PROFILE = "garmin-profile"
# The user's time zone, from the profile settings, cached the same way (apart from the name:
# a renamed account keeps its zone).
ZONE = "garmin-zone"
# A day is final, and lands complete, this long after it ends in the user's zone: a watch
# syncs through the phone every few hours, so the last samples of a day arrive after midnight.
# A job's settle_hours wins.
SETTLE_HOURS = 6
AUTH_FIX = "run `ela auth garmin` to log in again (MFA included) and store new tokens"
PAGE_SIZE = 20  # what the library and Connect's web UI ask for per activity-search page
# Daily calls in flight at once (sleep, heart rate: one day per call). Garmin publishes no API
# limit (its 429s come from SSO logins); four overlaps the round trips of a backfill without
# bursting, and records are still yielded in day order.
PARALLEL_DAYS = 4

# Backfill: a daily type costs one call per day, so a 30-day chunk is ~31 calls (and the profile)
# — a minute or two of work, far inside the dev 15-minute task limit and the 366-day window one
# run may ask for; a failed chunk re-fetches at most a month, and a month is a sensible landing
# object for the loaders. Activities follow the same chunks (a search page per 20 activities).
# Garmin publishes no quota; its 429s carry Retry-After, which the runner honours.
CHUNK_DAYS = 30
DAILY_BACKFILL = BackfillProfile(
    chunk_days=CHUNK_DAYS,
    until_exclusive=False,
    estimate=lambda days, most_records: days + 1,  # a call a day, and the profile on resume
)
# A range type asks for its whole window in one call: a chunk costs that call (and the profile
# settings, for the time zone, on a first run).
RANGE_BACKFILL = BackfillProfile(
    chunk_days=CHUNK_DAYS,
    until_exclusive=False,
    estimate=lambda days, most_records: 2,
)
ACTIVITY_BACKFILL = BackfillProfile(
    chunk_days=CHUNK_DAYS,
    until_exclusive=False,
    estimate=lambda days, most_records: most_records // PAGE_SIZE + 2,  # pages, and the profile
)

# Where garminconnect sends DI OAuth2 token requests (ticket exchange and refresh): a host of
# its own; with GARMIN_SSO_URL redirected they are served under that base instead.
LIBRARY_DI_BASE = "https://diauth.garmin.com"
PROFILE_PATH = "/userprofile-service/socialProfile"

# garminconnect turns every HTTP error of a data call into "... API Error 429 - ..." and a
# failed DI refresh into "DI token refresh failed: 400 ...": the status survives only as text.
_API_STATUS = re.compile(r"API Error (\d{3})\b")
_REFRESH_STATUS = re.compile(r"refresh failed: (\d{3})\b")


# -- token store -------------------------------------------------------------------------------
def stored_tokens(store: TokenStore) -> str | None:
    """The stored token string (what ``Client.dumps()`` produced), or None if there is none."""
    data = store.read(PROVIDER)
    return json.dumps(data) if data else None


def stored_profile(store: TokenStore) -> dict[str, Any]:
    """The cached profile (``display_name``, ``full_name``), or {} if none (or unreadable)."""
    try:
        data = store.read(PROFILE) or {}
    except ValueError:
        return {}
    return data if isinstance(data.get("display_name"), str) and data["display_name"] else {}


def store_profile(store: TokenStore, display_name: str | None, full_name: str | None) -> None:
    """Cache the display name ({} when there is none, so a stale one is not used)."""
    profile = {"display_name": display_name, "full_name": full_name} if display_name else {}
    store.write(PROFILE, profile)


def stored_zone(store: TokenStore) -> str | None:
    """The cached time zone of the user's profile, or None."""
    try:
        zone = (store.read(ZONE) or {}).get("time_zone")
    except ValueError:
        return None
    return zone if isinstance(zone, str) and zone else None


def store_zone(store: TokenStore, zone: str | None) -> None:
    """Cache the profile's time zone ({} forgets it, e.g. after logging in again)."""
    store.write(ZONE, {"time_zone": zone} if zone else {})


def store_tokens(store: TokenStore, tokens: str) -> None:
    """Store ``Client.dumps()`` output; the file holds exactly its JSON object.

    Callers that may race a worker's refresh hold ``store.locked("garmin")``.
    """
    store.write(PROVIDER, json.loads(tokens))


# -- the adapter -------------------------------------------------------------------------------
def adapt(
    garmin: Garmin,
    environ: Mapping[str, str],
    *,
    on_request: Callable[[], None] | None = None,
    on_response: Callable[[Any], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Callable[[], None]:
    """Point one ``Garmin`` at GARMIN_API_URL / GARMIN_SSO_URL, with timeouts and call counting.

    Every request a worker makes goes through one of two places, both hooked here: data calls
    through the session ``Client._fresh_api_session`` returns (one per thread here, not one per
    call as in the library), DI token exchange and refresh through ``Client._http_post``
    (curl_cffi). Each is routed by :class:`ela.endpoints.Hosts` (the library's URLs moved onto
    the configured bases; any other host refused, so the bearer token goes nowhere else), gets
    the project's timeout (``endpoints.http_timeout``) instead of the library's own, and is
    counted by ``on_request``; ``on_response`` sees each response (for Retry-After, which the
    library's errors drop). Data calls follow no redirect (a redirected API call is a
    ``payload`` error) and read no body past ``ELA_MAX_BODY_BYTES``. The password login flows
    of :func:`authorize` use sessions the library builds inside its methods: they are
    redirected through ``_sso`` and time out after the library's 30 s.

    Args:
        garmin: a ``garminconnect.Garmin``, before it makes any request.
        environ: where GARMIN_API_URL / GARMIN_SSO_URL may redirect the endpoints.
        on_request: called before every hooked request.
        on_response: called with every hooked response.
        on_warning: told of a data call's body that is not UTF-8 (landed with U+FFFD).

    Returns:
        A function that closes the data-call sessions (one per thread that made calls).
    """
    client = garmin.client
    sso = endpoints.url("GARMIN_SSO_URL", environ)
    redirected = sso != endpoints.url("GARMIN_SSO_URL", {})
    hosts = endpoints.Hosts.of(
        "garmin",
        environ,
        "GARMIN_API_URL",
        "GARMIN_SSO_URL",
        **{LIBRARY_DI_BASE: sso if redirected else LIBRARY_DI_BASE},
    )
    # Only the login flows, whose sessions the library builds where no hook reaches, still
    # read their base from the client.
    client._sso = sso

    timeout = endpoints.http_timeout(environ)
    max_body = limits.max_body_bytes(environ)

    def hooked(send: Callable[..., Any], url_at: int, data: bool) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            args = (*args[:url_at], hosts.route(args[url_at]), *args[url_at + 1 :])
            kwargs["timeout"] = timeout
            if data:  # a requests session: no redirects, the body read up to the cap
                kwargs["allow_redirects"] = False
                kwargs["stream"] = True
            if on_request:
                on_request()
            response = send(*args, **kwargs)
            if data:
                read_response(response, max_body, "garmin", on_warning)
                if response.is_redirect:
                    where = urlsplit(args[url_at]).path
                    location = response.headers.get("Location")
                    raise http_error("garmin", response.status_code, where, location=location)
            if on_response:
                on_response(response)
            return response

        return call

    def instrument(session: Any) -> Any:
        session.request = hooked(session.request, 1, data=True)  # (method, url, ...)
        return session

    # The library builds (and never closes) a new session for every data call: a new
    # connection, and on the real API a new TLS handshake, for each day of a year's backfill.
    # One session per thread keeps its connection alive instead. It keeps no cookies, so the
    # requests are the ones the library's fresh sessions send.
    fresh_session = client._fresh_api_session
    local = threading.local()
    opened: list[Any] = []

    def session_per_thread() -> Any:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = instrument(fresh_session())
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            opened.append(session)
        return session

    def close() -> None:
        for session in opened:
            session.close()

    client._fresh_api_session = session_per_thread
    client._http_post = hooked(client._http_post, 0, data=False)  # (url, ...), curl_cffi
    instrument(client.cs)  # only the JWT_WEB fallback uses it; hooked so nothing escapes
    return close


# -- the error map -----------------------------------------------------------------------------
def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it: the library re-wraps errors (``raise ... from e``) twice."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return seen


def _classify(
    exc: BaseException,
    *,
    where: str = "",
    retry_after: float | None = None,
    fix: str = AUTH_FIX,
) -> IngestError | None:
    """Map anything garminconnect (or the network under it) raised to retry / re-auth / payload.

    Args:
        exc: what was raised.
        where: what was being fetched (``"sleep 2025-03-04"``), for the message.
        retry_after: the Retry-After of the last response, which the library's errors drop.
        fix: what a person does about an authentication failure.
    """
    from garminconnect import (
        GarminConnectAuthenticationError,
        GarminConnectTooManyRequestsError,
    )
    from requests.exceptions import InvalidJSONError

    chain = _chain(exc)
    prefix = f"garmin: {where}: " if where else "garmin: "
    detail = str(exc)[:300]
    for error in chain:
        if isinstance(error, IngestError):
            return error
    for error in chain:
        text = str(error)
        found = _API_STATUS.search(text)
        refresh = _REFRESH_STATUS.search(text)
        if not (found or refresh):
            continue
        status = int((found or refresh).group(1))  # type: ignore[union-attr]
        if refresh and status < 500 and status != 429:
            return ReauthError(f"{prefix}HTTP {status}: token refresh was refused; {fix}")
        return http_error(
            "garmin", status, where or "Garmin Connect", retry_after=retry_after, reauth=fix
        )
    if any(isinstance(e, GarminConnectTooManyRequestsError) for e in chain):
        return RetriableError(f"{prefix}rate limited: {detail}", retry_after=retry_after)
    for error in chain:
        # Before OSError: requests' JSONDecodeError is also an IOError. Only a decoding error
        # is the payload's fault; any other ValueError is ours and stays fatal.
        if isinstance(error, (json.JSONDecodeError, InvalidJSONError)):
            return PayloadError(f"{prefix}malformed JSON from Garmin: {error}")
    for error in chain:
        # Timeouts and dropped connections, from requests and curl_cffi alike (both OSError).
        if isinstance(error, OSError):
            return RetriableError(f"{prefix}network error: {type(error).__name__}: {error}")
    if any(isinstance(e, GarminConnectAuthenticationError) for e in chain):
        return ReauthError(f"{prefix}{detail}; {fix}")
    return None


def _status(exc: BaseException) -> int | None:
    """The HTTP status garminconnect put in the text of ``exc`` or what caused it, if any."""
    for error in _chain(exc):
        found = _API_STATUS.search(str(error))
        if found:
            return int(found.group(1))
    return None


# -- the client --------------------------------------------------------------------------------
class _PerThread(threading.local):
    """Daily calls run in several threads, each reading its own response's Retry-After and its
    own refresh failure, and knowing which token generation its call began with."""

    retry_after: float | None = None
    refresh_failure: IngestError | None = None
    generation: int | None = None


class GarminClient:
    """A ``Garmin`` resumed from stored tokens; refreshes are locked and written back.

    The library refreshes by itself (before a call when the token expires within 15 minutes,
    and after a 401) through ``Client._refresh_di_token``; :meth:`refresh` replaces it so that
    two workers never spend the same refresh token and the new tokens reach the store.
    """

    def __init__(self, garmin: Garmin, store: TokenStore, tokens: str) -> None:
        self.garmin = garmin
        self.store = store
        self.tokens = json.loads(tokens)
        self._local = _PerThread()
        self._refreshing = threading.Lock()
        self._generation = 0  # tokens adopted or refreshed so far in this run
        self._library_refresh: Callable[[], None] = garmin.client._refresh_di_token
        self._profiling = threading.Lock()
        self._profile_fetched = False  # this run asked for the profile (no second time)

    def saw(self, response: Any) -> None:
        """Keep the last response's Retry-After: the library's exception drops the response."""
        self._local.retry_after = parse_retry_after(response.headers.get("Retry-After"))

    def resume(self) -> None:
        """Load the stored tokens and refresh them if due.

        Not ``Garmin.login(tokenstore=...)``: it swallows a failed refresh, falls back to a
        password login, and reports a 429 or 5xx of its profile call (after sleeping through
        three tries) as an authentication error. The display name (for the daily URLs) is
        learned only when a data type needs it: :meth:`display_name`.
        """
        client = self.garmin.client
        try:
            client.loads(json.dumps(self.tokens))
        except Exception as exc:
            raise ReauthError(
                f"garmin: the stored tokens are unusable ({exc}); {AUTH_FIX}"
            ) from exc
        client._refresh_di_token = self.refresh
        if client._token_expires_soon():
            self.call("token refresh", self.refresh)

    def display_name(self) -> str:
        """The display name the daily URLs carry: cached in the store, else the profile's."""
        with self._profiling:
            if not self.garmin.display_name:
                cached = stored_profile(self.store)
                if cached:
                    self.garmin.display_name = cached["display_name"]
                    self.garmin.full_name = cached.get("full_name")
                else:
                    self._fetch_profile()
            return str(self.garmin.display_name)

    def _fetch_profile(self) -> None:
        """Ask for the profile (one call) and cache its display name. Holds ``_profiling``."""
        profile = self.call("profile", self.garmin.connectapi, PROFILE_PATH)
        if not isinstance(profile, dict) or not profile.get("displayName"):
            raise PayloadError("garmin: profile: no displayName in the social profile")
        self._profile_fetched = True
        self.garmin.display_name = profile["displayName"]
        self.garmin.full_name = profile.get("fullName")
        store_profile(self.store, self.garmin.display_name, self.garmin.full_name)

    def zone(self, ctx: FetchContext) -> ZoneInfo:
        """The user's time zone, in which Garmin's ``calendarDate`` days begin and end: the
        job's ``user_timezone``, else the profile settings' ``timeZone`` (cached in the store:
        one call the first time). A profile without a usable one: UTC, with a warning each run
        until the job sets ``user_timezone``."""
        if ctx.user_timezone:
            return ZoneInfo(ctx.user_timezone)  # checked when the config was loaded
        with self._profiling:
            name = stored_zone(self.store)
            if name is None:
                settings = self.call("profile settings", self.garmin.get_userprofile_settings)
                name = settings.get("timeZone") if isinstance(settings, dict) else None
                if _zone(name) is not None:
                    store_zone(self.store, name)
        zone = _zone(name)
        if zone is None:
            ctx.warn(
                f"the Garmin profile names no usable time zone ({name!r}): days are UTC "
                "dates; set user_timezone on the job"
            )
            return ZoneInfo("UTC")
        return zone

    def by_name(self, what: str, fetch: Callable[[str], Any], day: str) -> Any:
        """``fetch(day)`` for a URL that carries the display name. A 403 or 404 to a cached
        name (the account was renamed) asks for the profile once and tries again."""
        used = self.display_name()
        try:
            return self.call(what, fetch, day)
        except IngestError as exc:
            if _status(exc) not in (403, 404):
                raise
            with self._profiling:
                if self.garmin.display_name == used:  # no other thread has refetched it yet
                    if self._profile_fetched:
                        raise
                    self._fetch_profile()
        return self.call(what, fetch, day)

    def refresh(self) -> None:
        """Refresh the DI token under the store's lock, adopting a newer stored one if any."""
        client = self.garmin.client
        seen = self._generation if self._local.generation is None else self._local.generation
        with self._refreshing, self.store.locked(PROVIDER):
            if self._generation != seen:
                # Another thread of this run got new tokens after this thread's call began:
                # its 401 was for the old ones, so the library's retry needs no refresh.
                self._local.generation = self._generation
                return
            current = self.store.read(PROVIDER)
            if current and current != self.tokens:
                # Another worker refreshed while we ran: use its tokens instead of spending the
                # refresh token it already spent (Garmin may rotate it).
                client.loads(json.dumps(current))
                self.tokens = current
                self._renewed()
                if not client._token_expires_soon():
                    return
            try:
                self._library_refresh()
            except Exception as exc:
                # The library swallows this when it refreshes on its own; remember the cause so
                # the 401 that follows is reported as what it is (re-auth, or a 5xx to retry).
                self._local.refresh_failure = _classify(exc, where="token refresh") or FatalError(
                    f"garmin: token refresh: {type(exc).__name__}: {exc}"
                )
                raise
            self.tokens = json.loads(client.dumps())
            store_tokens(self.store, client.dumps())
            self._renewed()

    def _renewed(self) -> None:
        """New tokens are in the client: a call that begins from now on sends them. Counted
        only now, not when the refresh starts: a call that began during the refresh sent the
        old ones, and its 401 must not pass for one to tokens it never had."""
        self._generation += 1
        self._local.generation = self._generation

    def call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``method(*args, **kwargs)``, with any failure classified and named by ``what``."""
        self._local.refresh_failure = None
        self._local.generation = self._generation
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            error = self._local.refresh_failure or _classify(
                exc, where=what, retry_after=self._local.retry_after
            )
            if error is None:
                error = FatalError(f"garmin: {what}: {type(exc).__name__}: {exc}")
            raise error from exc


@contextmanager
def _open(ctx: FetchContext) -> Iterator[GarminClient]:
    from garminconnect import Garmin

    store = TokenStore.from_env(ctx.environ)
    try:
        tokens = stored_tokens(store)
    except ValueError as exc:  # a damaged token file: only a new login replaces it
        raise ReauthError(f"garmin: the stored tokens are unreadable ({exc}); {AUTH_FIX}") from exc
    if tokens is None:
        raise ReauthError(f"garmin: no stored tokens in {store.where}: {AUTH_FIX}")
    garmin = Garmin()  # no credentials: the library cannot fall back to a password login

    client = GarminClient(garmin, store, tokens)
    close = adapt(
        garmin,
        ctx.environ,
        on_request=ctx.count_call,
        on_response=client.saw,
        on_warning=ctx.warn,
    )
    try:
        client.resume()
        yield client
    finally:
        close()


garmin: Service[GarminClient] = Service(
    "garmin",
    open_client=_open,
    classify=_classify,
)
# The job parameters of a type read by the user's calendar days.
DAILY: tuple[Param, ...] = ("days", "settle_hours", "user_timezone")


def per_day(name: str, backfill: BackfillProfile = DAILY_BACKFILL) -> Callable[[FetchFn], FetchFn]:
    """Register a data type read by the user's calendar days (a call a day, or one for a range):
    its days become final ``settle_hours`` after they end, and ``ela backfill`` takes it."""
    return garmin.data_type(
        name, params=DAILY, max_days=MAX_DAYS, keeps_state=True, backfill=backfill
    )


# -- the data types ----------------------------------------------------------------------------
def _zone(name: Any) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if isinstance(name, str) and name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _span(first: date, last: date) -> list[date]:
    count = (last - first).days + 1
    if count < 1:
        raise FatalError(f"garmin: empty window: since {first} is after until {last}")
    if count > MAX_DAYS:
        raise FatalError(
            f"garmin: a window of {count} days is more than {MAX_DAYS}; split the backfill"
        )
    return [first + timedelta(days=n) for n in range(count)]


def explicit(ctx: FetchContext) -> bool:
    """The caller named the days (``ela run --since``, a backfill chunk)."""
    return ctx.since is not None or ctx.until is not None


def window(ctx: FetchContext, zone: ZoneInfo) -> list[date]:
    """The last ``days`` calendar days of the user (in ``zone``), ending on the scheduled
    day, oldest first; or, when the caller gives one, the explicit window: ``since``'s day
    through ``until``'s day, both included (``until`` defaults to today, ``since`` to ``days``
    days before ``until``)."""
    days = ctx.days or 1
    today = ctx.now.astimezone(zone).date()
    last = ctx.until.astimezone(UTC).date() if ctx.until else today
    first = ctx.since.astimezone(UTC).date() if ctx.since else last - timedelta(days=days - 1)
    return _span(first, last)


def daily_window(ctx: FetchContext, zone: ZoneInfo) -> list[date]:
    """The days a per-day run asks for: an explicit window as given; otherwise every day after
    the last one landed complete (the job's state) through today, so a worker that was down
    catches up, at most :data:`MAX_DAYS` (the rest next run). A first run covers ``days``."""
    if explicit(ctx) or not ctx.complete_through:
        return window(ctx, zone)
    today = ctx.now.astimezone(zone).date()
    first = min(date.fromisoformat(ctx.complete_through) + timedelta(days=1), today)
    return _span(first, min(today, first + timedelta(days=MAX_DAYS - 1)))


def last_final_day(ctx: FetchContext, zone: ZoneInfo) -> date:
    """The last day that is over in ``zone``, by the settling margin, at the scheduled time."""
    settle = timedelta(hours=SETTLE_HOURS if ctx.settle_hours is None else ctx.settle_hours)
    return (ctx.now - settle).astimezone(zone).date() - timedelta(days=1)


def _daily(
    client: GarminClient,
    ctx: FetchContext,
    kind: str,
    fetch: Callable[[str], Any],
    calendar_date: Callable[[Record], Any] | None,
    *,
    named: bool = True,
    each: bool = False,
) -> Iterator[Record]:
    """One library call and one record per day, several days in flight, yielded in day order;
    each record is checked to be that day's. Days not yet final are listed in the manifest
    (``partial_days``); the last final day becomes the job's ``complete_through``.

    Args:
        calendar_date: the day a record says it is for, checked against the day asked for;
            None for a payload that names no day of its own (training status).
        named: the URL carries the display name (sleep, heart rate, steps).
        each: the day's answer is a JSON array whose objects each land as one record of
            that day (steps: 96 quarter hours).
    """
    undated: list[str] = []
    zone = client.zone(ctx)
    days = daily_window(ctx, zone)
    if named:
        client.display_name()  # once, before the days are fetched in parallel

    def fetch_day(day: date) -> Any:
        if named:
            return client.by_name(f"{kind} {day}", fetch, day.isoformat())
        return client.call(f"{kind} {day}", fetch, day.isoformat())

    for day, record in in_order(fetch_day, days, PARALLEL_DAYS, f"garmin-{kind}"):
        if not record:  # HTTP 204 (the library's {}), or null / []: nothing for that day
            ctx.warn(f"{kind} {day}: no data")
            continue
        if each:
            if not isinstance(record, list):
                raise PayloadError(f"garmin: {kind} {day}: a {type(record).__name__}, not an array")
            for offset, item in enumerate(record):
                if not isinstance(item, dict):
                    raise PayloadError(f"garmin: {kind} {day}: item {offset} is not an object")
                yield DayRecord(item, day)
            continue
        if not isinstance(record, dict):
            raise PayloadError(f"garmin: {kind} {day}: a {type(record).__name__}, not an object")
        stamped = calendar_date(record) if calendar_date else day.isoformat()
        if stamped is None:
            undated.append(day.isoformat())
        elif stamped != day.isoformat():
            raise PayloadError(f"garmin: {kind} {day}: the record is for {stamped!r}")
        yield DayRecord(record, day)
    if undated:
        ctx.warn(f"{kind}: records without a calendarDate for {', '.join(undated)}")
    _settle(ctx, zone, days)


def _settle(ctx: FetchContext, zone: ZoneInfo, days: list[date]) -> None:
    """List the days not yet final (``partial_days``) and move ``complete_through``."""
    final = last_final_day(ctx, zone)
    partial = [day.isoformat() for day in days if day > final]
    if partial:
        ctx.report["partial_days"] = partial
    if not explicit(ctx):
        # A first run's days start the job: the day before them counts as done.
        done = max((day for day in days if day <= final), default=days[0] - timedelta(days=1))
        ctx.new_complete_through = done.isoformat()


@per_day("sleep")
def sleep(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """Daily sleep, one record per calendar day (``dailySleepDTO.calendarDate``)."""

    def calendar_date(record: Record) -> Any:
        dto = record.get("dailySleepDTO")
        return dto.get("calendarDate") if isinstance(dto, dict) else None

    yield from _daily(client, ctx, "sleep", client.garmin.get_sleep_data, calendar_date)


@per_day("heart_rate")
def heart_rate(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """Daily heart rate, one record per calendar day (``calendarDate``)."""
    yield from _daily(
        client, ctx, "heart_rate", client.garmin.get_heart_rates, lambda r: r.get("calendarDate")
    )


@garmin.data_type(
    "activities",
    params=("days", "user_timezone"),
    max_days=MAX_DAYS,
    keeps_state=True,
    backfill=ACTIVITY_BACKFILL,
)
def activities(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """Activities started in the last ``days`` days (the user's), newest first, as the activity
    search returns them, each landed once.

    An activity shows when the watch syncs, which can be a day or more after it started: each
    run searches the whole window again, and lands the activities whose ``activityId`` is not
    among those landed before (the job's state). An explicit window lands whole.

    The paging of ``Garmin.get_activities_by_date``, through the same library call and URL,
    but checked page by page: the library extends its list with whatever a page is, loops
    forever on a page that is a non-empty object, and on a search that ignores ``start``.
    """
    days = window(ctx, client.zone(ctx))
    span = f"activities {days[0]}..{days[-1]}"
    params = {"startDate": days[0].isoformat(), "endDate": days[-1].isoformat()}
    if not explicit(ctx):
        ctx.landed_floor = days[0].toordinal()  # no later run searches further back
    pages = Paginator(f"garmin: {span}", ctx, token=0)
    while pages.has_more:
        position = pages.token
        page = client.call(
            f"{span} from {position}",
            client.garmin.connectapi,
            client.garmin.garmin_connect_activities,
            params={**params, "start": str(position), "limit": str(PAGE_SIZE)},
        )
        if not isinstance(page, list):
            raise PayloadError(f"garmin: {span}: page at {position} is not a list")
        for offset, record in enumerate(page):
            if not isinstance(record, dict):
                raise PayloadError(f"garmin: {span}: record {position + offset} is not an object")
        yield from _unlanded(pages.read(page), ctx, days[0])
        pages.advance(position + len(page) if len(page) >= PAGE_SIZE else None)


def _unlanded(page: list[Record], ctx: FetchContext, first: date) -> Iterator[Record]:
    """The page's activities not landed before, each recorded as landed (by its local day)."""
    for record in page:
        key = str(record.get("activityId"))
        if not explicit(ctx) and key in ctx.already_landed:
            continue
        try:
            day = date.fromisoformat(str(record.get("startTimeLocal"))[:10])
        except ValueError:
            day = first
        ctx.landed[key] = day.toordinal()
        yield record


# -- more of the person's data -----------------------------------------------------------------
# How far back a weight run looks for weigh-ins added, edited or deleted late (a manual entry
# for last week typed in today), when the job sets no ``days``.
WEIGHT_DAYS = 30


@per_day("steps")
def steps(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """Steps per quarter hour, one record per interval (``Garmin.get_steps_data``).

    Garmin answers a day with a JSON array of 96 intervals (``startGMT``, ``steps``,
    ``primaryActivityLevel``, ...): each lands as one record of that day. A day without data
    is still 96 intervals, stamped ``1970-01-01T00:00:00.000`` with 0 steps (garminconnect's
    recorded ``test_steps_data``): they land as sent.
    """
    yield from _daily(client, ctx, "steps", client.garmin.get_steps_data, None, each=True)


@per_day("stress")
def stress(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """All-day stress and body battery, one record per day (``Garmin.get_all_day_stress``)."""
    yield from _daily(
        client,
        ctx,
        "stress",
        client.garmin.get_all_day_stress,
        lambda r: r.get("calendarDate"),
        named=False,
    )


@per_day("hrv")
def hrv(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """Overnight heart-rate variability, one record per day (``Garmin.get_hrv_data``).

    A night without a reading (the watch not worn, or no HRV sensor) is HTTP 204, which the
    library returns as ``{}``: the day is skipped with a warning, as for sleep.
    """

    def calendar_date(record: Record) -> Any:
        summary = record.get("hrvSummary")
        return summary.get("calendarDate") if isinstance(summary, dict) else None

    yield from _daily(client, ctx, "hrv", client.garmin.get_hrv_data, calendar_date, named=False)


@per_day("training_status")
def training_status(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """Training status as of each day, one record per day (``Garmin.get_training_status``).

    The payload names no day of its own: it holds the most recent status, VO2 max and load
    balance as of the day asked for, each under a map keyed by device id.
    """
    yield from _daily(
        client, ctx, "training_status", client.garmin.get_training_status, None, named=False
    )


@per_day("floors")
def floors(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """Floors climbed per quarter hour, one record per day (``Garmin.get_floors``); the
    payload's day is the date of its ``startTimestampLocal``."""

    def calendar_date(record: Record) -> Any:
        start = record.get("startTimestampLocal")
        return start[:10] if isinstance(start, str) else None

    yield from _daily(client, ctx, "floors", client.garmin.get_floors, calendar_date, named=False)


@per_day("body_battery", RANGE_BACKFILL)
def body_battery(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """Body battery per day, for the whole window in one call (``Garmin.get_body_battery``).

    The days asked for are those of the per-day types (every day after the last complete one
    through today); the answer is a JSON array with one object per day, each carrying its own
    ``date``. Days not yet final are listed in ``partial_days`` and asked for again.
    """
    zone = client.zone(ctx)
    days = daily_window(ctx, zone)
    span = f"body_battery {days[0]}..{days[-1]}"
    answer = client.call(
        span, client.garmin.get_body_battery, days[0].isoformat(), days[-1].isoformat()
    )
    if not answer:
        ctx.warn(f"{span}: no data")
        answer = []
    if not isinstance(answer, list):
        raise PayloadError(f"garmin: {span}: a {type(answer).__name__}, not an array")
    wanted = {day.isoformat(): day for day in days}
    for offset, record in enumerate(answer):
        if not isinstance(record, dict):
            raise PayloadError(f"garmin: {span}: item {offset} is not an object")
        stamped = record.get("date")
        if stamped not in wanted:
            raise PayloadError(f"garmin: {span}: item {offset} is for {stamped!r}, not asked for")
        yield DayRecord(record, wanted[stamped])
    _settle(ctx, zone, days)


def _digest(record: Record) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


@garmin.data_type(
    "weight",
    params=("days", "user_timezone"),
    max_days=MAX_DAYS,
    keeps_state=True,
    backfill=RANGE_BACKFILL,
)
def weight(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """Weigh-ins, one record per day that has any (``Garmin.get_weigh_ins``, one call).

    Each run reads the last ``days`` days (default 30) again: weigh-ins are typed in late,
    edited and deleted. A day's summary (``dailyWeightSummaries[]``: every weigh-in of the day
    under ``allWeightMetrics``) lands when it is new or differs from the one landed before
    (the job's state keeps a digest per day). A day whose weigh-ins were all deleted is no
    longer in Garmin's answer: it is listed in the manifest's ``removed_days`` (and warned of),
    once. An explicit window lands whole.
    """
    if not ctx.days:
        ctx.days = WEIGHT_DAYS
    days = window(ctx, client.zone(ctx))
    span = f"weight {days[0]}..{days[-1]}"
    answer = client.call(
        span, client.garmin.get_weigh_ins, days[0].isoformat(), days[-1].isoformat()
    )
    if not answer:
        answer = {}
    if not isinstance(answer, dict):
        raise PayloadError(f"garmin: {span}: a {type(answer).__name__}, not an object")
    summaries = answer.get("dailyWeightSummaries") or []
    if not isinstance(summaries, list):
        raise PayloadError(f"garmin: {span}: dailyWeightSummaries is not an array")
    if not explicit(ctx):
        ctx.landed_floor = days[0].toordinal()  # no later run reads further back
    seen: set[str] = set()
    for offset, summary in enumerate(summaries):
        if not isinstance(summary, dict):
            raise PayloadError(f"garmin: {span}: dailyWeightSummaries[{offset}] is not an object")
        try:
            day = date.fromisoformat(str(summary.get("summaryDate")))
        except ValueError:
            raise PayloadError(
                f"garmin: {span}: dailyWeightSummaries[{offset}] has no summaryDate"
            ) from None
        seen.add(day.isoformat())
        key = f"{day.isoformat()}#{_digest(summary)}"
        ctx.landed[key] = day.toordinal()
        if explicit(ctx) or key not in ctx.already_landed:
            yield DayRecord(summary, day)
    if explicit(ctx):
        return
    first, last = days[0].isoformat(), days[-1].isoformat()
    before = {key.split("#", 1)[0] for key in ctx.already_landed if "#" in key}
    gone = {key.split("#", 1)[0] for key in ctx.already_landed if key.endswith("#removed")}
    removed = sorted(d for d in before - seen - gone if first <= d <= last)
    for day_text in removed:
        ctx.landed[f"{day_text}#removed"] = date.fromisoformat(day_text).toordinal()
    if removed:
        ctx.report["removed_days"] = removed
        ctx.warn(f"weight: every weigh-in of {', '.join(removed)} was deleted in Garmin Connect")


@garmin.data_type("race_predictions")
def race_predictions(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """The latest race predictions (5K, 10K, half, marathon), one record, as Garmin sent it
    (``Garmin.get_race_predictions()``); none for an account without running data."""
    client.display_name()
    record = client.call("race predictions", client.garmin.get_race_predictions)
    if not record:
        ctx.warn("race predictions: no data")
        return
    if not isinstance(record, dict):
        raise PayloadError(f"garmin: race predictions: a {type(record).__name__}, not an object")
    yield record


@garmin.data_type("devices")
def devices(client: GarminClient, ctx: FetchContext) -> Iterator[Record]:
    """The account's registered devices, one record each (``Garmin.get_devices``)."""
    answer = client.call("devices", client.garmin.get_devices) or []
    if not isinstance(answer, list):
        raise PayloadError(f"garmin: devices: a {type(answer).__name__}, not an array")
    for offset, record in enumerate(answer):
        if not isinstance(record, dict):
            raise PayloadError(f"garmin: devices: item {offset} is not an object")
        yield record


# -- ela auth garmin ---------------------------------------------------------------------------
def authorize(
    environ: Mapping[str, str],
    store: TokenStore,
    ask: Callable[[str, bool], str],
    say: Callable[[str], None],
) -> None:
    """Log in to Garmin Connect once, MFA included, and store the tokens workers resume from.

    Args:
        environ: GARMIN_USERNAME / GARMIN_PASSWORD (asked for when unset) and the endpoint
            overrides GARMIN_API_URL / GARMIN_SSO_URL.
        store: where the tokens go (provider ``garmin``).
        ask: asks the user; the flag says the answer is secret (not echoed).
        say: tells the user something.

    Raises:
        ReauthError: wrong credentials or MFA code. RetriableError: Garmin rate-limited the
            login (it does, from some networks); try later.
    """
    from garminconnect import Garmin

    username = environ.get("GARMIN_USERNAME") or ask("Garmin Connect email", False)
    password = environ.get("GARMIN_PASSWORD") or ask("Garmin Connect password", True)
    garmin = Garmin(username, password, return_on_mfa=True)
    close = adapt(garmin, environ)
    fix = "check GARMIN_USERNAME / GARMIN_PASSWORD (and the MFA code), then run it again"
    say(f"Logging in to Garmin Connect as {username} ...")
    try:
        status, state = garmin.login()
        if status == "needs_mfa":
            code = ask("Garmin MFA code (sent by email or text message)", False).strip()
            garmin.resume_login(state, code)
    except Exception as exc:
        error = _classify(exc, where="login", fix=fix)
        raise error or FatalError(f"garmin: login: {type(exc).__name__}: {exc}") from exc
    finally:
        close()
    if not garmin.client.di_token:
        # The library falls back to a JWT_WEB cookie session, which dumps() cannot save.
        raise ReauthError("garmin: login: Garmin issued no DI token, so nothing can be stored")
    with store.locked(PROVIDER):
        store_tokens(store, garmin.client.dumps())
        # The login asked for the profile: cache its name (or drop another account's).
        store_profile(store, garmin.display_name, garmin.full_name)
        store_zone(store, None)  # asked for again on the next run
    say("Logged in. Workers resume from these tokens; Garmin keeps them valid for about a year.")
