"""Strava API v3 emulator: OAuth with rotating refresh tokens, the athlete, their activities,
and Strava's rate limits.

Modelled on what Strava does, not on what a client hopes:

* ``POST /oauth/token``: ``refresh_token`` and ``authorization_code`` grants. Every refresh
  rotates the refresh token and the old one stops working (400). A new access token is issued
  only when the current one has an hour or less left, as Strava does; access tokens last six
  hours and an expired or unknown one gets a 401 from the API.
* ``GET /api/v3/athlete/activities``: ``after``/``before`` (epoch seconds, both exclusive),
  ``page``/``per_page`` (default 30, capped at 200). With ``after`` the activities come oldest
  first, otherwise newest first, which is the order Strava uses (stravalib's guide,
  docs/get-started/activities.md: "To get activities starting with the oldest first, specify a
  value for the after= parameter"; "before=" gets the last ones). Both filter on ``start_date``,
  not on when an activity was uploaded: an activity uploaded late (a watch that syncs the next
  morning, a manual entry; :meth:`StravaEmulator.upload`) slots in among older ones.
* Every API response carries ``X-RateLimit-Limit``/``-Usage`` and ``X-ReadRateLimit-*``
  (``"15-minute,daily"``); the windows reset at :00/:15/:30/:45 and at midnight UTC, refused
  requests still count, and a request over a limit gets a 429.

With ``loop`` on, the activity list ignores ``page`` and answers page 1 to every page number
(full pages forever, for a client that stops at a short page).
"""

from __future__ import annotations

import bisect
import copy
import math
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import orjson

from ela.sandbox.emulators.server import Emulator, Request, Response, bearer

CLIENT_ID = "48213"
CLIENT_SECRET = "strava-emulator-client-secret"
BOOTSTRAP_REFRESH_TOKEN = "strava-emulator-refresh-0"
ATHLETE_ID = 18364512
MAX_PAGE = 200  # Strava caps per_page at 200
DEFAULT_PAGE = 30  # Strava's per_page when none is given
TOKEN_LIFETIME_S = 6 * 3600  # Strava access tokens last six hours
RENEW_WITHIN_S = 3600  # Strava issues a new access token only in the last hour of the old one
LIMITS = (100, 1000)  # requests per 15 minutes, per day (the app's default tier)
READ_LIMITS = (100, 1000)  # reads per 15 minutes, per day
QUARTER_HOUR_S = 900
DAY_S = 86400
LAST_SEEDED = datetime(2025, 5, 31, tzinfo=UTC)  # seeded history ends here, going back
HOME = (45.7640, 4.8357)  # Lyon: where the seeded athlete starts most activities
TZ_NAME = "Europe/Paris"

_RATE_LIMITED = {
    "message": "Rate Limit Exceeded",
    "errors": [{"resource": "Application", "field": "rate limit", "code": "exceeded"}],
}


def _auth_error(resource: str, field: str) -> dict[str, Any]:
    return {
        "message": "Authorization Error",
        "errors": [{"resource": resource, "field": field, "code": "invalid"}],
    }


def _bad_request(resource: str, field: str) -> dict[str, Any]:
    return {
        "message": "Bad Request",
        "errors": [{"resource": resource, "field": field, "code": "invalid"}],
    }


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_polyline(points: list[tuple[float, float]]) -> str:
    """Google's encoded polyline format, as Strava's ``summary_polyline`` uses."""
    out: list[str] = []
    last = (0, 0)
    for lat, lng in points:
        here = (round(lat * 1e5), round(lng * 1e5))
        for delta in (here[0] - last[0], here[1] - last[1]):
            value = ~(delta << 1) if delta < 0 else delta << 1
            while value >= 0x20:
                out.append(chr((0x20 | (value & 0x1F)) + 63))
                value >>= 5
            out.append(chr(value + 63))
        last = here
    return "".join(out)


# sport type: (share of activities, speed range m/s, distance range m, GPS, workout_type)
_SPORTS: dict[str, tuple[float, tuple[float, float], tuple[float, float], bool, int | None]] = {
    "Run": (0.42, (2.6, 3.6), (4000, 21500), True, 0),
    "Ride": (0.22, (6.0, 8.8), (18000, 110000), True, 10),
    "Walk": (0.10, (1.2, 1.6), (2000, 9000), True, None),
    "Hike": (0.06, (0.9, 1.4), (6000, 22000), True, None),
    "Swim": (0.06, (0.6, 0.9), (1000, 3200), False, None),
    "VirtualRide": (0.08, (6.5, 9.0), (15000, 60000), False, 10),
    "WeightTraining": (0.06, (0.0, 0.0), (0, 0), False, None),
}


