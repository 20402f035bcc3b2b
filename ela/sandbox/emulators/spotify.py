"""Spotify Web API + accounts emulator: the endpoints the jobs use, with Spotify's paging and auth.

Models what the connector must cope with: the accounts token endpoint (refresh-token and
authorization-code grants, Basic client auth, ``invalid_grant`` for an expired or revoked refresh
token, optional refresh-token rotation), bearer access tokens that expire (401), recently played
returning at most the last 50 plays with ``after``/``before`` millisecond cursors, offset-paged
library endpoints with absolute ``next`` links, and top items per ``time_range``. Faults (429 with
Retry-After, 5xx, delays, malformed bodies) come from the base :class:`Fault` mechanism.

Recently played has a clock (``clock``, default the real one): a play shows once it has been
played and synced. Plays listened to offline show only when the device syncs, among older
ones (:meth:`SpotifyEmulator.sync_late`), which is also how a device with a wrong clock
reports a play "in 9999"; the last 50 are the 50 newest by ``played_at`` of those showing.

Records embed ``https://api.spotify.com`` hrefs like the real objects, so the data does not depend
on the emulator's port; only paging links (``href``/``next``/``previous``) point at the emulator,
or at :attr:`SpotifyEmulator.link_base` when a test sets it (a ``next`` link to another host).
As on the real API, the playlists of ``/me/playlists`` page under ``/users/{id}/playlists``.
With ``loop`` on, the last page of a library's ``next`` link leads back to its first page.
"""

from __future__ import annotations

import base64
import bisect
import random
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from ela.sandbox.emulators.server import Emulator, Request, Response, bearer

CLIENT_ID = "ela-emulator-client"
CLIENT_SECRET = "ela-emulator-secret"
REDIRECT_URI = "http://127.0.0.1:8888/callback"
REFRESH_TOKEN = "spotify-emulator-refresh-token"
SCOPE = (
    "playlist-read-collaborative playlist-read-private user-library-read "
    "user-read-recently-played user-top-read user-follow-read"
)
FOLLOW_SCOPE = "user-follow-read"  # what /me/following needs (403 without it)
MAX_PAGE = 50  # Spotify's maximum `limit` on every endpoint modelled here
RECENT_KEPT = 50  # recently played only ever knows the last 50 plays
TOP_ITEMS = 50  # Spotify computes only the top 50 per time range
TIME_RANGES = ("short_term", "medium_term", "long_term")
ACCESS_TOKEN_TTL = 3600  # seconds, as the real accounts service issues them
WEB = "https://open.spotify.com"
API = "https://api.spotify.com/v1"
B62 = string.digits + string.ascii_letters

GENRES = ["indie rock", "synthpop", "jazz", "techno", "folk", "hip hop", "ambient", "soul"]
WORDS = [
    "Blue", "Night", "River", "Glass", "Echo", "Paper", "Golden", "Static", "Velvet", "Wild",
    "Silent", "Neon", "Summer", "Ghost", "Electric", "Honey", "Ocean", "Broken", "Little", "Sun",
]  # fmt: skip


def iso(when: datetime, millis: bool = False) -> str:
    """Spotify's timestamp format: UTC with a ``Z``; ``played_at`` carries milliseconds."""
    text = when.astimezone(UTC).isoformat(timespec="milliseconds" if millis else "seconds")
    return text.replace("+00:00", "Z")


def played_ms(item: dict[str, Any]) -> int:
    """The ``played_at`` of a play history item, in Unix milliseconds (the cursor unit)."""
    when = datetime.fromisoformat(item["played_at"])
    return int(when.timestamp() * 1000)


def play_key(item: dict[str, Any]) -> tuple[str, str]:
    """What tells two plays apart: when, and which track."""
    return item["played_at"], item["track"]["id"]


def _played(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["played_at"])


