"""The token stores: the local folder, and tokens shared through Redis by every host.

Real Redis (the test's key prefix) and, for runs, the Strava emulator through the real
connector (``run_job`` in this process). Two "hosts" are two token folders on one Redis. Two
real worker processes sharing rotations are in test_reliability.py.
"""

from __future__ import annotations

import json
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet

from ela import config as config_module
from ela.errors import ReauthError
from ela.pipeline import run_job
from ela.sandbox.emulators.strava import StravaEmulator
from ela.sandbox.processes import REPO, free_port
from ela.sandbox.stores import delete_prefixed
from ela.sinks import LocalBucket
from ela.tokens import SharedTokenStore, TokenStore

KEY = Fernet.generate_key().decode()
CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
SECRET = "refresh-secret-8c1f"

Hosts = Callable[..., SharedTokenStore]


@pytest.fixture
def host(redis_url: str, redis_prefix: str, tmp_path: Path) -> Hosts:
    """``host("a")``: the shared store as a worker on host "a" (its own token folder) sees it."""

    def make(name: str, key: str = KEY, url: str = redis_url) -> SharedTokenStore:
        store = TokenStore.from_env(environ(name, tmp_path, url, redis_prefix, key))
        assert isinstance(store, SharedTokenStore)
        return store

    return make


def environ(name: str, tmp_path: Path, url: str, prefix: str, key: str = KEY) -> dict[str, str]:
    return {
        "ELA_TOKEN_KEY": key,
        "REDIS_URL": url,
        "ELA_REDIS_PREFIX": prefix,
        "ELA_TOKEN_DIR": str(tmp_path / f"tokens-{name}"),
    }


def test_the_shared_store_needs_a_key_and_an_explicit_redis(tmp_path: Path) -> None:
    folder = {"ELA_TOKEN_DIR": str(tmp_path)}
    assert type(TokenStore.from_env(folder)) is TokenStore
    assert type(TokenStore.from_env({**folder, "ELA_TOKEN_KEY": KEY})) is TokenStore
    assert type(TokenStore.from_env({**folder, "REDIS_URL": "redis://x:1/0"})) is TokenStore
    shared = TokenStore.from_env({**folder, "ELA_TOKEN_KEY": KEY, "REDIS_URL": "redis://x:1/0"})
    assert isinstance(shared, SharedTokenStore)


def test_tokens_are_encrypted_in_redis_and_reach_every_host(
    host: Hosts, redis_client: redis.Redis, redis_prefix: str
) -> None:
    a, b = host("a"), host("b")
    a.write("strava", {"refresh_token": SECRET, "expires_at": 1})
    blob = redis_client.get(f"{redis_prefix}ela:tokens:strava")
    assert blob and SECRET.encode() not in blob
    assert b.read("strava") == {"refresh_token": SECRET, "expires_at": 1}
    # b now holds a mirror of what it uses, private to its user, as the folder store does.
    mirror = b.directory / "strava.json"
    assert json.loads(mirror.read_text())["refresh_token"] == SECRET
    assert stat.S_IMODE(mirror.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "key", ["not-a-key", Fernet.generate_key().decode()], ids=["malformed", "another-key"]
)
def test_a_wrong_or_malformed_key_is_one_line_naming_the_variable(host: Hosts, key: str) -> None:
    host("a").write("strava", {"refresh_token": SECRET})
    with pytest.raises(ReauthError) as caught:
        host("b", key=key).read("strava")
    assert "ELA_TOKEN_KEY" in str(caught.value) and "\n" not in str(caught.value)


def test_keys_rotate_with_new_comma_old(host: Hosts) -> None:
    host("a").write("strava", {"refresh_token": SECRET})
    rotated = host("b", key=f"{Fernet.generate_key().decode()},{KEY}")
    assert rotated.read("strava") == {"refresh_token": SECRET}


def wipe(client: redis.Redis, prefix: str) -> None:
    delete_prefixed(client, prefix)