class StravaEmulator(Emulator):
    """Serves ``/oauth/*`` and ``/api/v3/*``; point ``STRAVA_API_URL`` at :attr:`url`.

    Args:
        activities: how many activities to seed (deterministic for a given ``seed``).
        seed: the random seed.
        limits / read_limits: (15-minute, daily) request and read limits.
        token_lifetime: seconds an access token lasts.
        clock: epoch seconds now (token expiry, rate-limit windows); tests may replace it.
    """

    name = "strava"

    def __init__(
        self,
        activities: int = 300,
        seed: int = 7,
        *,
        limits: tuple[int, int] = LIMITS,
        read_limits: tuple[int, int] = READ_LIMITS,
        token_lifetime: float = TOKEN_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(seed)
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET
        self.limits = limits
        self.read_limits = read_limits
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.refresh_tokens: set[str] = {BOOTSTRAP_REFRESH_TOKEN}
        self.access_tokens: dict[str, float] = {}  # token → expires_at
        self.current_access: str | None = None
        self.codes: set[str] = set()
        self.refreshes = 0  # successful refresh_token grants
        self.revoked: list[str] = []  # refresh tokens used up by rotation or revocation
        self.stale_refreshes: list[str] = []  # refresh attempts with a used-up token (400)
        self._serial = 0
        # Streams by activity (as it is now): computed once, not on every request.
        self._streams: dict[bytes, dict[str, dict[str, Any]] | None] = {}
        self._window: tuple[int, int] = (-1, -1)  # (quarter-hour index, day index)
        self._usage = [0, 0]  # all requests: this quarter hour, today
        self._read_usage = [0, 0]
        self.athlete = self._make_athlete()
        self.activities: list[dict[str, Any]] = []  # in start order: add them with _insert
        self._starts: list[int] = []  # their start_date epochs, for the window bisections
        self._seed_history(activities)
        self.route("POST", r"/oauth/token", self._token)
        self.route("GET", r"/oauth/authorize", self._authorize)
        self.route("POST", r"/oauth/deauthorize", self._deauthorize)
        self.route("GET", r"/api/v3/athlete", self._get_athlete)
        self.route("GET", r"/api/v3/athlete/activities", self._list_activities)
        # Issue 15: what hangs off each activity, and the athlete's clubs and gear.
        self.clubs: list[dict[str, Any]] = _seed_clubs()
        self.answered: list[str] = []  # laps/streams paths answered 200 (not refused, not 404)
        self.route("GET", r"/api/v3/activities/(\d+)/laps", self._activity_laps)
        self.route("GET", r"/api/v3/activities/(\d+)/streams", self._activity_streams)
        self.route("GET", r"/api/v3/athlete/clubs", self._athlete_clubs)
        self.route("GET", r"/api/v3/gear/([^/]+)", self._gear)

    def environ(self) -> dict[str, str]:
        return {
            "STRAVA_API_URL": self.url,
            "STRAVA_CLIENT_ID": self.client_id,
            "STRAVA_CLIENT_SECRET": self.client_secret,
            # Single-use, like any Strava refresh token: keep the token store between runs.
            "STRAVA_REFRESH_TOKEN": BOOTSTRAP_REFRESH_TOKEN,
        }

    # -- data ----------------------------------------------------------------------------------
    def _make_athlete(self) -> dict[str, Any]:
        bike = {
            "id": "b9182736",
            "primary": True,
            "name": "Canyon Endurace CF 7",
            "nickname": "Endurace",
            "resource_state": 2,
            "retired": False,
            "distance": 8123456.0,
            "converted_distance": 8123.5,
        }
        shoe = {
            "id": "g10293847",
            "primary": True,
            "name": "ASICS Novablast 4",
            "nickname": "Novablast",
            "resource_state": 2,
            "retired": False,
            "distance": 612345.0,
            "converted_distance": 612.3,
        }
        return {
            "id": ATHLETE_ID,
            "username": "camille_roux",
            "resource_state": 3,
            "firstname": "Camille",
            "lastname": "Roux",
            "bio": "Trail, gravel, too much coffee.",
            "city": "Lyon",
            "state": "Auvergne-Rhône-Alpes",
            "country": "France",
            "sex": "F",
            "premium": True,
            "summit": True,
            "created_at": "2016-04-11T18:22:05Z",
            "updated_at": "2025-05-30T19:41:12Z",
            "badge_type_id": 1,
            "weight": 61.2,
            "profile_medium": f"https://dgalywyr863hv.cloudfront.net/pictures/athletes/{ATHLETE_ID}/medium.jpg",
            "profile": f"https://dgalywyr863hv.cloudfront.net/pictures/athletes/{ATHLETE_ID}/large.jpg",
            "friend": None,
            "follower": None,
            "blocked": False,
            "can_follow": True,
            "follower_count": 84,
            "friend_count": 91,
            "mutual_friend_count": 0,
            "athlete_type": 1,
            "date_preference": "%m/%d/%Y",
            "measurement_preference": "meters",
            "clubs": [],
            "postable_clubs_count": 0,
            "ftp": 215,
            "bikes": [bike],
            "shoes": [shoe],
            "is_winback_via_upload": False,
            "is_winback_via_view": False,
        }

    def _seed_history(self, count: int) -> None:
        """``count`` activities ending at LAST_SEEDED, one every day or few days."""
        days: list[date] = []
        day = LAST_SEEDED.date()
        for _ in range(count):
            days.append(day)
            day -= timedelta(days=self.random.choice((1, 1, 1, 2, 2, 3)))
        with self.lock:
            self._insert([self._make_activity(d) for d in reversed(days)])

    def add_activities(self, count: int, start: datetime | None = None) -> list[dict[str, Any]]:
        """Record ``count`` new activities after the newest one started by now (from ``start``'s
        day, if given), one a day; returns copies of them."""
        with self.lock:
            now = self.clock()
            started = [a for a in self.activities if _epoch(a["start_date"]) <= now]
            last = datetime.fromisoformat(started[-1]["start_date"]).date()
            day = max(last + timedelta(days=1), start.date() if start else last)
            new = [self._make_activity(day + timedelta(days=i)) for i in range(count)]
            self._insert(new)
            return copy.deepcopy(new)

    def upload(self, starts: list[datetime], *, manual: bool = False) -> list[dict[str, Any]]:
        """Activities uploaded now that started at ``starts``: before the newest one for a
        watch that synced late or an entry made by hand (``manual``: no device, no GPS, as in
        stravalib's recorded ``activity-manual``), or in the future for a device whose clock is
        wrong. Returns copies of them."""
        with self.lock:
            new = [self._make_activity(s.date(), start=s, manual=manual) for s in starts]
            self._insert(new)
            return copy.deepcopy(new)

    def without_heart_rate(self, count: int) -> list[dict[str, Any]]:
        """``count`` new activities (as :meth:`add_activities`) recorded without a heart-rate
        strap: ``has_heartrate`` false, no heart-rate averages, and no ``heartrate`` stream."""
        new = self.add_activities(count)
        with self.lock:
            ids = {a["id"] for a in new}
            for activity in self.activities:
                if activity["id"] in ids:
                    activity["has_heartrate"] = False
                    activity.pop("average_heartrate", None)
                    activity.pop("max_heartrate", None)
            return [copy.deepcopy(a) for a in self.activities if a["id"] in ids]

    def _insert(self, new: list[dict[str, Any]]) -> None:
        for activity in new:  # kept in start order, which the window bisections rely on
            start = _epoch(activity["start_date"])
            at = bisect.bisect_right(self._starts, start)
            self._starts.insert(at, start)
            self.activities.insert(at, activity)

    def window(self, after: int | None = None, before: int | None = None) -> list[dict[str, Any]]:
        """The activities Strava would list for ``after``/``before`` (exclusive), oldest first."""
        with self.lock:
            return copy.deepcopy(self._window_of(after, before))

    def _window_of(self, after: int | None, before: int | None) -> list[dict[str, Any]]:
        """The same, without copying (callers hold the lock): activities are kept in start
        order beside their start epochs, so two bisections find the window among thousands
        without reading a date (parsing all 5,000 dates took 5 ms of every page served)."""
        starts = self._starts
        low = 0 if after is None else bisect.bisect_right(starts, after)
        high = len(starts) if before is None else bisect.bisect_left(starts, before)
        return self.activities[low:high]

    def _make_activity(
        self, day: date, *, start: datetime | None = None, manual: bool = False
    ) -> dict[str, Any]:
        """One SummaryActivity as Strava lists it (resource_state 2), on ``day`` at a random
        time or at ``start``; ``manual`` makes it an entry made by hand."""
        rnd = self.random
        self._serial += 1
        sport = rnd.choices(list(_SPORTS), weights=[s[0] for s in _SPORTS.values()])[0]
        _, speeds, distances, gps, workout_type = _SPORTS[sport]
        gps = gps and not manual
        zone = ZoneInfo(TZ_NAME)
        if start is None:
            local = datetime(
                day.year,
                day.month,
                day.day,
                rnd.randint(6, 19),
                rnd.randint(0, 59),
                rnd.randint(0, 59),
            ).replace(tzinfo=zone)
        else:
            local = start.astimezone(zone)
        start = local.astimezone(UTC)
        offset = local.utcoffset() or timedelta()
        if sport == "WeightTraining":
            distance, moving = 0.0, rnd.randint(1800, 4200)
        else:
            distance = round(rnd.uniform(*distances), 1)
            moving = int(distance / rnd.uniform(*speeds))
        elapsed = moving + rnd.randint(0, max(60, moving // 8))
        elevation = round(distance * rnd.uniform(0.002, 0.02), 1) if gps else 0.0
        activity_id = 2_000_000_000 + self._serial * 9_173 + rnd.randint(0, 9_000)
        upload_id = activity_id + 2_100_000_000
        hour = local.hour
        part = "Morning" if hour < 12 else "Afternoon" if hour < 18 else "Evening"
        label = {"VirtualRide": "Zwift Ride", "WeightTraining": "Weight Training"}.get(sport, sport)
        record: dict[str, Any] = {
            "resource_state": 2,
            "athlete": {"id": ATHLETE_ID, "resource_state": 1},
            "name": f"{part} {label}",
            "distance": distance,
            "moving_time": moving,
            "elapsed_time": elapsed,
            "total_elevation_gain": elevation,
            "type": sport,
            "sport_type": sport,
            "workout_type": workout_type,
            "id": activity_id,
            "start_date": _iso(start),
            # Strava's quirk: local wall time, formatted with a "Z" as if it were UTC.
            "start_date_local": _iso(local.replace(tzinfo=None)),
            "timezone": f"(GMT+{int(offset.total_seconds()) // 3600:02d}:00) {TZ_NAME}",
            "utc_offset": offset.total_seconds(),
            "location_city": None,
            "location_state": None,
            "location_country": "France",
            "achievement_count": rnd.randint(0, 6) if gps else 0,
            "kudos_count": rnd.randint(0, 25),
            "comment_count": rnd.choice((0, 0, 0, 1, 2)),
            "athlete_count": rnd.choice((1, 1, 1, 2, 3)),
            "photo_count": 0,
            "map": {"id": f"a{activity_id}", "summary_polyline": "", "resource_state": 2},
            "trainer": sport == "VirtualRide",
            "commute": sport == "Ride" and rnd.random() < 0.15,
            "manual": False,
            "private": rnd.random() < 0.05,
            "visibility": "everyone",
            "flagged": False,
            "gear_id": {"Run": "g10293847", "Ride": "b9182736"}.get(sport),
            "start_latlng": [],
            "end_latlng": [],
            "average_speed": round(distance / moving, 3) if distance else 0.0,
            "max_speed": round(distance / moving * rnd.uniform(1.3, 2.2), 3) if distance else 0.0,
            "has_heartrate": True,
            "average_heartrate": round(rnd.uniform(118, 162), 1),
            "max_heartrate": float(rnd.randint(165, 192)),
            "heartrate_opt_out": False,
            "display_hide_heartrate_option": True,
            "upload_id": upload_id,
            "upload_id_str": str(upload_id),
            "external_id": f"garmin_ping_{upload_id}",
            "from_accepted_tag": False,
            "pr_count": rnd.choice((0, 0, 0, 1, 2)) if gps else 0,
            "total_photo_count": 0,
            "has_kudoed": False,
            "suffer_score": float(rnd.randint(8, 180)),
        }
        if sport == "Run":
            record["average_cadence"] = round(rnd.uniform(80, 90), 1)
        if sport in ("Ride", "VirtualRide"):
            watts = round(rnd.uniform(140, 230), 1)
            record.update(
                average_cadence=round(rnd.uniform(78, 94), 1),
                average_watts=watts,
                kilojoules=round(watts * moving / 1000, 1),
                device_watts=sport == "VirtualRide",
            )
            if sport == "VirtualRide":
                record.update(max_watts=int(watts * 2.4), weighted_average_watts=int(watts * 1.06))
        if gps:
            route = self._route(distance)
            record["start_latlng"] = [round(route[0][0], 6), round(route[0][1], 6)]
            record["end_latlng"] = [round(route[-1][0], 6), round(route[-1][1], 6)]
            record["map"]["summary_polyline"] = encode_polyline(route)
            record["elev_low"] = round(rnd.uniform(160, 240), 1)
            record["elev_high"] = round(record["elev_low"] + elevation * rnd.uniform(0.3, 0.9), 1)
        if manual:  # what stravalib's recorded activity-manual.3.json shows of a hand entry
            record.update(
                manual=True,
                upload_id=None,
                upload_id_str=None,
                external_id=None,
                end_latlng=None,
                max_speed=0.0,
                has_heartrate=False,
                map={"id": f"a{activity_id}", "summary_polyline": None, "resource_state": 2},
            )
            for field in ("average_heartrate", "max_heartrate", "suffer_score"):
                record.pop(field, None)
        return record

    def _route(self, distance: float) -> list[tuple[float, float]]:
        """A closed loop of about ``distance`` metres near HOME."""
        rnd = self.random
        centre = (HOME[0] + rnd.uniform(-0.08, 0.08), HOME[1] + rnd.uniform(-0.1, 0.1))
        radius = distance / (2 * math.pi) / 111_000  # degrees latitude
        points = []
        for i in range(13):
            angle = 2 * math.pi * i / 12
            wobble = rnd.uniform(0.85, 1.15)
            points.append(
                (
                    centre[0] + radius * wobble * math.sin(angle),
                    centre[1] + radius * wobble * math.cos(angle) / math.cos(math.radians(45.76)),
                )
            )
        return points

    # -- controls for tests and benchmarks -----------------------------------------------------
    def consume(self, requests: int = 0, daily: int | None = None) -> None:
        """Spend quota as another user of the same application would: set this quarter hour's
        usage to ``requests`` and today's to ``daily`` (default: at least ``requests``)."""
        with self.lock:
            self._roll_windows()
            for usage in (self._usage, self._read_usage):
                usage[0] = requests
                usage[1] = max(usage[1], requests) if daily is None else daily

    def usage(self) -> tuple[int, int]:
        """Reads counted in this quarter hour and today."""
        with self.lock:
            self._roll_windows()
            return self._read_usage[0], self._read_usage[1]

    def expire_access_tokens(self) -> None:
        """Make every issued access token expired (the server's view only)."""
        with self.lock:
            for token in self.access_tokens:
                self.access_tokens[token] = self.clock() - 1

    def revoke(self) -> None:
        """The athlete deauthorized the app: every token stops working."""
        with self.lock:
            self.revoked.extend(self.refresh_tokens)
            self.refresh_tokens.clear()
            self.access_tokens.clear()
            self.current_access = None

    def issue_code(self) -> str:
        """An authorization code, as the authorize page would redirect with."""
        with self.lock:
            code = f"emulator-code-{self.random.getrandbits(48):012x}"
            self.codes.add(code)
            return code

    # -- rate limits ---------------------------------------------------------------------------
    def _roll_windows(self) -> None:
        now = self.clock()
        window = (int(now // QUARTER_HOUR_S), int(now // DAY_S))
        if window != self._window:
            for usage in (self._usage, self._read_usage):
                if window[0] != self._window[0]:
                    usage[0] = 0
                if window[1] != self._window[1]:
                    usage[1] = 0
            self._window = window

    def _answer(self, request: Request) -> Response:
        if not request.path.startswith("/api/"):
            return super()._answer(request)
        with self.lock:
            self._roll_windows()
            read = request.method == "GET"
            over = any(u >= lim for u, lim in zip(self._usage, self.limits, strict=True)) or (
                read
                and any(u >= lim for u, lim in zip(self._read_usage, self.read_limits, strict=True))
            )
            # Strava counts every request, the refused ones included.
            for usage in (self._usage, self._read_usage) if read else (self._usage,):
                usage[0] += 1
                usage[1] += 1
            headers = {
                "X-RateLimit-Limit": f"{self.limits[0]},{self.limits[1]}",
                "X-RateLimit-Usage": f"{self._usage[0]},{self._usage[1]}",
                "X-ReadRateLimit-Limit": f"{self.read_limits[0]},{self.read_limits[1]}",
                "X-ReadRateLimit-Usage": f"{self._read_usage[0]},{self._read_usage[1]}",
            }
        response = Response(429, _RATE_LIMITED) if over else super()._answer(request)
        response.headers = {**headers, **response.headers}
        return response

    # -- OAuth ---------------------------------------------------------------------------------
    def _issue(self) -> dict[str, Any]:
        """Rotate the refresh token; keep the access token unless it is in its last hour."""
        now = self.clock()
        access = self.current_access
        if access is None or self.access_tokens.get(access, 0) - now <= RENEW_WITHIN_S:
            access = f"emulator-access-{self.random.getrandbits(64):016x}"
            self.access_tokens[access] = now + self.token_lifetime
            self.current_access = access
        refresh = f"emulator-refresh-{self.random.getrandbits(64):016x}"
        self.refresh_tokens.add(refresh)
        expires_at = int(self.access_tokens[access])
        return {
            "token_type": "Bearer",
            "access_token": access,
            "expires_at": expires_at,
            "expires_in": max(0, expires_at - int(now)),
            "refresh_token": refresh,
        }

    def _token(self, request: Request, _: re.Match[str]) -> Response:
        form = request.form()
        if form.get("client_id") != self.client_id:
            return Response(400, _bad_request("Application", "client_id"))
        if form.get("client_secret") != self.client_secret:
            return Response(401, _auth_error("Application", "client_secret"))
        grant = form.get("grant_type")
        with self.lock:
            if grant == "refresh_token":
                token = form.get("refresh_token", "")
                if token not in self.refresh_tokens:
                    if token in self.revoked:
                        self.stale_refreshes.append(token)
                    return Response(400, _bad_request("RefreshToken", "refresh_token"))
                self.refresh_tokens.discard(token)  # rotated: the old one is dead from now on
                self.revoked.append(token)
                self.refreshes += 1
                return Response(200, self._issue())
            if grant == "authorization_code":
                code = form.get("code", "")
                if code not in self.codes:
                    return Response(400, _bad_request("AuthorizationCode", "code"))
                self.codes.discard(code)  # single use
                summary = {
                    k: self.athlete[k]
                    for k in ("id", "username", "firstname", "lastname", "city", "country")
                }
                return Response(200, {**self._issue(), "athlete": {**summary, "resource_state": 2}})
        return Response(400, _bad_request("GrantType", "grant_type"))

    def _authorize(self, request: Request, _: re.Match[str]) -> Response:
        """The consent page, already approved: redirect with a code, as Strava does."""
        if request.query.get("client_id") != self.client_id:
            return Response(400, _bad_request("Application", "client_id"))
        redirect = request.query.get("redirect_uri", "")
        query = urlencode(
            {
                "state": request.query.get("state", ""),
                "code": self.issue_code(),
                "scope": request.query.get("scope", "read"),
            }
        )
        return Response(302, None, {"Location": f"{redirect}?{query}"})

    def _deauthorize(self, request: Request, _: re.Match[str]) -> Response:
        if not self._authorized(request):
            return Response(401, _auth_error("Athlete", "access_token"))
        self.revoke()
        return Response(200, {"access_token": bearer(request)})

    def _authorized(self, request: Request) -> bool:
        token = bearer(request)
        with self.lock:
            expires = self.access_tokens.get(token or "")
            return expires is not None and expires > self.clock()

    # -- API -----------------------------------------------------------------------------------
    def _get_athlete(self, request: Request, _: re.Match[str]) -> Response:
        if not self._authorized(request):
            return Response(401, _auth_error("Athlete", "access_token"))
        with self.lock:
            return Response(200, self.drifted([copy.deepcopy(self.athlete)])[0])

    def _list_activities(self, request: Request, _: re.Match[str]) -> Response:
        if not self._authorized(request):
            return Response(401, _auth_error("Athlete", "access_token"))
        try:
            after = _int_or_none(request.query.get("after"))
            before = _int_or_none(request.query.get("before"))
            page = max(1, _int_or_none(request.query.get("page")) or 1)
            per_page = _int_or_none(request.query.get("per_page")) or DEFAULT_PAGE
        except ValueError as exc:
            return Response(400, {"message": "Bad Request", "errors": [{"code": str(exc)}]})
        per_page = min(max(per_page, 1), MAX_PAGE)  # Strava silently caps per_page
        with self.lock:
            rows = self._window_of(after, before)
            if after is None:
                rows = rows[::-1]  # newest first unless `after` is given
            start = 0 if self.loop else (page - 1) * per_page
            # Not copied: served records are only read, and stored ones change only between runs.
            return Response(200, self.drifted(rows[start : start + per_page]))

    # -- laps, streams, clubs, gear ------------------------------------------------------------
    def _activity(self, activity_id: int) -> dict[str, Any] | None:
        """The stored activity ``activity_id`` (callers hold the lock), or None."""
        return next((a for a in self.activities if a["id"] == activity_id), None)

    def laps_of(self, activity_id: int) -> list[dict[str, Any]]:
        """The laps Strava would list for the activity (``[]`` for an unknown one)."""
        with self.lock:
            activity = self._activity(activity_id)
            return [] if activity is None else _laps(activity)

    def streams_of(self, activity_id: int) -> dict[str, dict[str, Any]] | None:
        """Every stream the activity has, keyed by type; None where Strava answers 404."""
        with self.lock:
            activity = self._activity(activity_id)
            return None if activity is None else copy.deepcopy(self._streams_of(activity))

    def _streams_of(self, activity: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
        """:func:`_streams`, kept for the activity as it is (callers hold the lock): the series
        are generated point by point, 10 ms for a long ride, and the same every time."""
        key = orjson.dumps(activity, option=orjson.OPT_SORT_KEYS)
        if key not in self._streams:
            self._streams[key] = _streams(activity)
        return self._streams[key]

    def _activity_laps(self, request: Request, match: re.Match[str]) -> Response:
        """``GET /activities/{id}/laps``: stravalib sends ``page``/``per_page``, which Strava
        ignores here (the whole list comes at once)."""
        if not self._authorized(request):
            return Response(401, _auth_error("Athlete", "access_token"))
        with self.lock:
            activity = self._activity(int(match.group(1)))
            if activity is None:
                return Response(404, _NOT_FOUND)
            self.answered.append(request.path)
            return Response(200, self.drifted(_laps(activity)))

    def _activity_streams(self, request: Request, match: re.Match[str]) -> Response:
        """``GET /activities/{id}/streams?keys=...&key_by_type=true``.

        Only the streams the activity has are sent, among those asked for (stravalib: "If the
        stream is not available for a particular activity it will be left out"): no
        ``heartrate`` without a strap, no ``latlng``/``altitude`` indoors, no ``watts``
        without a power meter. A manual entry has no streams at all: Strava answers 404
        "Resource Not Found" (seen by rStrava#72 and roznet/connectstats#54).
        """
        if not self._authorized(request):
            return Response(401, _auth_error("Athlete", "access_token"))
        keys = [k for k in request.query.get("keys", "").split(",") if k]
        by_type = request.query.get("key_by_type", "").lower() == "true"
        with self.lock:
            activity = self._activity(int(match.group(1)))
            streams = None if activity is None else self._streams_of(activity)
        if streams is None:
            return Response(404, _NOT_FOUND)
        with self.lock:
            self.answered.append(request.path)
        # A dict keyed by type with key_by_type=true (stravalib#383, a real response), the
        # documented array of typed streams otherwise.
        chosen = {t: s for t, s in streams.items() if not keys or t in keys}
        if by_type:
            return Response(200, chosen)
        return Response(200, [{"type": t, **s} for t, s in chosen.items()])

    def _athlete_clubs(self, request: Request, _: re.Match[str]) -> Response:
        if not self._authorized(request):
            return Response(401, _auth_error("Athlete", "access_token"))
        try:
            page = max(1, _int_or_none(request.query.get("page")) or 1)
            per_page = _int_or_none(request.query.get("per_page")) or DEFAULT_PAGE
        except ValueError as exc:
            return Response(400, {"message": "Bad Request", "errors": [{"code": str(exc)}]})
        per_page = min(max(per_page, 1), MAX_PAGE)
        with self.lock:
            start = 0 if self.loop else (page - 1) * per_page
            return Response(200, self.drifted(copy.deepcopy(self.clubs[start : start + per_page])))

    def _gear(self, request: Request, match: re.Match[str]) -> Response:
        """``GET /gear/{id}``: a DetailedGear (shape: the recorded example in stravalib's
        ``strava_swagger.json``); an id the athlete does not own is a 404."""
        if not self._authorized(request):
            return Response(401, _auth_error("Athlete", "access_token"))
        with self.lock:
            owned = {g["id"]: g for g in (*self.athlete["bikes"], *self.athlete["shoes"])}
            summary = owned.get(match.group(1))
            if summary is None:
                return Response(404, _NOT_FOUND)
            return Response(200, self.drifted([_detailed_gear(summary)])[0])


def _int_or_none(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except ValueError:
        raise ValueError(f"invalid number {value!r}") from None


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


# -- laps, streams, clubs, gear (pure, deterministic per activity) -----------------------------

_NOT_FOUND = {
    "message": "Resource Not Found",
    "errors": [{"resource": "Activity", "field": "id", "code": "invalid"}],
}
STREAM_POINT_S = 4  # smart recording: about a point every few seconds
MAX_STREAM_POINTS = 2_500  # keeps an emulated streams body under ~200 KB


def _laps(activity: dict[str, Any]) -> list[dict[str, Any]]:
    """The activity's laps, as ``GET /activities/{id}/laps`` lists them (fields: the recorded
    example in stravalib's ``strava_swagger.json``).

    A run auto-laps every kilometre and a ride every 5 km; anything recorded without laps still
    gets one lap, the whole activity (javastravav3api#105: "returns 1 lap; there should not be
    any"). A manual entry has none.
    """
    if activity.get("manual"):
        return []
    rnd = random.Random(activity["id"])
    distance = float(activity["distance"])
    moving, elapsed = int(activity["moving_time"]), int(activity["elapsed_time"])
    step = {"Run": 1000.0, "Ride": 5000.0}.get(activity["type"])
    count = max(1, math.ceil(distance / step)) if step and distance else 1
    start = datetime.fromisoformat(activity["start_date"])
    local = datetime.fromisoformat(activity["start_date_local"].rstrip("Z"))
    points = _points(activity)
    laps: list[dict[str, Any]] = []
    offset = 0
    for index in range(count):
        share = (min(step, distance - index * step) / distance) if count > 1 and step else 1.0
        lap_moving = max(1, round(moving * share))
        lap_elapsed = max(lap_moving, round(elapsed * share))
        lap_distance = round(distance * share, 1)
        first = round(points * offset / max(1, elapsed))
        last = min(points - 1, round(points * (offset + lap_elapsed) / max(1, elapsed)))
        lap: dict[str, Any] = {
            "id": activity["id"] * 100 + index + 1,
            "resource_state": 2,
            "name": f"Lap {index + 1}",
            "activity": {"id": activity["id"], "resource_state": 1},
            "athlete": {"id": ATHLETE_ID, "resource_state": 1},
            "elapsed_time": lap_elapsed,
            "moving_time": lap_moving,
            "start_date": _iso(start + timedelta(seconds=offset)),
            "start_date_local": _iso(local + timedelta(seconds=offset)),
            "distance": lap_distance,
            "start_index": first,
            "end_index": last,
            "total_elevation_gain": round(float(activity["total_elevation_gain"]) * share, 1),
            "average_speed": round(lap_distance / lap_moving, 2) if lap_distance else 0.0,
            "max_speed": round(lap_distance / lap_moving * rnd.uniform(1.1, 1.6), 2)
            if lap_distance
            else 0.0,
            "lap_index": index + 1,
            "split": index + 1,
        }
        if "average_cadence" in activity:
            lap["average_cadence"] = round(activity["average_cadence"] + rnd.uniform(-3, 3), 1)
        if "average_watts" in activity:
            lap["device_watts"] = activity.get("device_watts", False)
            lap["average_watts"] = round(activity["average_watts"] * rnd.uniform(0.85, 1.15), 1)
        if activity.get("has_heartrate"):
            lap["average_heartrate"] = round(activity["average_heartrate"] + rnd.uniform(-8, 8), 1)
            lap["max_heartrate"] = float(activity["max_heartrate"] - rnd.randint(0, 10))
        if activity["type"] == "Run":
            lap["pace_zone"] = rnd.randint(1, 5)
        laps.append(lap)
        offset += lap_elapsed
    return laps


def _points(activity: dict[str, Any]) -> int:
    return max(2, min(MAX_STREAM_POINTS, int(activity["elapsed_time"]) // STREAM_POINT_S))


def _streams(activity: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """Every stream the activity has, keyed by type, or None for a manual entry (no file).

    Which ones exist follows what recorded it: ``latlng``, ``altitude`` and ``grade_smooth``
    need GPS, ``heartrate`` a strap (``has_heartrate``), ``cadence`` a footpod or cadence
    sensor, ``watts`` a power meter (``device_watts``: estimated power has no stream), ``temp``
    a device with a thermometer (outdoor activities here).
    """
    if activity.get("manual"):
        return None
    rnd = random.Random(activity["id"] * 31 + 7)
    n = _points(activity)
    elapsed = int(activity["elapsed_time"])
    distance = float(activity["distance"])
    gps = bool(activity.get("start_latlng"))
    times = sorted({round(elapsed * i / (n - 1)) for i in range(n)})
    n = len(times)
    series = "distance" if distance else "time"
    out: dict[str, list[Any]] = {"time": times}
    if distance:
        out["distance"] = [round(distance * t / elapsed, 1) for t in times]
    if gps:
        lat, lng = activity["start_latlng"]
        heading = rnd.uniform(0, 2 * math.pi)
        track = []
        for i in range(n):
            angle = heading + 2 * math.pi * i / n
            radius = distance / (2 * math.pi) / 111_000
            track.append(
                [
                    round(lat + radius * (math.sin(angle) - math.sin(heading)), 6),
                    round(lng + radius * (math.cos(angle) - math.cos(heading)) / 0.7, 6),
                ]
            )
        out["latlng"] = track
        base = float(activity.get("elev_low", 180.0))
        out["altitude"] = [
            round(base + 20 * math.sin(i / 40) + rnd.uniform(0, 1), 1) for i in range(n)
        ]
    if distance:
        mean = distance / max(1, int(activity["moving_time"]))
        out["velocity_smooth"] = [round(max(0.0, mean + rnd.uniform(-0.6, 0.6)), 1) for _ in times]
    if activity.get("has_heartrate"):
        low = int(activity.get("average_heartrate", 130)) - 15
        out["heartrate"] = [min(200, low + i * 25 // n + rnd.randint(0, 8)) for i in range(n)]
    if "average_cadence" in activity:
        cadence = int(activity["average_cadence"])
        out["cadence"] = [cadence + rnd.randint(-4, 4) for _ in times]
    if activity.get("device_watts"):
        watts = int(activity.get("average_watts", 180))
        out["watts"] = [max(0, watts + rnd.randint(-60, 60)) for _ in times]
    if gps:
        out["temp"] = [rnd.randint(14, 24)] * n
    out["moving"] = [rnd.random() > 0.03 for _ in times]
    if gps:
        out["grade_smooth"] = [round(rnd.uniform(-4, 4), 1) for _ in times]
    return {
        kind: {"data": data, "series_type": series, "original_size": n, "resolution": "high"}
        for kind, data in out.items()
    }


def _detailed_gear(summary: dict[str, Any]) -> dict[str, Any]:
    """A DetailedGear for one of the athlete's summary gear entries."""
    bike = summary["id"].startswith("b")
    brand, model = summary["name"].split(" ", 1)
    gear: dict[str, Any] = {
        "id": summary["id"],
        "primary": summary["primary"],
        "name": summary["name"],
        "nickname": summary["nickname"],
        "resource_state": 3,
        "retired": summary["retired"],
        "distance": summary["distance"],
        "converted_distance": summary["converted_distance"],
        "brand_name": brand,
        "model_name": model,
        "description": "My Bike." if bike else "",
    }
    if bike:
        gear["frame_type"] = 3  # road
        gear["weight"] = 8.1
    else:
        gear["notification_distance"] = 800  # km: Strava reminds the athlete to replace them
    return gear


def _seed_clubs() -> list[dict[str, Any]]:
    """The athlete's clubs, as ``GET /athlete/clubs`` lists SummaryClubs (fields: the recorded
    example in stravalib's ``strava_swagger.json``). One is a private club the athlete asked to
    join and is not yet admitted to: Strava lists it with ``membership: "pending"``, and a club
    without a vanity URL has an empty ``url`` and no cover photo."""
    base = "https://dgalywyr863hv.cloudfront.net/pictures/clubs"
    clubs = [
        (
            231407,
            "The Strava Club",
            "other",
            "San Francisco",
            "California",
            "United States",
            False,
            93151,
            True,
            "strava",
            "member",
        ),
        (
            568412,
            "Lyon Trail Running",
            "running",
            "Lyon",
            "Auvergne-Rhône-Alpes",
            "France",
            False,
            2318,
            False,
            "lyontrail",
            "member",
        ),
        (
            1093377,
            "Gravel du Beaujolais",
            "cycling",
            "Villefranche-sur-Saône",
            "Auvergne-Rhône-Alpes",
            "France",
            True,
            41,
            False,
            "",
            "pending",
        ),
    ]
    out = []
    for ident, name, sport, city, state, country, private, members, verified, url, status in clubs:
        photo = None if not url else f"{base}/{ident}/5098428/4/large.jpg"
        out.append(
            {
                "id": ident,
                "resource_state": 2,
                "name": name,
                "profile_medium": f"{base}/{ident}/5319085/1/medium.jpg",
                "profile": f"{base}/{ident}/5319085/1/large.jpg",
                "cover_photo": photo,
                "cover_photo_small": photo and photo.replace("large", "small"),
                "activity_types": {"running": ["Run", "Hike"], "cycling": ["Ride"]}.get(sport, []),
                "sport_type": sport,
                "city": city,
                "state": state,
                "country": country,
                "private": private,
                "member_count": members,
                "featured": False,
                "verified": verified,
                "url": url,
                "membership": status,
                "admin": False,
                "owner": False,
            }
        )
    return out
