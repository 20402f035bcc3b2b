"""Spotify end to end through spotipy against the local Spotify emulator (loopback only)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from ela import config as config_module
from ela.cli import main
from ela.connectors.base import FetchContext
from ela.connectors.spotify import authorize, spotify
from ela.errors import PayloadError, ReauthError, RetriableError
from ela.pipeline import Overrides, run_job
from ela.sandbox.emulators import spotify as emu
from ela.sandbox.emulators.server import Fault
from ela.sandbox.emulators.spotify import SpotifyEmulator, played_ms
from ela.sandbox.processes import REPO
from ela.sinks import Bucket, LocalBucket
from ela.state import read_cursor
from ela.tokens import TokenStore
from tests.conftest import WorkerFactory, read_jsonl

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
WHEN = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
JSON = list[dict[str, Any]]


@pytest.fixture(scope="module")
def shared() -> Iterator[SpotifyEmulator]:
    """One seeded emulator for the read-only tests (seeding 3,000 tracks takes ~0.2 s)."""
    with SpotifyEmulator() as emulator:
        yield emulator


@pytest.fixture
def spotify_emu() -> Iterator[SpotifyEmulator]:
    """A fresh emulator for tests that add data, inject faults or revoke tokens."""
    with SpotifyEmulator(saved_tracks=400, plays=600, saved_albums=60, playlists=12) as emulator:
        yield emulator


def environ(emulator: SpotifyEmulator, tmp_path: Path, **env: str) -> dict[str, str]:
    return {**emulator.environ(), "ELA_TOKEN_DIR": str(tmp_path / "tokens"), **env}


def run(
    emulator: SpotifyEmulator,
    bucket: Bucket,
    tmp_path: Path,
    job: str,
    run_id: str | None = None,
    overrides: Overrides | None = None,
    **env: str,
) -> dict[str, Any]:
    emulator.reset_calls()
    return run_job(
        CONFIG,
        job,
        run_id=run_id or str(uuid.uuid4()),
        scheduled_at=WHEN,
        bucket=bucket,
        environ=environ(emulator, tmp_path, **env),
        overrides=overrides or Overrides(),
    )


def landed(bucket: Bucket, manifest: dict[str, Any]) -> JSON:
    return [r for o in manifest["objects"] for r in read_jsonl(bucket.get_bytes(o["name"]))]


def same(records: JSON) -> JSON:
    """The records as JSON would carry them (what lands is a JSON round trip)."""
    result: JSON = json.loads(json.dumps(records))
    return result


def iso(play: dict[str, Any]) -> str:
    """A play's ``played_at`` as the manifest writes times (UTC, milliseconds)."""
    return datetime.fromisoformat(play["played_at"]).isoformat(timespec="milliseconds")


def assert_committed_nothing(bucket: Bucket, job: str, cursor: Any = None) -> None:
    assert list(bucket.list("spotify/landing/")) == []
    assert list(bucket.list(f"spotify/_runs/{job}/")) == []
    assert read_cursor(bucket, "spotify", job) == cursor
    [error] = list(bucket.list("spotify/errors/"))
    body = (bucket.get_bytes(error.name) or b"").decode()
    for secret in (emu.CLIENT_SECRET, emu.REFRESH_TOKEN):
        assert secret not in body


# -- what lands -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "expected", "pages"),
    [
        ("spotify_saved_tracks", lambda e: e.saved_tracks[:100], 2),  # dev limit 100
        ("spotify_saved_albums", lambda e: e.saved_albums[:50], 1),  # dev limit 50
        ("spotify_playlists", lambda e: e.playlists[:25], 1),  # dev limit 25
        ("spotify_top_tracks", lambda e: e.top_tracks["medium_term"][:25], 1),
        ("spotify_top_artists", lambda e: e.top_artists["medium_term"][:25], 1),
        ("spotify_recently_played", lambda e: e.plays[-20:][::-1], 1),  # first run: limit 20
    ],
)
def test_each_job_lands_the_providers_records_unchanged(
    shared: SpotifyEmulator, tmp_path: Path, job: str, expected: Any, pages: int
) -> None:
    bucket = LocalBucket(tmp_path / "bucket")
    manifest = run(shared, bucket, tmp_path, job)
    assert landed(bucket, manifest) == same(expected(shared))  # every field, in order
    assert manifest["api_calls"] == 1 + pages == len(shared.calls)  # one token refresh
    assert shared.calls_to("/api/token") == 1
    [obj] = manifest["objects"]
    run8 = manifest["run_id"].replace("-", "")[:8]
    assert obj["name"] == f"spotify/landing/2025_07_01_09_00_{run8}_spotify_{job[8:]}.jsonl"