class SpotifyEmulator(Emulator):
    """Serves the accounts service at :attr:`url` and the Web API at ``{url}/v1``.

    Args:
        saved_tracks: size of the saved tracks library (a benchmark can ask for 10,000).
        plays: play history length; plays are spread over months ending at ``end``.
        saved_albums / playlists: library sizes.
        rotate_refresh_tokens: answer each refresh with a new refresh token and revoke the old.
        access_token_ttl: ``expires_in`` of issued access tokens, seconds.
        end: the time of the last seeded play (and the newest saved item).
        clock: the emulator's now (plays not yet played or synced do not show); default the
            real clock, which shows every seeded play.
    """

    name = "spotify"

    def __init__(
        self,
        saved_tracks: int = 3000,
        plays: int = 3000,
        saved_albums: int = 300,
        playlists: int = 40,
        rotate_refresh_tokens: bool = False,
        access_token_ttl: int = ACCESS_TOKEN_TTL,
        end: datetime = datetime(2025, 6, 30, 18, 0, tzinfo=UTC),
        seed: int = 7,
        clock: Callable[[], datetime] | None = None,
        followed: int = 120,
    ) -> None:
        super().__init__(seed)
        self.clock = clock or (lambda: datetime.now(UTC))
        # When each late play synced (by play key); any other play shows once it is played.
        self.synced_at: dict[tuple[str, str], datetime] = {}
        # Data draws from their own generator: fault `rate` draws from self.random must not
        # change what add_plays() produces.
        self.rng = random.Random(seed)
        self.end = end
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.access_token_ttl = access_token_ttl
        self.refresh_tokens: set[str] = {REFRESH_TOKEN}
        self.access_tokens: dict[str, float] = {}  # token → expiry (time.time())
        self.codes: dict[str, str] = {}  # authorization code → redirect_uri
        self.link_base: str | None = None  # where paging links point (None: this emulator)
        self.user = {
            "display_name": "Ela Listener",
            "external_urls": {"spotify": f"{WEB}/user/ela-listener"},
            "href": f"{API}/users/ela-listener",
            "id": "ela-listener",
            "type": "user",
            "uri": "spotify:user:ela-listener",
        }

        self.artists: list[dict[str, Any]] = [self._artist() for _ in range(max(60, plays // 20))]
        album_count = max(saved_albums + 100, saved_tracks // 8 + 100)
        self.albums: list[dict[str, Any]] = [self._album() for _ in range(album_count)]
        self.tracks: list[dict[str, Any]] = [t for a in self.albums for t in a["_tracks"]]

        self.playlists: list[dict[str, Any]] = [self._playlist(n) for n in range(playlists)]
        # What /me answers with the app's scopes (no user-read-private / user-read-email):
        # the public profile, with followers and images, as in Spotify's reference for it.
        self.profile: dict[str, Any] = {
            **self.user,
            "followers": {"href": None, "total": 12},
            "images": self._images("ela-listener-profile-image"),
        }
        # Followed artists (full artist objects), served ordered by id: the `after` cursor is
        # the last artist id of the page before (spotipy: "the last artist ID retrieved").
        self.followed: list[dict[str, Any]] = []  # drawn last, below: the rest stays as it was
        # Each page of /me/following served follows this many more artists (the user follows
        # someone while a run reads the list): the next page's `total` differs.
        self.follow_while_paging = 0
        # The scope granted with a refresh token is what its user approved (the authorize
        # request's `scope`); the seeded REFRESH_TOKEN's is `scope`. Access tokens keep theirs.
        self.scope = SCOPE
        self.token_scopes: dict[str, str] = {}
        self.refresh_scopes: dict[str, str] = {}
        self.code_scopes: dict[str, str] = {}
        self.plays: list[dict[str, Any]] = []  # oldest first
        self._seed_plays(plays)
        self.saved_tracks: list[dict[str, Any]] = []  # newest first, as served
        self.saved_albums: list[dict[str, Any]] = []  # newest first, as served
        self._seed_library(saved_tracks, saved_albums)
        self.top_tracks = {r: self.rng.sample(self.tracks, TOP_ITEMS) for r in TIME_RANGES}
        self.top_artists = {
            r: [self._full_artist(a) for a in self.rng.sample(self.artists, TOP_ITEMS)]
            for r in TIME_RANGES
        }
        self.follow_artists(followed)

        self.route("POST", r"/api/token", self._token)
        self.route("GET", r"/authorize", self._authorize)
        # spotipy's me() asks for "me/"; the real API answers both.
        self.route("GET", r"/v1/me/?", self._authed(self._me))
        self.route("GET", r"/v1/me/player/recently-played", self._authed(self._recently_played))
        self.route("GET", r"/v1/me/tracks", self._authed(self._offset(lambda: self.saved_tracks)))
        self.route("GET", r"/v1/me/albums", self._authed(self._offset(lambda: self.saved_albums)))
        playlist_pages = self._authed(
            self._offset(lambda: self.playlists, "users/{user}/playlists")
        )
        self.route("GET", r"/v1/me/playlists", playlist_pages)
        self.route("GET", r"/v1/users/(?P<user>[^/]+)/playlists", playlist_pages)
        self.route("GET", r"/v1/me/top/(tracks|artists)", self._authed(self._top))
        self.route("GET", r"/v1/me/following", self._authed(self._following))

    # -- wiring ---------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"{self.url}/v1/"

    def environ(self) -> dict[str, str]:
        return {
            "SPOTIFY_API_URL": self.api_url,
            "SPOTIFY_ACCOUNTS_URL": self.url,
            "SPOTIFY_CLIENT_ID": CLIENT_ID,
            "SPOTIFY_CLIENT_SECRET": CLIENT_SECRET,
            "SPOTIFY_REDIRECT_URI": REDIRECT_URI,
            "SPOTIFY_REFRESH_TOKEN": REFRESH_TOKEN,
        }

    def expire_access_tokens(self) -> None:
        """Make every issued access token answer 401 "The access token expired"."""
        with self.lock:
            self.access_tokens = dict.fromkeys(self.access_tokens, 0.0)

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token now gets ``invalid_grant`` (the user revoked the app)."""
        with self.lock:
            self.refresh_tokens.clear()

    # -- data -----------------------------------------------------------------------------
    def _id(self) -> str:
        return "".join(self.rng.choice(B62) for _ in range(22))

    def _images(self, key: str) -> list[dict[str, Any]]:
        return [
            {"url": f"https://i.scdn.co/image/ab67616d0000{size:04x}{key[:24]}", "height": size,
             "width": size}
            for size in (640, 300, 64)
        ]  # fmt: skip

    def _ref(self, kind: str, id_: str) -> dict[str, Any]:
        return {
            "external_urls": {"spotify": f"{WEB}/{kind}/{id_}"},
            "href": f"{API}/{kind}s/{id_}",
            "id": id_,
            "type": kind,
            "uri": f"spotify:{kind}:{id_}",
        }

    def _title(self, words: int) -> str:
        return " ".join(self.rng.sample(WORDS, words))

    def _artist(self) -> dict[str, Any]:
        """A simplified artist object (as nested in tracks and albums)."""
        id_ = self._id()
        artist = {**self._ref("artist", id_), "name": f"The {self._title(2)}"}
        artist["_genres"] = self.rng.sample(GENRES, self.rng.randint(1, 3))
        artist["_followers"] = self.rng.randint(200, 3_000_000)
        return artist

    @staticmethod
    def _simple(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _full_artist(self, artist: dict[str, Any]) -> dict[str, Any]:
        full = self._simple(artist)
        full.update(
            followers={"href": None, "total": artist["_followers"]},
            genres=artist["_genres"],
            images=self._images(artist["id"]),
            popularity=min(100, artist["_followers"] // 30_000),
        )
        return dict(sorted(full.items()))

    def _album(self) -> dict[str, Any]:
        """A full album with its tracks; ``_tracks`` holds them as full track objects."""
        id_ = self._id()
        artists = [
            self._simple(a) for a in self.rng.sample(self.artists, self.rng.choice([1, 1, 2]))
        ]
        released = self.end - timedelta(days=self.rng.randint(30, 365 * 30))
        n_tracks = self.rng.randint(6, 14)
        album_type = "album" if n_tracks >= 8 else self.rng.choice(["single", "compilation"])
        simple = {
            "album_type": album_type,
            "artists": artists,
            "available_markets": ["DE", "FR", "GB", "US"],
            **self._ref("album", id_),
            "images": self._images(id_),
            "is_playable": True,
            "name": self._title(self.rng.randint(1, 3)),
            "release_date": released.date().isoformat(),
            "release_date_precision": "day",
            "total_tracks": n_tracks,
        }
        tracks = [self._track(simple, n) for n in range(1, n_tracks + 1)]
        label = f"{self.rng.choice(WORDS)} Records"
        return {
            **simple,
            "copyrights": [{"text": f"{released.year} {label}", "type": "P"}],
            "external_ids": {"upc": f"{self.rng.randrange(10**12):012d}"},
            "genres": [],
            "label": label,
            "popularity": self.rng.randint(0, 90),
            "tracks": {
                "href": f"{API}/albums/{id_}/tracks?offset=0&limit=50",
                "items": [
                    {k: v for k, v in t.items() if k not in ("album", "external_ids", "popularity")}
                    for t in tracks
                ],
                "limit": 50,
                "next": None,
                "offset": 0,
                "previous": None,
                "total": n_tracks,
            },
            "_tracks": tracks,
        }

    def _track(self, album: dict[str, Any], number: int) -> dict[str, Any]:
        id_ = self._id()
        return {
            "album": album,
            "artists": album["artists"],
            "available_markets": album["available_markets"],
            "disc_number": 1,
            "duration_ms": self.rng.randint(95_000, 420_000),
            "explicit": self.rng.random() < 0.1,
            "external_ids": {"isrc": f"US{self.rng.randrange(10**10):010d}"},
            "external_urls": {"spotify": f"{WEB}/track/{id_}"},
            "href": f"{API}/tracks/{id_}",
            "id": id_,
            "is_local": False,
            "is_playable": True,
            "name": self._title(self.rng.randint(1, 3)),
            "popularity": self.rng.randint(0, 95),
            "preview_url": None,
            "track_number": number,
            "type": "track",
            "uri": f"spotify:track:{id_}",
        }

    def _saved_album(self, album: dict[str, Any], added: datetime) -> dict[str, Any]:
        return {"added_at": iso(added), "album": self._simple(album)}

    def _seed_library(self, tracks: int, albums: int) -> None:
        added = self.end
        for track in self.rng.sample(self.tracks, min(tracks, len(self.tracks))):
            self.saved_tracks.append({"added_at": iso(added), "track": track})
            added -= timedelta(minutes=self.rng.randint(20, 2000))
        added = self.end
        for album in self.rng.sample(self.albums, min(albums, len(self.albums))):
            self.saved_albums.append(self._saved_album(album, added))
            added -= timedelta(hours=self.rng.randint(5, 200))

    def _playlist(self, n: int) -> dict[str, Any]:
        id_ = self._id()
        owned = n % 5 != 4  # most are the user's own, some are followed editorial lists
        owner = self.user if owned else {**self._ref("user", "spotify"), "display_name": "Spotify"}
        return {
            "collaborative": owned and n % 11 == 3,
            "description": "" if owned else f"The best {self.rng.choice(GENRES)} right now.",
            **self._ref("playlist", id_),
            "images": self._images(id_)[:1],
            "name": self._title(2) if owned else f"{self.rng.choice(GENRES).title()} Essentials",
            "owner": owner,
            "primary_color": None,
            "public": n % 3 != 0,
            "snapshot_id": base64.b64encode(f"{n}:{id_}".encode()).decode(),
            "tracks": {"href": f"{API}/playlists/{id_}/tracks", "total": self.rng.randint(5, 300)},
        }

    def _play(self, when: datetime) -> dict[str, Any]:
        track = self.rng.choice(self.tracks)
        roll = self.rng.random()
        if roll < 0.4:
            context: dict[str, Any] | None = self._ref("album", track["album"]["id"])
        elif roll < 0.8 and self.playlists:
            context = self._ref("playlist", self.rng.choice(self.playlists)["id"])
        else:
            context = None
        if context:
            context = {k: v for k, v in context.items() if k != "id"}
        return {"track": track, "played_at": iso(when, millis=True), "context": context}

    def _seed_plays(self, count: int) -> None:
        # Listening sessions: a track every ~3.5 minutes, sessions hours apart.
        gaps = [
            timedelta(seconds=self.rng.randint(150, 260))
            if self.rng.random() < 0.8
            else timedelta(hours=self.rng.uniform(2, 12))
            for _ in range(count)
        ]
        when = self.end - sum(gaps[1:], timedelta())
        for gap in [timedelta(), *gaps[1:]]:
            when += gap
            self.plays.append(self._play(when + timedelta(milliseconds=self.rng.randint(0, 999))))

    def add_plays(
        self, count: int, gap: timedelta = timedelta(minutes=3, seconds=30)
    ) -> list[dict[str, Any]]:
        """Append ``count`` plays after the last one played by now, ``gap`` apart; returns them,
        oldest first."""
        with self.lock:
            now = self.clock()
            played = [p for p in self.plays[-RECENT_KEPT:] if _played(p) <= now]
            last = _played(played[-1]) if played else self.end
            return self.play_at(last + gap * (n + 1) for n in range(count))

    def play_at(self, times: Iterable[datetime]) -> list[dict[str, Any]]:
        """Plays at ``times``, each showing once the clock reaches it (a day of listening laid
        out in advance); returns them in the order given."""
        with self.lock:
            new = [self._play(when) for when in times]
            for play in new:
                bisect.insort(self.plays, play, key=played_ms)
            return new

    def add_playlists(self, count: int) -> None:
        """Follow or create ``count`` more playlists."""
        with self.lock:
            self.playlists.extend(self._playlist(len(self.playlists)) for _ in range(count))

    def sync_late(
        self, times: Iterable[datetime], synced: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Plays at ``times`` that show only from ``synced`` (default: now): listening on an
        offline device, synced later among older plays; or, with a time in the future, a
        device whose clock is wrong. Returns them in the order given."""
        with self.lock:
            at = synced or self.clock()
            new = self.play_at(times)
            for play in new:
                self.synced_at[play_key(play)] = at
            return new

    def showing(self, play: dict[str, Any], now: datetime) -> bool:
        """Whether ``play`` shows in recently played at ``now`` (played, and synced)."""
        return self.synced_at.get(play_key(play), _played(play)) <= now

    def add_saved_tracks(self, count: int) -> list[dict[str, Any]]:
        """Save ``count`` more tracks (newest first in the library); returns them, newest first."""
        with self.lock:
            saved = {item["track"]["id"] for item in self.saved_tracks}
            fresh = [t for t in self.tracks if t["id"] not in saved]
            newest = datetime.fromisoformat(self.saved_tracks[0]["added_at"]) if saved else self.end
            picked = self.rng.sample(fresh, count)
            new = [
                {"added_at": iso(newest + timedelta(minutes=count - n)), "track": track}
                for n, track in enumerate(picked)
            ]
            self.saved_tracks[:0] = new
            return new

    # -- auth -----------------------------------------------------------------------------
    def _client_ok(self, request: Request, form: dict[str, str]) -> bool:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                pair = base64.b64decode(auth[6:]).decode()
            except ValueError:
                return False
            return pair == f"{CLIENT_ID}:{CLIENT_SECRET}"
        return form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET

    def _issue(self, refresh: str | None, scope: str | None = None) -> dict[str, Any]:
        token = "BQ" + secrets.token_urlsafe(24)
        self.access_tokens[token] = time.time() + self.access_token_ttl
        scope = scope or self.scope
        self.token_scopes[token] = scope
        if refresh:
            self.refresh_scopes[refresh] = scope
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.access_token_ttl,
            "scope": scope,
        }
        if refresh:
            self.refresh_tokens.add(refresh)
            body["refresh_token"] = refresh
        return body

    def _token(self, request: Request, _: re.Match[str]) -> Response:
        form = request.form()
        if not self._client_ok(request, form):
            return Response(400, {"error": "invalid_client", "error_description": "Invalid client"})
        grant = form.get("grant_type")
        with self.lock:
            if grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                if refresh not in self.refresh_tokens:
                    return Response(
                        400,
                        {"error": "invalid_grant", "error_description": "Invalid refresh token"},
                    )
                scope = self.refresh_scopes.get(refresh)
                if self.rotate_refresh_tokens:
                    self.refresh_tokens.discard(refresh)
                    return Response(200, self._issue("AQ" + secrets.token_urlsafe(32), scope))
                return Response(200, self._issue(None, scope))
            if grant == "authorization_code":
                approved = self.code_scopes.pop(form.get("code", ""), None)
                redirect = self.codes.pop(form.get("code", ""), None)
                if redirect is None or redirect != form.get("redirect_uri"):
                    return Response(
                        400,
                        {
                            "error": "invalid_grant",
                            "error_description": "Invalid authorization code",
                        },
                    )
                return Response(200, self._issue("AQ" + secrets.token_urlsafe(32), approved))
        return Response(400, {"error": "unsupported_grant_type"})

    def _authorize(self, request: Request, _: re.Match[str]) -> Response:
        """The consent page, already approved: redirects back with a code (or an error)."""
        query = request.query
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            return Response(400, {"error": "invalid_client"})
        if query.get("redirect_uri") != REDIRECT_URI:
            return Response(400, {"error": "INVALID_CLIENT: Invalid redirect URI"})
        code = "AQ" + secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = REDIRECT_URI
            self.code_scopes[code] = query.get("scope", "")
        back = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        return Response(302, headers={"Location": f"{REDIRECT_URI}?{urlencode(back)}"})

    def _authed(self, handler: Any) -> Any:
        def check(request: Request, match: re.Match[str]) -> Response:
            token = bearer(request)
            with self.lock:
                expires = self.access_tokens.get(token or "")
            if expires is None:
                return api_error(401, "Invalid access token")
            if expires <= time.time():
                return api_error(401, "The access token expired")
            response: Response = handler(request, match)
            return response

        return check

    def _answer(self, request: Request) -> Response:
        # Injected faults carry the base's {"error": "..."} body; the Web API's errors are
        # {"error": {"status", "message"}} (the accounts service keeps the OAuth shape).
        response = super()._answer(request)
        error = response.body.get("error") if isinstance(response.body, dict) else None
        if request.path.startswith("/v1/") and isinstance(error, str):
            return api_error(response.status, error, response.headers)
        return response

    # -- endpoints ------------------------------------------------------------------------
    def _limit(self, request: Request, default: int) -> int | Response:
        try:
            limit = int(request.query.get("limit", default))
        except ValueError:
            return api_error(400, "Invalid limit")
        if not 1 <= limit <= MAX_PAGE:
            return api_error(400, "Invalid limit")
        return limit

    def _page(
        self, path: str, rows: list[dict[str, Any]], offset: int, limit: int, extra: str = ""
    ) -> dict[str, Any]:
        def link(start: int) -> str:
            return f"{self.link_base or self.url}/v1/{path}?offset={start}&limit={limit}{extra}"

        following = link(offset + limit) if offset + limit < len(rows) else None
        if following is None and self.loop and offset > 0:
            following = link(0)
        return {
            "href": link(offset),
            "items": self.drifted(rows[offset : offset + limit]),
            "limit": limit,
            "next": following,
            "offset": offset,
            "previous": link(max(0, offset - limit)) if offset > 0 else None,
            "total": len(rows),
        }

    def _offset(self, rows: Any, links: str = "") -> Any:
        """An offset-paged list; its links name ``links`` (``{user}``: the user's id), or the
        path asked for."""

        def handler(request: Request, match: re.Match[str]) -> Response:
            limit = self._limit(request, 20)
            if isinstance(limit, Response):
                return limit
            try:
                offset = int(request.query.get("offset", 0))
            except ValueError:
                return api_error(400, "Invalid offset")
            if offset < 0:
                return api_error(400, "Invalid offset")
            with self.lock:
                items = list(rows())
            path = links.format(user=self.user["id"]) if links else request.path[len("/v1/") :]
            return Response(200, self._page(path, items, offset, limit))

        return handler

    def _top(self, request: Request, match: re.Match[str]) -> Response:
        limit = self._limit(request, 20)
        if isinstance(limit, Response):
            return limit
        time_range = request.query.get("time_range", "medium_term")
        if time_range not in TIME_RANGES:
            return api_error(400, "Invalid time range")
        try:
            offset = int(request.query.get("offset", 0))
        except ValueError:
            return api_error(400, "Invalid offset")
        kind = match.group(1)
        rows = (self.top_tracks if kind == "tracks" else self.top_artists)[time_range]
        page = self._page(f"me/top/{kind}", rows, offset, limit, f"&time_range={time_range}")
        return Response(200, page)

    def recent(
        self, limit: int = MAX_PAGE, after: int | None = None, before: int | None = None
    ) -> list[dict[str, Any]]:
        """What recently played answers: of the last 50 plays, those strictly after ``after``
        / before ``before`` (ms), newest first, at most ``limit``."""
        with self.lock:
            now = self.clock()
            kept = []
            for play in reversed(self.plays):
                if self.showing(play, now):
                    kept.append(play)
                    if len(kept) == RECENT_KEPT:
                        break
        return [
            p
            for p in kept
            if (after is None or played_ms(p) > after) and (before is None or played_ms(p) < before)
        ][:limit]

    def _recently_played(self, request: Request, _: re.Match[str]) -> Response:
        limit = self._limit(request, 20)
        if isinstance(limit, Response):
            return limit
        query = request.query
        if "after" in query and "before" in query:
            return api_error(400, "Only one of 'after' and 'before' may be given")
        try:
            after = int(query["after"]) if "after" in query else None
            before = int(query["before"]) if "before" in query else None
        except ValueError:
            return api_error(400, "Invalid cursor")
        window = self.recent(RECENT_KEPT, after, before)
        items = window[:limit]
        cursors = (
            {"after": str(played_ms(items[0])), "before": str(played_ms(items[-1]))}
            if items
            else None
        )
        base = f"{self.url}/v1/me/player/recently-played"
        following = f"{base}?before={played_ms(items[-1])}&limit={limit}" if items else None
        return Response(
            200,
            {
                "items": self.drifted(items),
                "next": following if len(window) > limit else None,  # older plays kept
                "cursors": cursors,
                "limit": limit,
                "total": len(window),
                "href": f"{base}?{urlencode(query)}" if query else base,
            },
        )

    def _me(self, request: Request, _: re.Match[str]) -> Response:
        """``/me``: the user's profile (what the app's scopes show of it)."""
        return Response(200, self.drifted([self.profile])[0])

    def follow_artists(self, count: int) -> list[dict[str, Any]]:
        """Follow ``count`` more artists (new ones, with new random ids: anywhere in the list)."""
        with self.lock:
            new = [self._full_artist(self._artist()) for _ in range(count)]
            self.followed = sorted([*self.followed, *new], key=lambda a: a["id"])
            return new

    def _following(self, request: Request, _: re.Match[str]) -> Response:
        """``/me/following?type=artist``: cursor pages of followed artists.

        Spotify's cursor-based paging object, under ``artists``: ``items``, ``next``,
        ``cursors.after``, ``limit``, ``total``, ``href`` (no ``offset``/``previous``). Two
        quirks seen on the real API are kept: the last page's ``next`` is null while
        ``cursors.after`` still names its last artist (a client paging on the cursor asks
        once more, for nothing), and ``total`` is counted per request, so it changes between
        pages when the user follows someone meanwhile (:attr:`follow_while_paging`).
        """
        token = bearer(request) or ""
        with self.lock:
            granted = self.token_scopes.get(token, SCOPE)
        if FOLLOW_SCOPE not in granted.split():
            return api_error(403, "Insufficient client scope")
        if request.query.get("type") != "artist":
            return api_error(400, "Invalid type")  # `artist` is the only type it pages
        limit = self._limit(request, 20)
        if isinstance(limit, Response):
            return limit
        after = request.query.get("after")
        with self.lock:
            rows = list(self.followed)
        ids = [a["id"] for a in rows]
        start = bisect.bisect_right(ids, after) if after else 0
        items = rows[start : start + limit]
        base = f"{self.link_base or self.url}/v1/me/following?type=artist"
        following = None
        if start + limit < len(rows):
            following = f"{base}&after={items[-1]['id']}&limit={limit}"
        elif self.loop and after:
            following = f"{base}&limit={limit}"  # back to the first page, forever
        body = {
            "artists": {
                "items": self.drifted(items),
                "next": following,
                "total": len(rows),
                "cursors": {"after": items[-1]["id"] if items else None},
                "limit": limit,
                "href": f"{base}&limit={limit}" + (f"&after={after}" if after else ""),
            }
        }
        if self.follow_while_paging:
            self.follow_artists(self.follow_while_paging)
        return Response(200, body)


def api_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The Web API's error object."""
    return Response(status, {"error": {"status": status, "message": message}}, headers or {})
