"""No secret in logs, task arguments, results, Flower, the bucket or Sentry (docs/security.md).

One test plants a distinctive value in every credential the system reads (each emulator is
configured to accept exactly those values), runs every job of the dev config through a real
worker, driven by a real beat tick, with six of them failing (401s and 500s, retried and not),
and then searches everything the system wrote or shows for every planted value, every token the
emulators issued (access tokens, rotated refresh tokens) and every token in the token store:

- the worker's, beat's and Flower's logs;
- every key under the test's Redis prefix (queued messages, task arguments, results,
  tracebacks; base64 message bodies decoded);
- Flower's API and pages: tasks, each task's info, workers (with their stats and conf),
  queues, metrics, broker;
- every object in the bucket: landing, manifests, errors/, _state/;
- every event, check-in and transaction Sentry would have received (a local envelope sink at
  ``SENTRY_DSN``); the DSN key may appear only where the SDK authenticates to Sentry itself
  (the ``X-Sentry-Auth`` header and the envelope header), as a password in ``Authorization``.

The token store itself is where tokens belong; it is read, not searched.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

import ela.sandbox.emulators.spotify as spotify_emulator
from ela.sandbox.configs import shipped_config, write_config
from ela.sandbox.emulators.garmin import GarminEmulator
from ela.sandbox.emulators.server import Emulator, Fault
from ela.sandbox.emulators.spotify import SpotifyEmulator
from ela.sandbox.emulators.strava import StravaEmulator
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import wait_for
from ela.tokens import TokenStore
from tests.conftest import WorkerFactory
from tests.helpers import Beat, SentryEndpoint
from tests.test_flower import running_flower

pytestmark = pytest.mark.timeout(300)

# Distinctive values: none of them can occur by chance in data, ids or timestamps.
PLANTED = {
    "SPOTIFY_CLIENT_ID": "plantedSpotifyClientIdQ7w2",
    "SPOTIFY_CLIENT_SECRET": "plantedSpotifyClientSecretZ9x4",
    "SPOTIFY_REFRESH_TOKEN": "plantedSpotifyRefreshTokenK3m8",
    "STRAVA_CLIENT_ID": "731904628517",  # Strava client ids are integers
    "STRAVA_CLIENT_SECRET": "plantedStravaClientSecretH5n1",
    "STRAVA_REFRESH_TOKEN": "plantedStravaRefreshTokenB6v3",
    "GARMIN_USERNAME": "planted.garmin.user.R2d8@example.com",
    "GARMIN_PASSWORD": "plantedGarminPasswordT4c7",
    "TODOIST_API_TOKEN": "plantedTodoistApiTokenJ8p5",
}
SENTRY_KEY = "plantedsentrykey5e1f0a9b7c3d2e4f"
FLOWER_USER = "ela-admin"
FLOWER_PASSWORD = "plantedFlowerPasswordW1y6"
REDIS_PASSWORD = "plantedRedisPasswordU3k9"
# Not credentials: where Spotify sends the person back after consent (public by design).
REDIRECT_URI = "http://127.0.0.1:8888/callback"

# Six runs fail for good: expired/revoked tokens (401, not retried) and server errors (500,
# retried, then final); so does todoist_completed_tasks, whose path is under /api/v1/tasks.
FAULTS: dict[str, tuple[str, Fault]] = {
    "spotify_top_artists": ("spotify", Fault(status=401, path="/me/top/artists", times=None)),
    "spotify_playlists": ("spotify", Fault(status=500, path="/me/playlists", times=None)),
    "strava_activities": ("strava", Fault(status=401, path="/athlete/activities", times=None)),
    "garmin_sleep": ("garmin", Fault(status=500, path="dailySleepData", times=None)),
    "garmin_heart_rate": ("garmin", Fault(status=401, path="dailyHeartRate", times=None)),
    "todoist_tasks": ("todoist", Fault(status=401, path="/api/v1/tasks", times=None)),
}
FAILING = {f"tasks.{job.replace('_', '.', 1)}" for job in FAULTS} | {
    "tasks.todoist.completed_tasks"
}
# A key in a token file whose value is a credential (not its type, expiry or fingerprint).
TOKEN_KEY = re.compile(r"(?i)(token|secret|password)$")


# -- the planted environment ---------------------------------------------------------------------


def redis_url_with_password(redis_url: str) -> str | None:
    """The test Redis URL with a planted password, if this Redis accepts one (Redis 6+ with
    the ``default`` user open takes ``AUTH default <anything>``); None otherwise."""
    parts = urllib.parse.urlsplit(redis_url)
    netloc = f"default:{REDIS_PASSWORD}@{parts.hostname}:{parts.port or 6379}"
    url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    try:
        with redis.Redis.from_url(url) as client:
            client.ping()
    except redis.RedisError:
        return None
    return url


@pytest.fixture
def planted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[dict[str, str], dict[str, Emulator], Path]]:
    """The four emulators accepting only the planted credentials; the environment naming them;
    the token store, seeded as `ela auth garmin` would."""
    # The Spotify emulator checks the module's client credentials at request time.
    monkeypatch.setattr(spotify_emulator, "CLIENT_ID", PLANTED["SPOTIFY_CLIENT_ID"])
    monkeypatch.setattr(spotify_emulator, "CLIENT_SECRET", PLANTED["SPOTIFY_CLIENT_SECRET"])
    spotify = SpotifyEmulator(saved_tracks=200, plays=200, saved_albums=60, playlists=12)
    spotify.rotate_refresh_tokens = True  # rotated refresh tokens are secrets too
    spotify.refresh_tokens = {PLANTED["SPOTIFY_REFRESH_TOKEN"]}
    strava = StravaEmulator(activities=60)
    strava.client_id = PLANTED["STRAVA_CLIENT_ID"]
    strava.client_secret = PLANTED["STRAVA_CLIENT_SECRET"]
    strava.refresh_tokens = {PLANTED["STRAVA_REFRESH_TOKEN"]}
    garmin = GarminEmulator(
        days=30,
        activities=40,
        username=PLANTED["GARMIN_USERNAME"],
        password=PLANTED["GARMIN_PASSWORD"],
    )
    todoist = TodoistEmulator(projects=6, tasks=40, token=PLANTED["TODOIST_API_TOKEN"])
    emulators: dict[str, Emulator] = {
        "spotify": spotify,
        "strava": strava,
        "garmin": garmin,
        "todoist": todoist,
    }
    tokens = tmp_path / "tokens"
    with contextlib.ExitStack() as stack:
        environ: dict[str, str] = {"ELA_TOKEN_DIR": str(tokens)}
        for emulator in emulators.values():
            stack.enter_context(emulator)
            emulator.prepare_tokens(TokenStore(tokens))
            environ.update(emulator.environ())
        environ.update(PLANTED)
        environ["SPOTIFY_REDIRECT_URI"] = REDIRECT_URI
        for service, fault in FAULTS.values():
            emulators[service].inject(fault)
        yield environ, emulators, tokens


# -- what to search ---------------------------------------------------------------------------


def variants(secret: str) -> set[str]:
    """How a secret can be written: as is, URL-encoded, JSON-escaped, base64 (Basic auth)."""
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode().rstrip("="),
    }


def issued_tokens(emulators: dict[str, Any], token_dir: Path) -> set[str]:
    """Every token the emulators handed out or accepted, and every credential in the store."""
    spotify, strava, garmin = emulators["spotify"], emulators["strava"], emulators["garmin"]
    found: set[str] = set()
    found |= set(spotify.access_tokens) | set(spotify.refresh_tokens)
    found |= set(strava.access_tokens) | set(strava.refresh_tokens) | set(strava.revoked)
    found |= set(garmin.access_tokens) | set(garmin.refresh_tokens)

    def leaves(data: Any, key: str = "") -> Iterator[str]:
        if isinstance(data, dict):
            for k, v in data.items():
                yield from leaves(v, str(k))
        elif isinstance(data, list):
            for v in data:
                yield from leaves(v, key)
        elif isinstance(data, str) and TOKEN_KEY.search(key):
            yield data

    for path in token_dir.glob("*.json"):
        found |= set(leaves(json.loads(path.read_text())))
    return {t for t in found if len(t) >= 12}


def decoded(text: str) -> str:
    """``text`` plus what its base64 runs decode to (kombu's message bodies are base64)."""
    extra = []
    for run in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
        with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
            extra.append(base64.b64decode(run + "=" * (-len(run) % 4)).decode())
    return "\n".join([text, *extra])


def text_of(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def redis_texts(client: redis.Redis, prefix: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    for raw_key in client.scan_iter(match=f"{prefix}*", count=1000):
        key = text_of(raw_key)
        kind = text_of(client.type(raw_key))
        values: list[Any] = []
        if kind == "string":
            values = [client.get(raw_key) or b""]
        elif kind == "list":
            values = list(client.lrange(raw_key, 0, -1))
        elif kind == "hash":
            values = [b for pair in client.hgetall(raw_key).items() for b in pair]
        elif kind == "set":
            values = list(client.smembers(raw_key))
        elif kind == "zset":
            values = list(client.zrange(raw_key, 0, -1))
        body = "\n".join(text_of(v) for v in values)
        texts[f"redis:{key}"] = decoded(f"{key}\n{body}")
    return texts


def flower_texts(url: str, auth: tuple[str, str], task_ids: list[str]) -> dict[str, str]:
    def get(path: str) -> str:
        response = requests.get(url + path, auth=auth, timeout=30)
        assert response.status_code == 200, (path, response.status_code)
        return response.text

    paths = [
        "/api/tasks",
        "/api/workers?refresh=1",  # stats, conf, registered, queues, active, reserved
        "/api/task/types",
        "/api/queues/length",
        "/metrics",
        "/",
        "/tasks",
        "/broker",
    ]
    paths += [f"/api/task/info/{i}" for i in task_ids] + [f"/task/{i}" for i in task_ids]
    paths += [f"/api/task/result/{i}" for i in task_ids]
    workers = json.loads(get("/api/workers"))
    paths += [f"/worker/{name}" for name in workers]
    return {f"flower:{p}": get(p) for p in paths}


def bucket_texts(root: Path) -> dict[str, str]:
    return {
        f"bucket:{p.relative_to(root)}": p.read_text(errors="replace")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def leaks(sources: dict[str, str], secrets: dict[str, str]) -> list[str]:
    found = []
    for where, text in sources.items():
        for name, secret in secrets.items():
            for form in variants(secret):
                if form and form in text:
                    at = text.index(form)
                    context = text[max(0, at - 80) : at + len(form) + 40].replace("\n", " ")
                    found.append(f"{name} in {where}: …{context}…")
                    break
    return found


# -- the test ---------------------------------------------------------------------------------


def test_no_planted_secret_appears_anywhere(
    planted: tuple[dict[str, str], dict[str, Emulator], Path],
    worker_factory: WorkerFactory,
    redis_url: str,
    redis_prefix: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    environ, emulators, token_dir = planted
    jobs = shipped_config("dev")["jobs"]
    config = write_config(
        tmp_path / "c.yaml",
        schedules=dict.fromkeys(jobs, "* * * * *"),  # beat sends them all at its next minute
        retry_backoff_seconds=1,
    )
    secrets: dict[str, str] = {
        **PLANTED,
        "FLOWER_BASIC_AUTH password": FLOWER_PASSWORD,
        # What a Basic Authorization header carries, base64-encoded as a whole.
        "Flower user:password": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
        "Spotify id:secret": f"{PLANTED['SPOTIFY_CLIENT_ID']}:{PLANTED['SPOTIFY_CLIENT_SECRET']}",
    }
    extra = {**environ}
    redis_with_password = redis_url_with_password(redis_url)
    assert redis_with_password, f"{redis_url} refuses AUTH default <password>: none planted"
    extra["REDIS_URL"] = redis_with_password
    secrets["REDIS_URL password"] = REDIS_PASSWORD
    with SentryEndpoint(SENTRY_KEY) as sentry:
        extra["SENTRY_DSN"] = sentry.dsn
        secrets["SENTRY_DSN key"] = SENTRY_KEY
        worker = worker_factory(extra_env=extra, config=config, concurrency=3)
        flower_env = {**worker.environ, "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}"}
        auth = (FLOWER_USER, FLOWER_PASSWORD)
        with running_flower(flower_env, tmp_path / "flower.log") as flower:
            beat = Beat(worker.environ, tmp_path / "beat.log")

            def sent() -> dict[str, Any]:
                got = requests.get(f"{flower.url}/api/tasks", auth=auth, timeout=30).json()
                return {k: v for k, v in got.items() if v["name"].startswith("tasks.")}

            try:
                for job in jobs:
                    beat.wait_log(f"Sending due task {job} ", timeout=70)
                # Beat logs before it publishes: wait for the messages (task-sent events).
                wait_for(lambda: len(sent()) >= len(jobs), 30, "beat to publish every job", 0.2)
            finally:
                beat.stop()  # one tick: no second round of runs
            # The messages as they wait in the queues (bodies, headers, kwargs), before the
            # worker acknowledges them and they leave Redis.
            in_flight = {
                f"{k} (in flight)": v for k, v in redis_texts(redis_client, redis_prefix).items()
            }

            # Every run reaches a final state (retries included), as Flower sees it.
            def final() -> dict[str, Any] | None:
                runs = sent()
                done = [v for v in runs.values() if v["state"] in ("SUCCESS", "FAILURE")]
                return runs if len(runs) >= len(jobs) and len(done) == len(runs) else None

            try:
                runs = wait_for(final, 120, "every run to finish", 1)
            except AssertionError:
                seen = requests.get(f"{flower.url}/api/tasks", auth=auth, timeout=30).json()
                states = sorted((v["name"], v["state"]) for v in seen.values())
                raise AssertionError(f"runs not final after 120 s: {states}") from None
            failed = {r["name"] for r in runs.values() if r["state"] == "FAILURE"}
            outcomes = sorted((r["name"], r["state"], r.get("exception")) for r in runs.values())
            assert failed == FAILING and len(runs) == len(jobs), outcomes
            # Each failed run is reported; wait for their envelopes to arrive.
            wait_for(lambda: len(sentry.items("event")) >= len(FAILING), 30, "Sentry events", 0.5)

            sources: dict[str, str] = dict(in_flight)
            sources.update(flower_texts(flower.url, auth, list(runs)))
            sources["log:worker"] = worker.log()
            sources["log:beat"] = beat.log()
            sources["log:flower"] = flower.log()
        sources.update(redis_texts(redis_client, redis_prefix))
        sources.update(bucket_texts(tmp_path / "bucket"))
        # Items only: an envelope's header carries the DSN's key, which is how the SDK
        # authenticates to Sentry, like an Authorization header.
        for n, (kind, payload) in enumerate(sentry.payloads()):
            sources[f"sentry:{n}:{kind}"] = payload.decode(errors="replace")

    # What was searched is not empty: the runs wrote, logged, were shown and reported.
    bucket = [k for k in sources if k.startswith("bucket:")]
    assert any("/errors/" in k for k in bucket) and any("/_runs/" in k for k in bucket)
    assert any("/landing/" in k for k in bucket) and any("/_state/" in k for k in bucket)
    assert any(k.startswith("redis:") and "celery-task-meta" in k for k in sources)
    assert "Sending due task" in sources["log:beat"]

    tokens = issued_tokens(emulators, token_dir)
    assert len(tokens) >= 4, tokens  # Spotify and Strava rotated, Garmin's stored pair
    secrets.update({f"issued token #{n} ({t[:4]}…)": t for n, t in enumerate(sorted(tokens))})
    found = leaks(sources, secrets)
    assert not found, "secrets leaked:\n" + "\n".join(found)
    # The planted credentials were the ones in use: the emulators accept nothing else, and seven
    # runs succeeded; the planted refresh tokens were spent and rotated ones stored.
    assert PLANTED["STRAVA_REFRESH_TOKEN"] in emulators["strava"].revoked  # type: ignore[attr-defined]


def test_the_search_finds_a_secret_in_each_form_it_can_take() -> None:
    secret = "plantedExample/Secret+1"
    message = base64.b64encode(json.dumps({"kwargs": {"token": secret}}).encode()).decode()
    sources = {
        "plain": f"token={secret}",
        "url": f"?t={urllib.parse.quote(secret, safe='')}",
        "json": json.dumps({"v": secret + '"'}),
        "basic": "Authorization: Basic " + base64.b64encode(f"u:{secret}".encode()).decode(),
        "queued message": decoded(f'{{"body": "{message}"}}'),
        "clean": "token=[Filtered]",
    }
    found = leaks(sources, {"secret": secret, "u:secret": f"u:{secret}"})
    assert sorted(f.split(" in ")[1].split(":")[0] for f in found) == [
        "basic",
        "json",
        "plain",
        "queued message",
        "url",
    ]