def test_top_items_follow_the_time_range(shared: SpotifyEmulator, tmp_path: Path) -> None:
    jobs = {
        name: job.model_copy(update={"time_range": "short_term"})
        for name, job in CONFIG.jobs.items()
    }
    config = CONFIG.model_copy(update={"jobs": jobs})
    bucket = LocalBucket(tmp_path / "bucket")
    manifest = run_job(
        config,
        "spotify_top_artists",
        run_id=str(uuid.uuid4()),
        scheduled_at=WHEN,
        bucket=bucket,
        environ=environ(shared, tmp_path),
        overrides=Overrides(limit=50),
    )
    assert landed(bucket, manifest) == same(shared.top_artists["short_term"])
    [(_, _, query)] = [c for c in shared.calls if c[1] == "/v1/me/top/artists"]
    assert query["time_range"] == "short_term" and query["limit"] == "50"


def test_library_pages_at_the_api_maximum_up_to_the_limit(
    shared: SpotifyEmulator, tmp_path: Path
) -> None:
    bucket = LocalBucket(tmp_path / "bucket")
    manifest = run(shared, bucket, tmp_path, "spotify_saved_tracks", overrides=Overrides(limit=120))
    assert landed(bucket, manifest) == same(shared.saved_tracks[:120])
    pages = [q for _, path, q in shared.calls if path == "/v1/me/tracks"]
    # Pages after the first are asked for concurrently: they reach the emulator in any order.
    assert sorted((int(q["offset"]), q["limit"]) for q in pages) == [
        (0, "50"),
        (50, "50"),
        (100, "50"),
    ]


def test_whole_library_follows_next_links_to_the_end(
    shared: SpotifyEmulator, tmp_path: Path
) -> None:
    bucket = LocalBucket(tmp_path / "bucket")
    manifest = run(
        shared, bucket, tmp_path, "spotify_saved_tracks", overrides=Overrides(limit=10_000)
    )
    assert manifest["records"] == 3000
    assert landed(bucket, manifest) == same(shared.saved_tracks)
    assert manifest["api_calls"] == 1 + 60


# -- recently played: the cursor ------------------------------------------------------------


