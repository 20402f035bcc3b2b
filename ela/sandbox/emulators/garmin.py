"""Garmin Connect emulator: what garminconnect 0.3.2 calls, on one loopback port.

SSO, under ``/sso`` (GARMIN_SSO_URL):

- ``POST /mobile/api/login``: the iOS-app JSON login the library tries first (with curl_cffi,
  then requests). Answers SUCCESSFUL with a service ticket, MFA_REQUIRED (and a session cookie)
  when MFA is on, or INVALID_USERNAME_PASSWORD.
- ``POST /mobile/api/mfa/verifyCode`` (and ``/portal/api/mfa/verifyCode``, the library's
  fallback): the MFA step, tied to the login by the session cookie.
- ``POST /di-oauth2-service/oauth/token``: the DI OAuth2 endpoint (``diauth.garmin.com`` in
  reality; the connector points the library's ``DI_TOKEN_URL`` here): service ticket →
  tokens, and refresh (the refresh token rotates, so a refresh must be persisted).
- The browser flows (SSO widget, portal) answer 429, as Cloudflare does to scripted clients:
  the library then gives up on them at once instead of sleeping through its 3 to 20 s anti-WAF
  delays. Only the mobile flow is modelled.

Connect API, under ``/connectapi`` (GARMIN_API_URL), each behind a bearer check (401 for an
unknown or expired access token): the social profile and user settings (read at login), the
activity search by date (``start``/``limit`` paging, newest first), daily sleep and daily heart
rate (one day per call, by display name).

Data: a year of days ending on ``last_day`` (default: today in the user's time zone). A day's
sleep and heart rate are generated on first request from ``(seed, day)``, so they are the same
whatever order days are asked in; days outside the year answer Garmin's "no data" shapes.
Activities are generated up front, a few hundred over the year. Days in
:attr:`GarminEmulator.no_data_days` (a watch not worn, a flat battery) answer the no-data shapes
too, as Garmin does for such a day: the record, its calendarDate, and nulls where the
measurements would be.

The emulator has a clock (``clock``, default the real one) and the user a time zone
(``timezone``, served in the profile settings as ``timeZone``): ``calendarDate`` is the user's
local date, and nothing shows before it happened and synced (``sync_lag``: the watch syncs
that long after). Today's heart rate holds the samples up to now, a night's sleep shows once
the user woke up, an activity once it started; days after today have no data.

With ``loop`` on, the activity search wraps ``start`` round two pages (page 3 is page 1 again,
and so on): paging never reaches a short page.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any
from zoneinfo import ZoneInfo

from ela.connectors.garmin import store_tokens
from ela.sandbox.emulators.server import Emulator, Request, Response, bearer, unauthorized
from ela.tokens import TokenStore

API_PREFIX = "/connectapi"
SSO_PREFIX = "/sso"
DI_TOKEN_PATH = "/di-oauth2-service/oauth/token"
DI_GRANT_TYPE = "https://connectapi.garmin.com/di-oauth2-service/oauth/grant/service_ticket"
CLIENT_ID = "GARMIN_CONNECT_MOBILE_ANDROID_DI_2025Q2"  # the first DI client id the library tries
USER_PK = 81234567
DISPLAY_NAME = "3f9c2a71-ela-runner"
TIME_ZONE = "Europe/Brussels"  # the seeded user's (their profile's location is Brussels)
HR_SAMPLE_MS = 120_000  # Garmin keeps one all-day heart-rate sample every 2 minutes
# Shapes from garminconnect's recorded cassettes (tests/cassettes/test_steps_data.yaml,
# test_all_day_stress.yaml, test_hrv_data.yaml, test_no_hrv_data.yaml, test_floors.yaml,
# test_body_battery.yaml) and the library's URLs (garminconnect 0.3.2); fields the cassettes do
# not show are plausible ones, and the connector reads none of them but the days.
DEVICE_ID = 3_442_975_842  # the watch the activities name
STRESS_SAMPLE_MS = 180_000  # Garmin's all-day stress: one sample every 3 minutes
QUARTER_MS = 900_000  # steps and floors: one interval every 15 minutes
EPOCH = "1970-01-01T00:00:00.000"  # what a no-data day's steps and body battery are stamped

_SPORTS = [  # typeKey, typeId, parentTypeId, name, share, (km/h low, high), (min low, high)
    ("running", 1, 17, "Run", 40, (9.0, 13.0), (25, 70)),
    ("cycling", 2, 17, "Ride", 20, (20.0, 32.0), (40, 150)),
    ("walking", 9, 17, "Walk", 15, (4.5, 6.0), (20, 90)),
    ("lap_swimming", 27, 26, "Pool Swim", 10, (2.0, 3.5), (25, 60)),
    ("strength_training", 13, 29, "Strength", 10, (0.0, 0.0), (30, 60)),
    ("hiking", 3, 17, "Hike", 5, (3.5, 5.5), (90, 300)),
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _gmt(moment: datetime) -> str:
    """Garmin's ``...TimestampGMT`` string form: ``2025-01-02T06:12:00.0``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ".0"


def _ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


def _gmt_ms(ms: int) -> str:
    return _gmt(datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None))


def _with_samples(record: dict[str, Any], values: list[list[Any]]) -> dict[str, Any]:
    """``record`` holding these heart-rate samples (the day so far), or none."""
    seen = [bpm for _, bpm in values if bpm is not None]
    if not values:
        return {
            **record,
            **dict.fromkeys(
                (
                    "maxHeartRate",
                    "minHeartRate",
                    "restingHeartRate",
                    "lastSevenDaysAvgRestingHeartRate",
                    "heartRateValueDescriptors",
                    "heartRateValues",
                )
            ),
        }
    return {
        **record,
        "maxHeartRate": max(seen, default=None),
        "minHeartRate": min(seen, default=None),
        "heartRateValues": values,
    }