def test_a_wiped_redis_gets_the_newest_mirror_back(
    host: Hosts, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """FLUSHALL: the tokens come back from a worker's folder; if that one is stale (another host
    rotated since), the host with the newer copy puts it back as soon as it reads."""
    a, b, fresh = host("a"), host("b"), host("fresh")
    a.write("strava", {"refresh_token": "r1"})
    assert b.read("strava") == {"refresh_token": "r1"}
    b.write("strava", {"refresh_token": "r2"})  # b rotates; a's folder still has r1
    wipe(redis_client, redis_prefix)
    assert fresh.read("strava") is None  # nothing anywhere it can see
    assert a.read("strava") == {"refresh_token": "r1"}  # a puts back what it has
    assert b.read("strava") == {"refresh_token": "r2"}  # b's is newer: it wins
    assert a.read("strava") == fresh.read("strava") == {"refresh_token": "r2"}


def test_the_lock_holds_across_hosts_and_is_reentrant(host: Hosts) -> None:
    a, b = host("a"), host("b")
    order: list[str] = []

    def other_host() -> None:
        with b.locked("strava"):
            order.append("b")

    with a.locked("strava"):
        with a.locked("strava"):  # a refresh re-reads (and may put back) under its own lock
            order.append("a")
        waiter = threading.Thread(target=other_host)
        waiter.start()
        time.sleep(0.5)
        order.append("a-done")  # b is still waiting
    waiter.join(5)
    assert order == ["a", "a-done", "b"]


def test_without_redis_the_folder_carries_on_and_catches_redis_up_later(
    host: Hosts, tmp_path: Path
) -> None:
    """Redis away: reads and writes use the folder (logged), the lock is the folder's; once Redis
    answers again, the rotation made meanwhile goes back to it."""
    away = host("a", url=f"redis://127.0.0.1:{free_port()}/0")
    with away.locked("strava"):
        away.write("strava", {"refresh_token": "while-away"})
    assert away.read("strava") == {"refresh_token": "while-away"}
    back = host("a")  # the same host, Redis reachable again
    assert back.read("strava") == {"refresh_token": "while-away"}
    assert host("b").read("strava") == {"refresh_token": "while-away"}


# -- runs through the real Strava connector ------------------------------------------------------


@pytest.fixture
def strava() -> Iterator[StravaEmulator]:
    # 10-minute access tokens: the connector refreshes within an hour of expiry, so every run
    # refreshes, and every refresh rotates the refresh token.
    with StravaEmulator(activities=5, token_lifetime=600) as emulator:
        yield emulator


def athlete_run(environ: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    return run_job(
        CONFIG,
        "strava_athlete",
        run_id=str(uuid.uuid4()),
        scheduled_at=datetime.now(UTC),
        bucket=LocalBucket(tmp_path / "bucket"),
        environ=environ,
    )


def test_runs_on_two_hosts_never_present_a_rotated_refresh_token(
    strava: StravaEmulator, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    hosts = [
        {**strava.environ(), **environ(name, tmp_path, redis_url, redis_prefix)}
        for name in ("a", "b")
    ]
    for turn in range(6):
        athlete_run(hosts[turn % 2], tmp_path)
    assert strava.refreshes == 6 and strava.stale_refreshes == []


def test_with_every_copy_gone_the_run_asks_for_ela_auth_strava(
    strava: StravaEmulator,
    redis_url: str,
    redis_prefix: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """Redis wiped and no folder holds the tokens: the bootstrap STRAVA_REFRESH_TOKEN was
    rotated away long ago, so the run fails once, saying what to do."""
    host = {**strava.environ(), **environ("a", tmp_path, redis_url, redis_prefix)}
    athlete_run(host, tmp_path)
    wipe(redis_client, redis_prefix)
    for mirror in Path(host["ELA_TOKEN_DIR"]).glob("*.json"):
        mirror.unlink()
    with pytest.raises(ReauthError, match="ela auth strava"):
        athlete_run(host, tmp_path)