def test_recently_played_lands_each_play_once(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    job = "spotify_recently_played"
    first = run(spotify_emu, local_bucket, tmp_path, job)
    newest = played_ms(spotify_emu.plays[-1])
    assert first["cursor_before"] is None and first["cursor_after"] == newest
    assert read_cursor(local_bucket, "spotify", job) == newest

    # Nothing new: one call (the stored access token is reused), nothing landed, cursor stays.
    again = run(spotify_emu, local_bucket, tmp_path, job)
    assert again["records"] == 0 and again["objects"] == []
    assert again["api_calls"] == 1 == len(spotify_emu.calls)
    [(_, _, query)] = [c for c in spotify_emu.calls if "recently-played" in c[1]]
    assert query == {"limit": "50"}  # the last 50 (all Spotify keeps), whatever `limit` says
    assert again["cursor_after"] == newest and again["warnings"] == []

    # New plays (more than the job's limit of 20, fewer than 50): exactly those land.
    new = spotify_emu.add_plays(33)
    third = run(spotify_emu, local_bucket, tmp_path, job)
    assert landed(local_bucket, third) == same(new[::-1])  # newest first, as the API sends
    assert third["cursor_before"] == newest
    assert third["cursor_after"] == played_ms(new[-1]) == read_cursor(local_bucket, "spotify", job)
    assert third["warnings"] == []


@pytest.mark.integration  # ela status reads the broker too
def test_more_than_50_plays_since_the_last_run_warns_of_a_gap(
    spotify_emu: SpotifyEmulator,
    local_bucket: LocalBucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = "spotify_recently_played"
    run(spotify_emu, local_bucket, tmp_path, job)
    new = spotify_emu.add_plays(80)
    manifest = run(spotify_emu, local_bucket, tmp_path, job)
    assert landed(local_bucket, manifest) == same(new[-50:][::-1])  # all the API still knows
    [warning] = manifest["warnings"]
    assert "full 50" in warning and "may be missing" in warning
    assert manifest["possible_gap"] == {  # between the newest landed before and the oldest now
        "after": iso(spotify_emu.plays[-81]),
        "before": iso(new[-50]),
    }
    assert manifest["cursor_after"] == played_ms(new[-1])

    # `ela status` shows it, from the bucket alone.
    monkeypatch.setenv("ELA_ENV", "dev")
    monkeypatch.delenv("ELA_CONFIG", raising=False)
    at = (WHEN + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    shown = CliRunner().invoke(
        main, ["status", "--stats", "--now", at], env={"ELA_BUCKET_URL": local_bucket.url}
    )
    assert shown.exit_code == 0, shown.output
    after, before = manifest["possible_gap"]["after"], manifest["possible_gap"]["before"]
    assert (
        f"~ {job}: records may be missing between {after.replace('T', ' ')[:16]} and "
        f"{before.replace('T', ' ')[:16]} UTC"
    ) in shown.output
    assert f"~ {job}: 1 run(s) in the window may have missed some" in shown.output


def test_a_play_synced_late_among_older_plays_lands(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    """A play listened to offline shows when the device syncs, before newer plays: a cursor on
    the newest `played_at` would never see it. Within the last 50 plays it lands, once."""
    job = "spotify_recently_played"
    first = run(spotify_emu, local_bucket, tmp_path, job)
    between = datetime.fromisoformat(spotify_emu.plays[-6]["played_at"]) + timedelta(seconds=40)
    [late] = spotify_emu.sync_late([between])

    manifest = run(spotify_emu, local_bucket, tmp_path, job)

    assert landed(local_bucket, manifest) == same([late])
    assert manifest["api_calls"] == 1
    assert manifest["cursor_after"] == first["cursor_after"]  # still the newest play
    assert manifest["warnings"] == [] and "possible_gap" not in manifest
    again = run(spotify_emu, local_bucket, tmp_path, job)
    assert again["records"] == 0 and again["api_calls"] == 1


def test_a_play_from_the_future_lands_once_and_never_moves_the_cursor(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    job = "spotify_recently_played"
    first = run(spotify_emu, local_bucket, tmp_path, job)
    [future] = spotify_emu.sync_late([datetime(9999, 1, 1, tzinfo=UTC)])  # a wrong clock

    manifest = run(spotify_emu, local_bucket, tmp_path, job)

    assert landed(local_bucket, manifest) == same([future])
    assert manifest["cursor_after"] == first["cursor_after"]
    [warning] = manifest["warnings"]
    assert "9999-01-01" in warning and "cursor" in warning
    new = spotify_emu.add_plays(3)  # what really comes next still lands
    assert landed(local_bucket, run(spotify_emu, local_bucket, tmp_path, job)) == same(new[::-1])


def test_exactly_the_window_since_the_cursor_when_plays_fill_50(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    # 49 new plays: the API returns them plus nothing older than the cursor; no gap.
    job = "spotify_recently_played"
    run(spotify_emu, local_bucket, tmp_path, job)
    new = spotify_emu.add_plays(49)
    manifest = run(spotify_emu, local_bucket, tmp_path, job)
    assert landed(local_bucket, manifest) == same(new[::-1])
    assert manifest["warnings"] == []


# -- faults end as the error map says ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "match", "retry_after"),
    [
        (Fault(status=429, retry_after=7, path="/me/tracks", after=1), RetriableError, "429", 7.0),
        (Fault(status=503, path="/me/tracks", times=None), RetriableError, "503", None),
        (Fault(status=500, path="/me/tracks", after=1, times=None), RetriableError, "500", None),
        (Fault(status=502, path="/api/token", times=None), RetriableError, "502", None),
        (Fault(status=429, retry_after=30, path="/api/token"), RetriableError, "429", 30.0),
        (Fault(malformed=True, path="/me/tracks", after=1), PayloadError, "page 2", None),
        (Fault(malformed=True, path="/api/token"), PayloadError, "malformed", None),
        (Fault(status=401, path="/me/tracks", after=1), ReauthError, "ela auth spotify", None),
    ],
    ids=[
        "429",
        "503",
        "500-page2",
        "502-token",
        "429-token",
        "malformed",
        "malformed-token",
        "401",
    ],
)
def test_fault_classes_commit_nothing(
    spotify_emu: SpotifyEmulator,
    local_bucket: LocalBucket,
    tmp_path: Path,
    fault: Fault,
    error: type[Exception],
    match: str,
    retry_after: float | None,
) -> None:
    spotify_emu.inject(fault)
    with pytest.raises(error, match=match) as caught:
        run(spotify_emu, local_bucket, tmp_path, "spotify_saved_tracks")
    if isinstance(caught.value, RetriableError):
        assert caught.value.retry_after == retry_after
    assert_committed_nothing(local_bucket, "spotify_saved_tracks")


def test_a_transient_5xx_is_retried_in_place_and_counted(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    spotify_emu.inject(Fault(status=503, path="/me/tracks", after=1))
    manifest = run(spotify_emu, local_bucket, tmp_path, "spotify_saved_tracks")
    assert landed(local_bucket, manifest) == same(spotify_emu.saved_tracks[:100])
    assert manifest["api_calls"] == 4 == len(spotify_emu.calls)  # token, page, 503, page again


def test_timeout_is_retriable(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    spotify_emu.inject(Fault(status=200, delay=1.5, path="/me/albums"))
    with pytest.raises(RetriableError, match="Timeout"):
        run(spotify_emu, local_bucket, tmp_path, "spotify_saved_albums", ELA_HTTP_TIMEOUT="0.3")
    assert_committed_nothing(local_bucket, "spotify_saved_albums")


def test_a_failed_recently_played_keeps_its_cursor(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    job = "spotify_recently_played"
    cursor = run(spotify_emu, local_bucket, tmp_path, job)["cursor_after"]
    for obj in list(local_bucket.list("spotify/")):  # keep only the state
        if "/_state/" not in obj.name:
            local_bucket.delete(obj.name)
    new = spotify_emu.add_plays(5)
    spotify_emu.inject(Fault(malformed=True, path="/recently-played"))
    with pytest.raises(PayloadError, match="recently_played page 1"):
        run(spotify_emu, local_bucket, tmp_path, job)
    assert_committed_nothing(local_bucket, job, cursor=cursor)
    retried = run(spotify_emu, local_bucket, tmp_path, job)  # the next run picks them up
    assert landed(local_bucket, retried) == same(new[::-1])


def test_a_record_of_the_wrong_shape_is_named_by_position(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    spotify_emu.saved_albums[57] = "not an album"  # type: ignore[call-overload]
    with pytest.raises(PayloadError, match="saved_albums page 2, item 8"):
        run(
            spotify_emu,
            local_bucket,
            tmp_path,
            "spotify_saved_albums",
            overrides=Overrides(limit=60),
        )
    assert_committed_nothing(local_bucket, "spotify_saved_albums")


# -- auth -----------------------------------------------------------------------------------


def test_rejected_refresh_token_asks_for_reauth(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    spotify_emu.revoke_refresh_tokens()
    with pytest.raises(ReauthError, match="invalid_grant") as caught:
        run(spotify_emu, local_bucket, tmp_path, "spotify_playlists")
    assert "SPOTIFY_REFRESH_TOKEN" in str(caught.value)
    assert "ela auth spotify" in str(caught.value)
    assert_committed_nothing(local_bucket, "spotify_playlists")


def test_missing_refresh_token_names_the_variable(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    with pytest.raises(ReauthError, match="SPOTIFY_REFRESH_TOKEN not set"):
        run(spotify_emu, local_bucket, tmp_path, "spotify_playlists", SPOTIFY_REFRESH_TOKEN="")
    assert spotify_emu.calls == []


def test_wrong_client_secret_names_the_variables(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    with pytest.raises(ReauthError, match="SPOTIFY_CLIENT_SECRET"):
        run(spotify_emu, local_bucket, tmp_path, "spotify_playlists", SPOTIFY_CLIENT_SECRET="x")


def test_rotated_refresh_token_is_stored_and_preferred(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens")
    with SpotifyEmulator(
        saved_tracks=60, plays=100, saved_albums=10, playlists=5, rotate_refresh_tokens=True
    ) as rotating:
        bucket = LocalBucket(tmp_path / "bucket")
        run(rotating, bucket, tmp_path, "spotify_playlists")
        first = (store.read("spotify") or {})["refresh_token"]
        assert first != emu.REFRESH_TOKEN  # the env one is spent; the new one is persisted
        assert rotating.refresh_tokens == {first}
        expire_stored_access_token(store)  # else the next run reuses it and never refreshes
        run(rotating, bucket, tmp_path, "spotify_playlists")  # only works with the stored one
        second = (store.read("spotify") or {})["refresh_token"]
        assert second != first and rotating.refresh_tokens == {second}


def expire_stored_access_token(store: TokenStore, seconds_left: float = -1) -> None:
    stored = store.read("spotify") or {}
    assert stored.get("access_token")
    store.write("spotify", {**stored, "expires_at": int(time.time() + seconds_left)})


def test_the_stored_access_token_is_reused_across_runs(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    store = TokenStore(tmp_path / "tokens")
    job = "spotify_recently_played"
    token_calls, manifests = 0, []
    for _ in range(3):
        manifests.append(run(spotify_emu, local_bucket, tmp_path, job))
        token_calls += spotify_emu.calls_to("/api/token")
    assert token_calls == 1  # the first run's refresh; the other two reuse its access token
    assert [m["api_calls"] for m in manifests] == [2, 1, 1]
    stored = store.read("spotify") or {}
    assert stored["access_token"] in spotify_emu.access_tokens
    assert stored["expires_at"] > time.time() + 3000
    # The tokens live in the store only: never in a result or in the bucket.
    for secret in (stored["access_token"], stored["refresh_token"]):
        assert all(secret not in json.dumps(m) for m in manifests)
        for obj in local_bucket.list("spotify/"):
            assert secret.encode() not in (local_bucket.get_bytes(obj.name) or b"")


def test_an_access_token_close_to_expiry_is_refreshed_and_stored(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    store = TokenStore(tmp_path / "tokens")
    run(spotify_emu, local_bucket, tmp_path, "spotify_top_tracks")
    old = (store.read("spotify") or {})["access_token"]
    expire_stored_access_token(store, seconds_left=100)  # under the 120 s margin
    manifest = run(spotify_emu, local_bucket, tmp_path, "spotify_top_tracks")
    assert spotify_emu.calls_to("/api/token") == 1
    assert manifest["api_calls"] == 2
    stored = store.read("spotify") or {}
    assert stored["access_token"] != old and stored["expires_at"] > time.time() + 3000


def test_a_401_to_the_stored_access_token_refreshes_once_and_retries(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    store = TokenStore(tmp_path / "tokens")
    run(spotify_emu, local_bucket, tmp_path, "spotify_saved_tracks")
    old = (store.read("spotify") or {})["access_token"]
    spotify_emu.expire_access_tokens()  # revoked early: the stored expiry still says an hour
    manifest = run(spotify_emu, local_bucket, tmp_path, "spotify_saved_tracks")
    assert landed(local_bucket, manifest) == same(spotify_emu.saved_tracks[:100])
    assert spotify_emu.calls_to("/api/token") == 1
    assert manifest["api_calls"] == 4  # the 401, the refresh, page 1 again, page 2
    stored = store.read("spotify") or {}
    assert stored["access_token"] != old and stored["access_token"] in spotify_emu.access_tokens


def test_a_second_401_after_the_refresh_asks_for_reauth(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    run(spotify_emu, local_bucket, tmp_path, "spotify_saved_tracks")
    spotify_emu.expire_access_tokens()
    for obj in list(local_bucket.list("spotify/")):
        local_bucket.delete(obj.name)
    spotify_emu.inject(Fault(status=401, path="/me/tracks", after=1))  # the retry fails too
    with pytest.raises(ReauthError, match="ela auth spotify"):
        run(spotify_emu, local_bucket, tmp_path, "spotify_saved_tracks")
    assert spotify_emu.calls_to("/api/token") == 1  # refreshed once, not again
    assert_committed_nothing(local_bucket, "spotify_saved_tracks")


def test_access_tokens_expire(spotify_emu: SpotifyEmulator) -> None:
    auth = (emu.CLIENT_ID, emu.CLIENT_SECRET)
    grant = {"grant_type": "refresh_token", "refresh_token": emu.REFRESH_TOKEN}
    token = requests.post(f"{spotify_emu.url}/api/token", data=grant, auth=auth, timeout=5).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert requests.get(f"{spotify_emu.api_url}me", headers=headers, timeout=5).ok
    spotify_emu.expire_access_tokens()
    expired = requests.get(f"{spotify_emu.api_url}me", headers=headers, timeout=5)
    assert expired.status_code == 401
    assert expired.json() == {"error": {"status": 401, "message": "The access token expired"}}


def test_spotipy_never_prompts(
    spotify_emu: SpotifyEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_input(prompt: str = "") -> str:
        raise AssertionError(f"input() reached: {prompt!r}")

    monkeypatch.setattr("builtins.input", no_input)
    ctx = FetchContext(job="spotify_saved_tracks", now=WHEN, environ=environ(spotify_emu, tmp_path))
    with spotify.open_client(ctx) as client:
        # An empty token cache is where spotipy would start its interactive flow.
        client.sp.auth_manager.cache_handler.token_info = None
        with pytest.raises(ReauthError, match="ela auth spotify"):
            client.sp.current_user_saved_tracks(limit=1)


@pytest.mark.integration  # runs the `ela` command or a Python in a process
def test_a_worker_without_stdin_fails_instead_of_blocking(
    spotify_emu: SpotifyEmulator, tmp_path: Path
) -> None:
    script = (
        "import sys, json, uuid\n"
        "from datetime import datetime, UTC\n"
        "from ela import config\n"
        "from ela.pipeline import run_job\n"
        "from ela.sinks import LocalBucket\n"
        "cfg = config.load('ingestion-config-dev.yaml')\n"
        "try:\n"
        "    run_job(cfg, 'spotify_saved_tracks', run_id=str(uuid.uuid4()),\n"
        "            scheduled_at=datetime.now(UTC), bucket=LocalBucket(sys.argv[1]),\n"
        "            environ=json.loads(sys.argv[2]))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = environ(spotify_emu, tmp_path, SPOTIFY_REFRESH_TOKEN="revoked-long-ago")
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "bucket"), json.dumps(env)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.startswith("ReauthError"), done.stdout + done.stderr
    assert "Enter the URL" not in done.stdout + done.stderr


def test_authorize_stores_a_refresh_token_the_jobs_use(
    spotify_emu: SpotifyEmulator, tmp_path: Path
) -> None:
    store = TokenStore(tmp_path / "tokens")
    said: list[str] = []

    def ask(prompt: str, secret: bool) -> str:
        # The user opens the URL, approves, and pastes where the browser landed.
        [url] = [line for line in said if line.startswith(spotify_emu.url)]
        consent = requests.get(url, allow_redirects=False, timeout=5)
        assert consent.status_code == 302
        return consent.headers["Location"]

    env = {**spotify_emu.environ(), "SPOTIFY_REFRESH_TOKEN": ""}
    authorize(env, store, ask, said.append)
    stored = store.read("spotify") or {}
    assert stored["refresh_token"] in spotify_emu.refresh_tokens
    assert stored["refresh_token"] != emu.REFRESH_TOKEN
    bucket = LocalBucket(tmp_path / "bucket")
    # The job runs on the stored token alone (no SPOTIFY_REFRESH_TOKEN in the environment).
    manifest = run(spotify_emu, bucket, tmp_path, "spotify_top_tracks", SPOTIFY_REFRESH_TOKEN="")
    assert manifest["records"] == 25


@pytest.mark.integration  # runs the `ela` command or a Python in a process
def test_connector_modules_do_not_import_their_client_library() -> None:
    # A worker serving one provider must not pay for another's import.
    probe = "import sys, ela.connectors; print(sorted({'spotipy', 'requests'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.strip() == "[]", done.stderr


def test_authorize_refuses_a_pasted_url_from_another_authorization(
    spotify_emu: SpotifyEmulator, tmp_path: Path
) -> None:
    store = TokenStore(tmp_path / "tokens")
    forged = f"{emu.REDIRECT_URI}?code=AQfake&state=someone-elses"
    with pytest.raises(ReauthError, match="state"):
        authorize(spotify_emu.environ(), store, lambda p, s: forged, lambda line: None)
    assert store.read("spotify") is None


# -- the emulator itself ----------------------------------------------------------------------


def test_emulator_is_deterministic_and_scales(shared: SpotifyEmulator) -> None:
    again = SpotifyEmulator()
    assert same(again.saved_tracks[:20]) == same(shared.saved_tracks[:20])
    assert same(again.plays[-5:]) == same(shared.plays[-5:])
    big = SpotifyEmulator(saved_tracks=10_000)
    assert len(big.saved_tracks) == 10_000
    assert len({item["track"]["id"] for item in big.saved_tracks}) == 10_000
    assert len(shared.plays) == 3000 and len(shared.saved_albums) == 300
    span = datetime.fromisoformat(shared.plays[-1]["played_at"]) - datetime.fromisoformat(
        shared.plays[0]["played_at"]
    )
    assert span.days > 60  # months of listening


def test_emulator_enforces_spotify_limits(shared: SpotifyEmulator) -> None:
    auth = (emu.CLIENT_ID, emu.CLIENT_SECRET)
    grant = {"grant_type": "refresh_token", "refresh_token": emu.REFRESH_TOKEN}
    token = requests.post(f"{shared.url}/api/token", data=grant, auth=auth, timeout=5).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    def get(path: str, **params: Any) -> requests.Response:
        return requests.get(f"{shared.api_url}{path}", headers=headers, params=params, timeout=5)

    assert get("me/tracks", limit=51).status_code == 400
    assert get("me/player/recently-played", after=1, before=2).status_code == 400
    assert get("me/top/tracks", time_range="forever").status_code == 400
    oldest_kept = played_ms(shared.plays[-50])
    everything = get("me/player/recently-played", limit=50, after=0).json()
    assert len(everything["items"]) == 50  # only the last 50 plays exist
    assert everything["cursors"]["before"] == str(oldest_kept)
    page = get("me/player/recently-played", limit=10).json()
    assert page["next"].startswith(shared.url)
    older = requests.get(page["next"], headers=headers, timeout=5).json()
    assert older["items"] == same(shared.plays[-20:-10][::-1])
    bad = requests.post(
        f"{shared.url}/api/token",
        data={"grant_type": "refresh_token", "refresh_token": "nope"},
        auth=auth,
        timeout=5,
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"


# -- through a real worker --------------------------------------------------------------------


def test_all_spotify_tasks_through_a_real_worker(
    worker_factory: WorkerFactory, spotify_emu: SpotifyEmulator, tmp_path: Path
) -> None:
    worker = worker_factory(
        extra_env={**spotify_emu.environ(), "ELA_TOKEN_DIR": str(tmp_path / "worker-tokens")}
    )
    bucket = LocalBucket(tmp_path / "bucket")
    expected = {
        "recently_played": spotify_emu.plays[-20:][::-1],
        "saved_tracks": spotify_emu.saved_tracks[:100],
        "saved_albums": spotify_emu.saved_albums[:50],
        "playlists": spotify_emu.playlists[:12],
        "top_tracks": spotify_emu.top_tracks["medium_term"][:25],
        "top_artists": spotify_emu.top_artists["medium_term"][:25],
    }
    for data_type, records in expected.items():
        manifest = worker.call(f"tasks.spotify.{data_type}", timeout=60)
        assert manifest["outcome"] == "succeeded", manifest
        assert landed(bucket, manifest) == same(records), data_type