class GarminEmulator(Emulator):
    """Garmin SSO + DI token endpoint + Connect API; point the connector at it with
    :meth:`environ` and seed the worker's token store with :meth:`prepare_tokens`.

    Attributes:
        mfa: whether the login asks for an MFA code (:attr:`mfa_code`).
        access_ttl: seconds an issued access token is valid.
    """

    name = "garmin"

    def __init__(
        self,
        *,
        days: int = 365,
        last_day: date | None = None,
        activities: int = 420,
        username: str = "runner@example.com",
        password: str = "correct horse battery staple",
        mfa: bool = False,
        mfa_code: str = "482913",
        access_ttl: float = 3600.0,
        seed: int = 7,
        timezone: str = TIME_ZONE,
        clock: Callable[[], datetime] | None = None,
        sync_lag: timedelta = timedelta(0),
    ) -> None:
        super().__init__(seed)
        self.seed = seed
        self.timezone = timezone
        self.tz = ZoneInfo(timezone)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sync_lag = sync_lag
        self._last_day = last_day
        self.first_day = self.last_day - timedelta(days=days - 1)
        self.username = username
        self.password = password
        self.mfa = mfa
        self.mfa_code = mfa_code
        self.access_ttl = access_ttl
        self.access_tokens: dict[str, float] = {}  # token → expiry (epoch seconds)
        self.refresh_tokens: dict[str, str] = {}  # token → DI client id
        self.tickets: dict[str, str] = {}  # service ticket → service URL
        self.mfa_sessions: set[str] = set()
        self._serial = itertools.count(1)
        self.activities: list[dict[str, Any]] = []
        self._sleep: dict[str, dict[str, Any]] = {}
        self._heart_rate: dict[str, dict[str, Any]] = {}
        self.no_data_days: set[date] = set()  # days inside the year without measurements
        self.add_activities(activities)

        sso, api = SSO_PREFIX, API_PREFIX
        self.route("POST", f"{sso}/mobile/api/login", self._login)
        self.route("POST", f"{sso}/(?:mobile|portal)/api/mfa/verifyCode", self._verify_mfa)
        self.route("POST", f"{sso}{DI_TOKEN_PATH}", self._token)
        for method in ("GET", "POST"):  # the browser flows: blocked, as for scripted clients
            self.route(method, f"{sso}/(?:sso/.*|portal/sso/.*|portal/api/login)", self._blocked)
        self.route("GET", f"{api}/userprofile-service/socialProfile", self._api(self._profile))
        self.route(
            "GET", f"{api}/userprofile-service/userprofile/user-settings", self._api(self._settings)
        )
        self.route(
            "GET", f"{api}/userprofile-service/userprofile/settings", self._api(self._preferences)
        )
        self.route(
            "GET",
            f"{api}/activitylist-service/activities/search/activities",
            self._api(self._search_activities),
        )
        self.route(
            "GET",
            f"{api}/wellness-service/wellness/dailySleepData/(?P<name>[^/]+)",
            self._api(self._daily(self.sleep_for)),
        )
        self.route(
            "GET",
            f"{api}/wellness-service/wellness/dailyHeartRate/(?P<name>[^/]+)",
            self._api(self._daily(self.heart_rate_for)),
        )
        self._init_more()

    # -- wiring --------------------------------------------------------------------------------
    def environ(self) -> dict[str, str]:
        return {
            "GARMIN_API_URL": f"{self.url}{API_PREFIX}",
            "GARMIN_SSO_URL": f"{self.url}{SSO_PREFIX}",
            "GARMIN_USERNAME": self.username,
            "GARMIN_PASSWORD": self.password,
        }

    def prepare_tokens(self, store: TokenStore, *, expired: bool = False) -> None:
        """Store tokens this emulator accepts, as ``ela auth garmin`` would.

        Args:
            store: the worker's token store.
            expired: issue an access token that has already expired (its refresh token
                works), so the first run must refresh and write the new tokens back.
        """
        tokens = self.issue_tokens(CLIENT_ID, ttl=-60.0 if expired else None)
        with store.locked("garmin"):
            store_tokens(
                store,
                json.dumps(
                    {
                        "di_token": tokens["access_token"],
                        "di_refresh_token": tokens["refresh_token"],
                        "di_client_id": CLIENT_ID,
                    }
                ),
            )

    # -- the clock -----------------------------------------------------------------------------
    @property
    def last_day(self) -> date:
        """The last day with data: as given, else today in the user's time zone."""
        return self._last_day or self.clock().astimezone(self.tz).date()

    def synced_until(self) -> datetime:
        """What has happened and synced by now (naive GMT, as the records' timestamps)."""
        return (self.clock() - self.sync_lag).astimezone(UTC).replace(tzinfo=None)

    def _gmt(self, local: datetime) -> datetime:
        """A naive local wall time of the user → naive GMT."""
        return local.replace(tzinfo=self.tz).astimezone(UTC).replace(tzinfo=None)

    # -- tokens --------------------------------------------------------------------------------
    def issue_tokens(self, client_id: str, ttl: float | None = None) -> dict[str, Any]:
        """A DI token response: a JWT access token (``exp``, ``client_id``) and a refresh token."""
        ttl = self.access_ttl if ttl is None else ttl
        now = int(time.time())
        serial = next(self._serial)
        claims = {
            "scope": [
                "ATP_READ",
                "COMMUNITY_COURSE_READ",
                "CONNECT_READ",
                "CONNECT_WRITE",
                "DI_OAUTH_2_AUTHORIZATION_CODE_CREATE",
                "GARMINPAY_READ",
                "GHS_SAMD",
                "GOLF_API_READ",
                "INSIGHTS_READ",
            ],
            "iss": "https://diauth.garmin.com",
            "revocation_eligibility": ["GLOBAL_SIGNOUT"],
            "client_type": "UNDEFINED",
            "exp": now + int(ttl),
            "iat": now,
            "garmin_guid": "5d7e4a9c-1b2f-4c3d-9e8f-a1b2c3d4e5f6",
            "jti": f"{serial:08x}-ela-emulator",
            "client_id": client_id,
        }
        header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "di-oauth-signer"}).encode())
        body = _b64(json.dumps(claims).encode())
        signature = _b64(hashlib.sha256(f"{header}.{body}".encode()).digest() * 8)
        access = f"{header}.{body}.{signature}"
        refresh = _b64(hashlib.sha256(f"refresh-{self.seed}-{serial}".encode()).digest() * 3)
        with self.lock:
            self.access_tokens[access] = now + ttl
            self.refresh_tokens[refresh] = client_id
        return {
            "scope": " ".join(claims["scope"]),  # type: ignore[arg-type]
            "jti": claims["jti"],
            "access_token": access,
            "token_type": "bearer",
            "refresh_token": refresh,
            "expires_in": int(ttl),
            "refresh_token_expires_in": 7_776_000,
        }

    def expire_access_tokens(self) -> None:
        """Invalidate every access token (the next API call gets 401; a refresh fixes it)."""
        with self.lock:
            self.access_tokens.clear()

    def revoke_refresh_tokens(self) -> None:
        """Invalidate every refresh token (only a new login fixes it)."""
        with self.lock:
            self.refresh_tokens.clear()

    # -- data ----------------------------------------------------------------------------------
    def add_activities(self, count: int, on: date | None = None) -> list[dict[str, Any]]:
        """Add ``count`` activities, spread over the seeded year or all on day ``on``."""
        added = []
        span = (self.last_day - self.first_day).days + 1
        with self.lock:
            for n in range(count):
                day = on or self.first_day + timedelta(days=n * span // max(count, 1))
                added.append(self._activity(day))
            self.activities.extend(added)
            self.activities.sort(key=lambda a: (a["startTimeLocal"], a["activityId"]), reverse=True)
        return added

    def activities_between(self, first: date, last: date) -> list[dict[str, Any]]:
        """What the activity search returns for the window (days inclusive), newest first:
        the activities started (and synced) by now."""
        until = _ms(self.synced_until())
        with self.lock:
            return [
                a
                for a in self.activities
                if first.isoformat() <= a["startTimeLocal"][:10] <= last.isoformat()
                and a["beginTimestamp"] <= until
            ]

    def sleep_for(self, day: date | str) -> dict[str, Any]:
        """The day's sleep record, as ``dailySleepData`` answers it now: "no data" until the
        night is over and synced."""
        when = date.fromisoformat(str(day))
        if not self._has_data(when):  # not kept: the day may come
            return self._no_sleep(when)
        record = self._made_once(self._sleep, when, self._make_sleep)
        end = record["dailySleepDTO"].get("sleepEndTimestampGMT")
        if end is not None and end > _ms(self.synced_until()):
            return self._no_sleep(when)
        return record

    def heart_rate_for(self, day: date | str) -> dict[str, Any]:
        """The day's heart-rate record, as ``dailyHeartRate`` answers it now: the samples
        taken (and synced) so far."""
        when = date.fromisoformat(str(day))
        if not self._has_data(when):  # not kept: the day may come
            return self._make_heart_rate(when)
        record = self._made_once(self._heart_rate, when, self._make_heart_rate)
        values = record["heartRateValues"]
        until = _ms(self.synced_until())
        if not values or values[-1][0] <= until:
            return record
        return _with_samples(record, [v for v in values if v[0] <= until])

    def set_sleep(self, day: date | str, record: dict[str, Any]) -> None:
        with self.lock:
            self._sleep[str(day)] = record

    def set_heart_rate(self, day: date | str, record: dict[str, Any]) -> None:
        with self.lock:
            self._heart_rate[str(day)] = record

    def _made_once(
        self,
        kept: dict[str, dict[str, Any]],
        day: date,
        make: Callable[[date], dict[str, Any]],
    ) -> dict[str, Any]:
        """The day's record in ``kept``, made by ``make`` the first time it is asked for."""
        with self.lock:
            if str(day) not in kept:
                kept[str(day)] = make(day)
            return kept[str(day)]

    def _has_data(self, day: date) -> bool:
        return self.first_day <= day <= self.last_day and day not in self.no_data_days

    def _day_random(self, kind: str, day: date) -> random.Random:
        return random.Random(f"{self.seed}:{kind}:{day.isoformat()}")

    def _activity(self, day: date) -> dict[str, Any]:
        """One activity on ``day`` (local), as the activity search lists it."""
        rng = self.random
        weights = [s[4] for s in _SPORTS]
        key, type_id, parent, label, _, (kmh_lo, kmh_hi), (min_lo, min_hi) = rng.choices(
            _SPORTS, weights
        )[0]
        serial = len(self.activities) + next(self._serial)
        start_local = datetime.combine(day, datetime.min.time()) + timedelta(
            hours=rng.choice([6, 7, 7, 12, 17, 18, 18, 19]), minutes=rng.randrange(60)
        )
        start_gmt = self._gmt(start_local)
        duration = rng.uniform(min_lo, min_hi) * 60
        speed = rng.uniform(kmh_lo, kmh_hi) / 3.6
        distance = round(speed * duration, 1)
        moving = duration * rng.uniform(0.9, 0.99)
        avg_hr = rng.randint(118, 158)
        part = (
            "Morning" if start_local.hour < 12 else "Lunch" if start_local.hour < 14 else "Evening"
        )
        return {
            "activityId": 17_000_000_000 + serial * 7919,
            "activityName": f"Brussels - {part} {label}",
            "description": None,
            "startTimeLocal": start_local.strftime("%Y-%m-%d %H:%M:%S"),
            "startTimeGMT": start_gmt.strftime("%Y-%m-%d %H:%M:%S"),
            "activityType": {
                "typeId": type_id,
                "typeKey": key,
                "parentTypeId": parent,
                "isHidden": False,
                "restricted": False,
                "trimmable": True,
            },
            "eventType": {"typeId": 9, "typeKey": "uncategorized", "sortOrder": 10},
            "distance": distance,
            "duration": round(duration, 3),
            "elapsedDuration": round(duration * rng.uniform(1.0, 1.08), 3),
            "movingDuration": round(moving, 3),
            "elevationGain": round(rng.uniform(0, 400) if distance else 0.0, 1),
            "elevationLoss": round(rng.uniform(0, 400) if distance else 0.0, 1),
            "averageSpeed": round(speed, 4),
            "maxSpeed": round(speed * rng.uniform(1.2, 1.8), 4),
            "startLatitude": round(50.8503 + rng.uniform(-0.05, 0.05), 7) if distance else None,
            "startLongitude": round(4.3517 + rng.uniform(-0.05, 0.05), 7) if distance else None,
            "hasPolyline": bool(distance),
            "hasImages": False,
            "ownerId": USER_PK,
            "ownerDisplayName": DISPLAY_NAME,
            "ownerFullName": "Ela Runner",
            "calories": round(duration / 60 * rng.uniform(7, 12), 1),
            "bmrCalories": round(duration / 60 * 1.1, 1),
            "averageHR": float(avg_hr),
            "maxHR": float(avg_hr + rng.randint(12, 30)),
            "steps": int(duration * 2.7) if key in ("running", "walking", "hiking") else None,
            "userPro": False,
            "hasVideo": False,
            "timeZoneId": 124,
            "beginTimestamp": _ms(start_gmt),
            "sportTypeId": 1 if key == "running" else 2 if key == "cycling" else 0,
            "aerobicTrainingEffect": round(rng.uniform(1.5, 4.5), 1),
            "anaerobicTrainingEffect": round(rng.uniform(0.0, 2.5), 1),
            "deviceId": 3_442_975_842,
            "manufacturer": "GARMIN",
            "lapCount": max(1, int(distance // 1000)),
            "privacy": {"typeId": 2, "typeKey": "private"},
            "vO2MaxValue": 52.0 if key == "running" else None,
            "favorite": False,
            "pr": False,
            "manualActivity": False,
            "autoCalcCalories": False,
            "elevationCorrected": False,
            "atpActivity": False,
            "parent": False,
            "purposeful": False,
            "decoDive": False,
            "hasSplits": key == "running",
            "summarizedDiveInfo": {"summarizedDiveGases": []},
        }

    @staticmethod
    def _no_sleep(day: date) -> dict[str, Any]:
        return {
            "dailySleepDTO": {
                "id": None,
                "userProfilePK": USER_PK,
                "calendarDate": day.isoformat(),
                "sleepTimeSeconds": None,
                "napTimeSeconds": None,
                "sleepWindowConfirmed": False,
                "sleepStartTimestampGMT": None,
                "sleepEndTimestampGMT": None,
                "deviceRemCapable": True,
                "retro": False,
            },
            "remSleepData": False,
        }

    def _make_sleep(self, day: date) -> dict[str, Any]:
        if not self._has_data(day):
            return self._no_sleep(day)
        rng = self._day_random("sleep", day)
        bed_local = datetime.combine(day, datetime.min.time()) - timedelta(
            minutes=rng.randint(20, 110)
        )
        start = self._gmt(bed_local)
        offset = bed_local - start  # the user's UTC offset that night
        levels = []
        seconds = {0: 0, 1: 0, 2: 0, 3: 0}  # deep, light, awake, rem (Garmin's activityLevel)
        cursor = start
        end = start + timedelta(minutes=rng.randint(360, 520))
        while cursor < end:
            level = rng.choices([0, 1, 2, 3], [20, 50, 6, 24])[0]
            length = min(timedelta(minutes=rng.randint(4, 45)), end - cursor)
            levels.append(
                {
                    "startGMT": _gmt(cursor),
                    "endGMT": _gmt(cursor + length),
                    "activityLevel": float(level),
                }
            )
            seconds[level] += int(length.total_seconds())
            cursor += length
        movement = [
            {
                "startGMT": _gmt(start + timedelta(minutes=m)),
                "endGMT": _gmt(start + timedelta(minutes=m + 1)),
                "activityLevel": round(rng.uniform(0.0, 2.5), 6),
            }
            for m in range(int((end - start).total_seconds() // 60))
        ]
        asleep = seconds[0] + seconds[1] + seconds[3]
        score = rng.randint(48, 95)
        qualifier = "EXCELLENT" if score >= 90 else "GOOD" if score >= 80 else "FAIR"
        return {
            "dailySleepDTO": {
                "id": _ms(start),
                "userProfilePK": USER_PK,
                "calendarDate": day.isoformat(),
                "sleepTimeSeconds": asleep,
                "napTimeSeconds": 0,
                "sleepWindowConfirmed": True,
                "sleepWindowConfirmationType": "enhanced_confirmed_final",
                "sleepStartTimestampGMT": _ms(start),
                "sleepEndTimestampGMT": _ms(end),
                "sleepStartTimestampLocal": _ms(start + offset),
                "sleepEndTimestampLocal": _ms(end + offset),
                "unmeasurableSleepSeconds": 0,
                "deepSleepSeconds": seconds[0],
                "lightSleepSeconds": seconds[1],
                "remSleepSeconds": seconds[3],
                "awakeSleepSeconds": seconds[2],
                "deviceRemCapable": True,
                "retro": False,
                "sleepFromDevice": True,
                "averageSpO2Value": round(rng.uniform(93, 97), 1),
                "lowestSpO2Value": rng.randint(86, 92),
                "highestSpO2Value": rng.randint(98, 100),
                "averageRespirationValue": round(rng.uniform(12, 16), 1),
                "lowestRespirationValue": 9.0,
                "highestRespirationValue": 21.0,
                "avgSleepStress": round(rng.uniform(8, 30), 1),
                "ageGroup": "ADULT",
                "sleepScoreFeedback": f"POSITIVE_{qualifier}",
                "sleepScoreInsight": "NONE",
                "sleepScores": {
                    "totalDuration": {"qualifierKey": qualifier},
                    "stress": {"qualifierKey": "GOOD"},
                    "awakeCount": {"qualifierKey": "GOOD"},
                    "overall": {"value": score, "qualifierKey": qualifier},
                    "remPercentage": {
                        "value": round(100 * seconds[3] / max(asleep, 1)),
                        "qualifierKey": "GOOD",
                        "optimalStart": 21.0,
                        "optimalEnd": 31.0,
                    },
                    "restlessness": {"qualifierKey": "GOOD"},
                    "lightPercentage": {
                        "value": round(100 * seconds[1] / max(asleep, 1)),
                        "qualifierKey": "GOOD",
                        "optimalStart": 30.0,
                        "optimalEnd": 64.0,
                    },
                    "deepPercentage": {
                        "value": round(100 * seconds[0] / max(asleep, 1)),
                        "qualifierKey": "GOOD",
                        "optimalStart": 16.0,
                        "optimalEnd": 33.0,
                    },
                },
            },
            "sleepMovement": movement,
            "remSleepData": True,
            "sleepLevels": levels,
            "restlessMomentsCount": rng.randint(10, 60),
            "avgOvernightHrv": float(rng.randint(32, 70)),
            "hrvStatus": "BALANCED",
            "bodyBatteryChange": rng.randint(20, 75),
            "restingHeartRate": rng.randint(46, 58),
        }

    def _make_heart_rate(self, day: date) -> dict[str, Any]:
        """The whole day's record: a sample every 2 minutes from local midnight to the next
        (23 or 25 hours on the days the clocks change)."""
        start, end, _ = self._day_bounds(day)
        record: dict[str, Any] = {
            **self._day_header(day),
            "maxHeartRate": None,
            "minHeartRate": None,
            "restingHeartRate": None,
            "lastSevenDaysAvgRestingHeartRate": None,
            "heartRateValueDescriptors": None,
            "heartRateValues": None,
        }
        if not self._has_data(day):
            return record
        rng = self._day_random("heart_rate", day)
        resting = rng.randint(46, 58)
        bpm = resting + 8
        values = []
        for n in range(int((end - start).total_seconds() * 1000) // HR_SAMPLE_MS):
            hour = n * HR_SAMPLE_MS / 3_600_000
            target = resting + (4 if hour < 7 else 22)
            bpm = max(40, min(185, bpm + rng.randint(-4, 4) + (target - bpm) // 6))
            stamp = _ms(start) + n * HR_SAMPLE_MS
            values.append([stamp, bpm if rng.random() > 0.02 else None])
        record.update(
            restingHeartRate=resting,
            lastSevenDaysAvgRestingHeartRate=resting + rng.randint(-2, 2),
            heartRateValueDescriptors=[
                {"key": "timestamp", "index": 0},
                {"key": "heartrate", "index": 1},
            ],
        )
        return _with_samples(record, values)

    # -- SSO -----------------------------------------------------------------------------------
    def _new_ticket(self, service: str) -> str:
        ticket = f"ST-{next(self._serial):07d}-{self.random.getrandbits(64):016x}-cas"
        with self.lock:
            self.tickets[ticket] = service
        return ticket

    def _login(self, request: Request, _: re.Match[str]) -> Response:
        body = request.json() or {}
        if (body.get("username"), body.get("password")) != (self.username, self.password):
            return Response(
                401,
                {"responseStatus": {"type": "INVALID_USERNAME_PASSWORD", "message": ""}},
            )
        service = request.query.get("service", "")
        if self.mfa:
            session = f"{self.random.getrandbits(128):032x}"
            with self.lock:
                self.mfa_sessions.add(session)
            return Response(
                200,
                {
                    "responseStatus": {"type": "MFA_REQUIRED", "message": ""},
                    "customerMfaInfo": {"mfaLastMethodUsed": "email", "email": "r***@example.com"},
                },
                {"Set-Cookie": f"SESSION={session}; Path=/; HttpOnly"},
            )
        return self._ticket(service)

    def _ticket(self, service: str) -> Response:
        """A successful login's answer: a service ticket to exchange for tokens."""
        return Response(
            200,
            {
                "responseStatus": {"type": "SUCCESSFUL", "message": ""},
                "serviceTicketId": self._new_ticket(service),
                "serviceURL": service,
            },
        )

    def _verify_mfa(self, request: Request, _: re.Match[str]) -> Response:
        cookie: SimpleCookie = SimpleCookie(request.headers.get("cookie", ""))
        session = cookie["SESSION"].value if "SESSION" in cookie else None
        with self.lock:
            known = session in self.mfa_sessions
        if not known:
            return Response(401, {"responseStatus": {"type": "SESSION_EXPIRED", "message": ""}})
        if (request.json() or {}).get("mfaVerificationCode") != self.mfa_code:
            return Response(400, {"responseStatus": {"type": "INVALID_MFA_CODE", "message": ""}})
        with self.lock:
            self.mfa_sessions.discard(session or "")
        service = request.query.get("service", "")
        return self._ticket(service)

    def _blocked(self, request: Request, _: re.Match[str]) -> Response:
        return Response(429, {"error": {"status-code": "429", "message": "Too Many Requests"}})

    def _token(self, request: Request, _: re.Match[str]) -> Response:
        form = request.form()
        client_id = form.get("client_id", "")
        basic = "Basic " + base64.b64encode(f"{client_id}:".encode()).decode()
        if not client_id.startswith("GARMIN_CONNECT_MOBILE_") or (
            request.headers.get("authorization") != basic
        ):
            return Response(401, {"error": "invalid_client"})
        grant = form.get("grant_type")
        with self.lock:
            if grant == DI_GRANT_TYPE:
                if self.tickets.pop(form.get("service_ticket", ""), None) is None:
                    return Response(400, {"error": "invalid_grant", "error_description": "ticket"})
            elif grant == "refresh_token":
                if self.refresh_tokens.pop(form.get("refresh_token", ""), None) is None:
                    return Response(
                        400, {"error": "invalid_grant", "error_description": "refresh token"}
                    )
            else:
                return Response(400, {"error": "unsupported_grant_type"})
        return Response(200, self.issue_tokens(client_id))

    # -- Connect API ---------------------------------------------------------------------------
    def _api(self, handler: Any) -> Any:
        def checked(request: Request, match: re.Match[str]) -> Response:
            token = bearer(request)
            with self.lock:
                expiry = self.access_tokens.get(token or "")
            if expiry is None or expiry <= time.time():
                return unauthorized("expired" if expiry else "invalid token")
            result: Response = handler(request, match)
            return result

        return checked

    def _profile(self, request: Request, _: re.Match[str]) -> Response:
        return Response(
            200,
            {
                "id": 41_234_567,
                "profileId": USER_PK,
                "garminGUID": "5d7e4a9c-1b2f-4c3d-9e8f-a1b2c3d4e5f6",
                "displayName": DISPLAY_NAME,
                "fullName": "Ela Runner",
                "userName": self.username,
                "profileImageUrlLarge": None,
                "location": "Brussels",
                "userLevel": 4,
                "userPoint": 612,
            },
        )

    def _settings(self, request: Request, _: re.Match[str]) -> Response:
        return Response(
            200,
            {
                "id": USER_PK,
                "userData": {
                    "gender": "FEMALE",
                    "weight": 61000.0,
                    "height": 168.0,
                    "timeFormat": "time_twenty_four_hr",
                    "birthDate": "1990-04-12",
                    "measurementSystem": "metric",
                    "activityLevel": 7,
                },
                "userSleep": {"sleepTime": 81000, "wakeTime": 25200},
            },
        )

    def _preferences(self, request: Request, _: re.Match[str]) -> Response:
        """The account's display preferences (``Garmin.get_userprofile_settings``), where
        Connect keeps the user's time zone."""
        return Response(
            200,
            {
                "displayName": DISPLAY_NAME,
                "preferredLocale": "en",
                "measurementSystem": "metric",
                "firstDayOfWeek": {"dayId": 2, "dayName": "monday", "sortOrder": 2},
                "numberFormat": "decimal_period",
                "timeFormat": "time_twenty_four_hr",
                "dateFormat": {"formatId": 24, "formatKey": "dd/mm/yyyy", "minFraction": 0},
                "timeZone": self.timezone,
                "hydrationMeasurementUnit": "milliliter",
                "hydrationContainers": [],
            },
        )

    def _search_activities(self, request: Request, _: re.Match[str]) -> Response:
        try:
            first = date.fromisoformat(request.query["startDate"])
            last = date.fromisoformat(request.query.get("endDate", self.last_day.isoformat()))
            start = int(request.query.get("start", 0))
            limit = int(request.query.get("limit", 20))
        except (KeyError, ValueError) as exc:
            return Response(400, {"message": f"bad search parameters: {exc}"})
        if not 1 <= limit <= 1000:
            return Response(400, {"message": "limit must be between 1 and 1000"})
        found = self.activities_between(first, last)
        if request.query.get("sortOrder") == "asc":
            found.reverse()
        if self.loop and len(found) >= 2 * limit:
            start %= 2 * limit
        return Response(200, self.drifted(found[start : start + limit]))

    def _daily(self, record_for: Any) -> Any:
        def handler(request: Request, match: re.Match[str]) -> Response:
            if match["name"] != DISPLAY_NAME:
                return Response(403, {"message": "Forbidden"})
            try:
                day = date.fromisoformat(request.query["date"])
            except (KeyError, ValueError):
                return Response(400, {"message": "date must be YYYY-MM-DD"})
            return Response(200, self.drifted([record_for(day)])[0])

        return handler

    # -- more of the person's data -------------------------------------------------------------
    def _init_more(self) -> None:
        """State and routes of steps, stress, HRV, training status, floors, body battery, weight,
        race predictions and devices (called at the end of ``__init__``)."""
        self.no_hrv_days: set[date] = set()  # nights slept without an HRV reading (HTTP 204)
        self._stress: dict[date, list[tuple[int, int, int]]] = {}  # a day's samples, made once
        self.weigh_ins: list[dict[str, Any]] = []
        rng = random.Random(f"{self.seed}:weight")
        grams = 61_000.0
        day = self.first_day
        while day <= self.last_day:  # a smart scale every third morning
            grams = round(grams + rng.uniform(-400, 400), 1)
            self.add_weigh_in(day, grams, source="INDEX_SCALE", hour=7)
            day += timedelta(days=3)
        api = API_PREFIX
        wellness = f"{api}/wellness-service/wellness"
        metrics = f"{api}/metrics-service/metrics"
        a_day = "(?P<day>[^/]+)"
        for path, handler in (
            (f"{wellness}/dailySummaryChart/(?P<name>[^/]+)", self._steps),
            (f"{wellness}/dailyStress/{a_day}", self._on_day(self.stress_for)),
            (f"{api}/hrv-service/hrv/{a_day}", self._on_day(self.hrv_for)),
            (
                f"{metrics}/trainingstatus/aggregated/{a_day}",
                self._on_day(self.training_status_for),
            ),
            (f"{wellness}/floorsChartData/daily/{a_day}", self._on_day(self.floors_for)),
            (f"{wellness}/bodyBattery/reports/daily", self._body_battery),
            (
                f"{api}/weight-service/weight/range/(?P<first>[^/]+)/(?P<last>[^/]+)",
                self._weigh_ins,
            ),
            (f"{metrics}/racepredictions/latest/(?P<name>[^/]+)", self._race_predictions),
            (f"{api}/device-service/deviceregistration/devices", self._devices),
        ):
            self.route("GET", path, self._api(handler))

    def _on_day(self, record_for: Any) -> Any:
        """A handler for ``.../{YYYY-MM-DD}``: the record, or 204 where Garmin sends no body."""

        def handler(request: Request, match: re.Match[str]) -> Response:
            try:
                day = date.fromisoformat(match["day"])
            except ValueError:
                return Response(400, {"message": "date must be YYYY-MM-DD"})
            record = record_for(day)
            if record is None:
                return Response(204)
            return Response(200, self.drifted([record])[0])

        return handler

    def _day_header(self, day: date) -> dict[str, Any]:
        """The keys a daily wellness record (heart rate, stress) opens with: the user, the day,
        and its bounds in GMT and in local time."""
        start, end, offset = self._day_bounds(day)
        return {
            "userProfilePK": USER_PK,
            "calendarDate": day.isoformat(),
            "startTimestampGMT": _gmt(start),
            "endTimestampGMT": _gmt(end),
            "startTimestampLocal": _gmt(start + offset),
            "endTimestampLocal": _gmt(start + offset + timedelta(days=1)),
        }

    def _day_bounds(self, day: date) -> tuple[datetime, datetime, timedelta]:
        """Local midnight to the next, in naive GMT, and the user's offset that day."""
        start = self._gmt(datetime.combine(day, datetime.min.time()))
        end = self._gmt(datetime.combine(day + timedelta(days=1), datetime.min.time()))
        return start, end, datetime.combine(day, datetime.min.time()) - start

    def _battery_and_stress(self, day: date) -> list[tuple[int, int, int]]:
        """The whole day's (ms, stress level, body battery level), one every 3 minutes. Stress is
        -1 when the watch could not measure (off the wrist) and -2 during activity, as Garmin
        sends it (its stress chart leaves both out)."""
        with self.lock:
            cached = self._stress.get(day)
        if cached is not None:
            return cached
        start, end, _ = self._day_bounds(day)
        rng = self._day_random("stress", day)
        level, battery = rng.randint(10, 30), rng.randint(25, 45)
        samples = []
        for n in range(int((end - start).total_seconds() * 1000) // STRESS_SAMPLE_MS):
            hour = n * STRESS_SAMPLE_MS / 3_600_000
            asleep = hour < 7 or hour >= 23
            level = max(
                0, min(99, level + rng.randint(-6, 6) + ((15 if asleep else 35) - level) // 5)
            )
            battery = max(
                5,
                min(
                    100,
                    battery
                    + (1 if asleep and rng.random() < 0.5 else 0)
                    - (1 if not asleep and rng.random() < 0.3 else 0),
                ),
            )
            shown = -1 if rng.random() < 0.03 else -2 if 17.5 <= hour < 18.3 else level
            samples.append((_ms(start) + n * STRESS_SAMPLE_MS, shown, battery))
        with self.lock:
            self._stress[day] = samples
        return samples

    def stress_for(self, day: date) -> dict[str, Any]:
        """``dailyStress/{day}``: the day so far (what has synced). A day without data still has
        its record, with nulls and empty series (the cassette's shape for a purged day)."""
        record: dict[str, Any] = {
            **self._day_header(day),
            "maxStressLevel": None,
            "avgStressLevel": None,
            "stressChartValueOffset": 1,
            "stressChartYAxisOrigin": -1,
            "stressValueDescriptorsDTOList": [],
            "stressValuesArray": [],
            "bodyBatteryValueDescriptorsDTOList": [],
            "bodyBatteryValuesArray": [],
        }
        until = _ms(self.synced_until())
        samples = [s for s in self._battery_and_stress(day) if s[0] <= until]
        if not self._has_data(day) or not samples:
            return record
        measured = [level for _, level, _ in samples if level >= 0]
        record.update(
            maxStressLevel=max(measured, default=None),
            avgStressLevel=round(sum(measured) / len(measured)) if measured else None,
            stressValueDescriptorsDTOList=[
                {"key": "timestamp", "index": 0},
                {"key": "stressLevel", "index": 1},
            ],
            stressValuesArray=[[ms, level] for ms, level, _ in samples],
            bodyBatteryValueDescriptorsDTOList=[
                {"bodyBatteryValueDescriptorIndex": i, "bodyBatteryValueDescriptorKey": key}
                for i, key in enumerate(
                    ["timestamp", "bodyBatteryStatus", "bodyBatteryLevel", "bodyBatteryVersion"]
                )
            ],
            bodyBatteryValuesArray=[[ms, "MEASURED", battery, 2.0] for ms, _, battery in samples],
        )
        return record

    def steps_for(self, day: date) -> list[dict[str, Any]]:
        """``dailySummaryChart/{name}?date=``: a JSON array of quarter hours. Today's stops at what
        has synced; a day without data is 96 intervals stamped 1970 with 0 steps (garminconnect's
        recorded test_steps_data, a day the account had no data)."""
        start, end, _ = self._day_bounds(day)
        count = int((end - start).total_seconds() * 1000) // QUARTER_MS
        if not self._has_data(day):
            return [
                {
                    "startGMT": EPOCH,
                    "endGMT": EPOCH,
                    "steps": 0,
                    "pushes": 0,
                    "primaryActivityLevel": "none",
                    "activityLevelConstant": True,
                }
                for _ in range(96 if day <= self.last_day else 0)
            ]
        rng = self._day_random("steps", day)
        until = _ms(self.synced_until())
        intervals = []
        for n in range(count):
            begin = _ms(start) + n * QUARTER_MS
            if begin + QUARTER_MS > until:
                break
            hour = n / 4
            level = (
                "sleeping"
                if hour < 7 or hour >= 23
                else rng.choice(["sedentary", "sedentary", "active", "highlyActive"])
            )
            count_steps = {
                "sleeping": 0,
                "sedentary": rng.randint(0, 120),
                "active": rng.randint(200, 900),
                "highlyActive": rng.randint(1200, 2400),
            }
            intervals.append(
                {
                    "startGMT": _gmt_ms(begin)[:-2] + ".000",
                    "endGMT": _gmt_ms(begin + QUARTER_MS)[:-2] + ".000",
                    "steps": count_steps[level],
                    "pushes": 0,
                    "primaryActivityLevel": level,
                    "activityLevelConstant": level != "active",
                }
            )
        return intervals

    def _steps(self, request: Request, match: re.Match[str]) -> Response:
        if match["name"] != DISPLAY_NAME:
            return Response(403, {"message": "Forbidden"})
        try:
            day = date.fromisoformat(request.query["date"])
        except (KeyError, ValueError):
            return Response(400, {"message": "date must be YYYY-MM-DD"})
        return Response(200, self.drifted(self.steps_for(day)))  # each interval drifts

    def hrv_for(self, day: date) -> dict[str, Any] | None:
        """``hrv-service/hrv/{day}``: the night ending that day, once it synced; None (HTTP 204, as
        garminconnect's recorded test_no_hrv_data) for a night without a reading."""
        if not self._has_data(day) or day in self.no_hrv_days:
            return None
        dto = self.sleep_for(day)["dailySleepDTO"]
        begin, finish = dto.get("sleepStartTimestampGMT"), dto.get("sleepEndTimestampGMT")
        if begin is None or finish is None:
            return None  # the night is not over, or not synced
        rng = self._day_random("hrv", day)
        offset = dto["sleepStartTimestampLocal"] - begin
        readings: list[dict[str, Any]] = []
        values: list[int] = []
        for ms in range(begin, finish, 300_000):  # a reading every 5 minutes of sleep
            values.append(rng.randint(28, 85))
            readings.append(
                {
                    "hrvValue": values[-1],
                    "readingTimeGMT": _gmt_ms(ms),
                    "readingTimeLocal": _gmt_ms(ms + offset),
                }
            )
        average = round(sum(values) / len(values))
        return {
            "userProfilePk": USER_PK,
            "hrvSummary": {
                "calendarDate": day.isoformat(),
                "weeklyAvg": average + rng.randint(-4, 4),
                "lastNightAvg": average,
                "lastNight5MinHigh": max(values),
                "baseline": {
                    "lowUpper": 34,
                    "balancedLow": 39,
                    "balancedUpper": 59,
                    "markerValue": round(rng.uniform(0.2, 0.8), 4),
                },
                "status": "BALANCED" if 39 <= average <= 59 else "UNBALANCED",
                "feedbackPhrase": "HRV_BALANCED_SLEEP_HISTORY",
                "createTimeStamp": _gmt_ms(finish),
            },
            "hrvReadings": readings,
            "startTimestampGMT": _gmt_ms(begin),
            "endTimestampGMT": _gmt_ms(finish),
            "startTimestampLocal": _gmt_ms(begin + offset),
            "endTimestampLocal": _gmt_ms(finish + offset),
            "sleepStartTimestampGMT": _gmt_ms(begin),
            "sleepEndTimestampGMT": _gmt_ms(finish),
            "sleepStartTimestampLocal": _gmt_ms(begin + offset),
            "sleepEndTimestampLocal": _gmt_ms(finish + offset),
        }

    def training_status_for(self, day: date) -> dict[str, Any]:
        """``trainingstatus/aggregated/{day}``: the most recent status as of the day, each part
        under a map keyed by device id (as Connect sends it); nulls before any data."""
        device = str(DEVICE_ID)
        if not self._has_data(day):
            return {
                "userId": USER_PK,
                "mostRecentVO2Max": None,
                "mostRecentTrainingLoadBalance": None,
                "mostRecentTrainingStatus": None,
                "heatAltitudeAcclimationDTO": None,
            }
        rng = self._day_random("training_status", day)
        acute, chronic = rng.randint(250, 700), rng.randint(300, 650)
        recorded = [
            {"deviceId": DEVICE_ID, "imageURL": None, "deviceName": "Forerunner 965", "category": 0}
        ]
        return {
            "userId": USER_PK,
            "mostRecentVO2Max": {
                "userId": USER_PK,
                "generic": {
                    "calendarDate": day.isoformat(),
                    "vo2MaxPreciseValue": round(rng.uniform(50.5, 53.5), 1),
                    "vo2MaxValue": 52.0,
                    "fitnessAge": None,
                    "fitnessAgeDescription": None,
                    "maxMetCategory": 0,
                },
                "cycling": None,
                "heatAltitudeAcclimation": None,
            },
            "mostRecentTrainingLoadBalance": {
                "userId": USER_PK,
                "metricsTrainingLoadBalanceDTOMap": {
                    device: {
                        "calendarDate": day.isoformat(),
                        "deviceId": DEVICE_ID,
                        "monthlyLoadAerobicLow": round(rng.uniform(100, 500), 1),
                        "monthlyLoadAerobicHigh": round(rng.uniform(100, 600), 1),
                        "monthlyLoadAnaerobic": round(rng.uniform(0, 200), 1),
                        "trainingBalanceFeedbackPhrase": "BALANCED",
                        "primaryTrainingDevice": True,
                    }
                },
                "recordedDevices": recorded,
            },
            "mostRecentTrainingStatus": {
                "userId": USER_PK,
                "latestTrainingStatusData": {
                    device: {
                        "calendarDate": day.isoformat(),
                        "sinceDate": (day - timedelta(days=rng.randint(1, 20))).isoformat(),
                        "weeklyTrainingLoad": None,
                        "trainingStatus": rng.choice([3, 4, 7]),
                        "timestamp": _ms(self._gmt(datetime.combine(day, datetime.min.time()))),
                        "deviceId": DEVICE_ID,
                        "fitnessTrend": rng.choice([1, 2, 3]),
                        "trainingStatusFeedbackPhrase": "PRODUCTIVE_1",
                        "trainingPaused": False,
                        "acuteTrainingLoadDTO": {
                            "acwrPercent": round(100 * acute / chronic),
                            "acwrStatus": "OPTIMAL",
                            "dailyTrainingLoadAcute": acute,
                            "dailyTrainingLoadChronic": chronic,
                            "dailyAcuteChronicWorkloadRatio": round(acute / chronic, 1),
                        },
                        "primaryTrainingDevice": True,
                    }
                },
                "recordedDevices": recorded,
                "showSelector": False,
                "lastPrimarySyncDate": day.isoformat(),
            },
            "heatAltitudeAcclimationDTO": None,
        }

    def floors_for(self, day: date) -> dict[str, Any]:
        """``floorsChartData/daily/{day}``: quarter hours ``[startGMT, endGMT, up, down]``, as
        far as synced; the day is only in ``startTimestampLocal`` (no calendarDate: the
        cassette's shape)."""
        start, end, offset = self._day_bounds(day)
        rng = self._day_random("floors", day)
        until = _ms(self.synced_until())
        rows = []
        if self._has_data(day):
            for n in range(int((end - start).total_seconds() * 1000) // QUARTER_MS):
                begin = _ms(start) + n * QUARTER_MS
                if begin + QUARTER_MS > until:
                    break
                busy = 7 <= n / 4 < 23 and rng.random() < 0.25
                rows.append(
                    [
                        _gmt_ms(begin),
                        _gmt_ms(begin + QUARTER_MS),
                        rng.randint(0, 4) if busy else 0,
                        rng.randint(0, 4) if busy else 0,
                    ]
                )
        return {
            "startTimestampGMT": _gmt(start),
            "endTimestampGMT": _gmt(end),
            "startTimestampLocal": _gmt(start + offset),
            "endTimestampLocal": _gmt(start + offset + timedelta(days=1)),
            "floorsValueDescriptorDTOList": [
                {"key": "startTimeGMT", "index": 0},
                {"key": "endTimeGMT", "index": 1},
                {"key": "floorsAscended", "index": 2},
                {"key": "floorsDescended", "index": 3},
            ],
            "floorValuesArray": rows,
        }

    def body_battery_for(self, day: date) -> dict[str, Any] | None:
        """One day of ``bodyBattery/reports/daily`` (a sample every 15 minutes, as far as synced).
        A day without data is stamped 1970 with null levels (garminconnect's recorded
        test_body_battery); a day not yet begun is not in the answer at all (None)."""
        if day > self.last_day:
            return None
        descriptors = [
            {"bodyBatteryValueDescriptorIndex": 0, "bodyBatteryValueDescriptorKey": "timestamp"},
            {
                "bodyBatteryValueDescriptorIndex": 1,
                "bodyBatteryValueDescriptorKey": "bodyBatteryLevel",
            },
        ]
        if not self._has_data(day):
            midnight = _ms(self._gmt(datetime.combine(day, datetime.min.time())))
            return {
                "date": day.isoformat(),
                "charged": None,
                "drained": None,
                "startTimestampGMT": EPOCH,
                "endTimestampGMT": EPOCH,
                "startTimestampLocal": EPOCH,
                "endTimestampLocal": EPOCH,
                "bodyBatteryValuesArray": [[midnight + n, None] for n in range(1, 7)],
                "bodyBatteryValueDescriptorDTOList": descriptors,
            }
        start, end, offset = self._day_bounds(day)
        until = _ms(self.synced_until())
        samples = [(ms, b) for ms, _, b in self._battery_and_stress(day)[::5] if ms <= until]
        levels = [b for _, b in samples]
        rises = sum(max(0, b - a) for a, b in itertools.pairwise(levels))
        falls = sum(max(0, a - b) for a, b in itertools.pairwise(levels))
        return {
            "date": day.isoformat(),
            "charged": rises,
            "drained": falls,
            "startTimestampGMT": _gmt(start)[:-2] + ".000",
            "endTimestampGMT": _gmt(end)[:-2] + ".000",
            "startTimestampLocal": _gmt(start + offset)[:-2] + ".000",
            "endTimestampLocal": _gmt(start + offset + timedelta(days=1))[:-2] + ".000",
            "bodyBatteryValuesArray": [[ms, b] for ms, b in samples],
            "bodyBatteryValueDescriptorDTOList": descriptors,
            "bodyBatteryDynamicFeedbackEvent": {
                "eventTimestampGmt": _gmt_ms(samples[-1][0]) if samples else None,
                "bodyBatteryLevel": "MODERATE",
                "feedbackShortType": "DAY_RECOVERING_AND_INACTIVE",
                "feedbackLongType": "DAY_RECOVERING_AND_INACTIVE",
            },
            "bodyBatteryActivityEvent": [],
        }

    def _body_battery(self, request: Request, _: re.Match[str]) -> Response:
        try:
            first = date.fromisoformat(request.query["startDate"])
            last = date.fromisoformat(request.query["endDate"])
        except (KeyError, ValueError):
            return Response(400, {"message": "startDate and endDate must be YYYY-MM-DD"})
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        found = [r for r in (self.body_battery_for(d) for d in days) if r is not None]
        return Response(200, self.drifted(found))

    # -- weigh-ins -----------------------------------------------------------------------------
    def add_weigh_in(
        self: GarminEmulator,
        day: date,
        grams: float,
        *,
        source: str = "MANUAL",
        hour: int = 8,
    ) -> dict[str, Any]:
        """A weigh-in on ``day`` (the user's), e.g. a manual entry for last week typed in today."""
        local = datetime.combine(day, datetime.min.time()) + timedelta(hours=hour)
        gmt = self._gmt(local)
        with self.lock:
            sample = {
                "samplePk": 1_700_000_000_000 + len(self.weigh_ins) * 7 + next(self._serial),
                "date": _ms(local),
                "calendarDate": day.isoformat(),
                "weight": float(grams),
                "bmi": round(grams / 1000 / 1.68**2, 1),
                "bodyFat": 22.5 if source == "INDEX_SCALE" else None,
                "bodyWater": 55.1 if source == "INDEX_SCALE" else None,
                "boneMass": 2900 if source == "INDEX_SCALE" else None,
                "muscleMass": 24100 if source == "INDEX_SCALE" else None,
                "physiqueRating": None,
                "visceralFat": None,
                "metabolicAge": None,
                "sourceType": source,
                "timestampGMT": _ms(gmt),
                "weightDelta": None,
            }
            self.weigh_ins.append(sample)
        return sample

    def delete_weigh_in(self, sample_pk: int) -> None:
        with self.lock:
            self.weigh_ins = [w for w in self.weigh_ins if w["samplePk"] != sample_pk]

    def weigh_ins_between(self, first: date, last: date) -> dict[str, Any]:
        """What ``weight/range/{first}/{last}`` answers: a summary per day with weigh-ins (newest
        day first), every weigh-in of the day in ``allWeightMetrics``; days without none."""
        until = _ms(self.synced_until())
        with self.lock:
            found = [
                dict(w)
                for w in self.weigh_ins
                if first.isoformat() <= w["calendarDate"] <= last.isoformat()
                and w["timestampGMT"] <= until
            ]
        by_day: dict[str, list[dict[str, Any]]] = {}
        for sample in sorted(found, key=lambda w: w["timestampGMT"], reverse=True):
            by_day.setdefault(sample["calendarDate"], []).append(sample)
        summaries = [
            {
                "summaryDate": day,
                "numOfWeightEntries": len(samples),
                "minWeight": min(w["weight"] for w in samples),
                "maxWeight": max(w["weight"] for w in samples),
                "latestWeight": samples[0],
                "allWeightMetrics": samples,
            }
            for day, samples in sorted(by_day.items(), reverse=True)
        ]
        weights = [w["weight"] for w in found]
        return {
            "dailyWeightSummaries": summaries,
            "totalAverage": {
                "from": _ms(datetime.combine(first, datetime.min.time())),
                "until": _ms(datetime.combine(last, datetime.max.time())),
                "weight": round(sum(weights) / len(weights), 1) if weights else None,
            },
            "previousDateWeight": None,
            "nextDateWeight": None,
        }

    def _weigh_ins(self, request: Request, match: re.Match[str]) -> Response:
        try:
            first, last = date.fromisoformat(match["first"]), date.fromisoformat(match["last"])
        except ValueError:
            return Response(400, {"message": "dates must be YYYY-MM-DD"})
        answer = self.weigh_ins_between(first, last)
        answer["dailyWeightSummaries"] = self.drifted(answer["dailyWeightSummaries"])
        return Response(200, answer)

    # -- snapshots -----------------------------------------------------------------------------
    def _race_predictions(self, request: Request, match: re.Match[str]) -> Response:
        if match["name"] != DISPLAY_NAME:
            return Response(403, {"message": "Forbidden"})
        return Response(
            200,
            self.drifted(
                [
                    {
                        "userId": USER_PK,
                        "fromCalendarDate": None,
                        "toCalendarDate": None,
                        "calendarDate": self.last_day.isoformat(),
                        "time5K": 1_342,
                        "time10K": 2_811,
                        "timeHalfMarathon": 6_251,
                        "timeMarathon": 13_305,
                    }
                ]
            )[0],
        )

    def _devices(self, request: Request, _: re.Match[str]) -> Response:
        watch = {
            "deviceId": DEVICE_ID,
            "unitId": DEVICE_ID,
            "productDisplayName": "Forerunner 965",
            "displayName": "Forerunner 965",
            "deviceTypePk": 36_353,
            "partNumber": "006-B4315-00",
            "productSku": "010-02809-00",
            "applicationKey": "forerunner965",
            "deviceCategories": ["WATCH", "FITNESS"],
            "deviceStatusName": "ACTIVE",
            "currentFirmwareVersion": "19.18",
            "registeredDate": _ms(datetime.combine(self.first_day, datetime.min.time())),
            "primary": True,
            "primaryActivityTrackerIndicator": True,
            "wifi": True,
            "bluetoothLowEnergyDevice": True,
            "imageUrl": None,
        }
        scale = {
            **watch,
            "deviceId": 3_301_554_210,
            "unitId": 3_301_554_210,
            "productDisplayName": "Index S2",
            "displayName": "Index S2",
            "deviceTypePk": 33_122,
            "partNumber": "006-B3851-00",
            "productSku": "010-02294-02",
            "applicationKey": "index_s2",
            "deviceCategories": ["SCALE"],
            "currentFirmwareVersion": "3.10",
            "primary": False,
            "primaryActivityTrackerIndicator": False,
        }
        return Response(200, self.drifted([watch, scale]))
