"""Shared fixtures: our own Redis database, the GCS emulator, real worker processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ela.sandbox.processes import base_environ, client_app, start_worker
from ela.sandbox.stores import delete_prefixed, gcs_emulator
from ela.sinks import GCSBucket, LocalBucket
from tests.helpers import WorkerHandle

# Two tiers. The fast one (`scripts/test --fast`, `pytest -m "not integration"`) is unit tests:
# no processes, no Redis, no GCS emulator. A test is `integration` when it uses a fixture that
# needs those (below) or its module says so (`pytestmark`). In the fast tier a test that starts a
# process or opens a Redis connection anyway fails, saying to mark it, so the tiers stay honest.
INTEGRATION_FIXTURES = frozenset(
    {
        "redis_url",
        "redis_prefix",
        "redis_client",
        "storage_emulator",
        "gcs_bucket",
        "worker_factory",
    }
)
FAST_TIER = os.environ.get("ELA_TEST_TIER") == "fast"
# `ela` fits its tables to COLUMNS when set. The runner's terminal (or pytest-xdist, which sets
# it in its workers) must not decide what a test sees: a test that wants a width sets one.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _fast_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the fast tier, starting a process or connecting to Redis fails the test."""
    if not FAST_TIER or request.node.get_closest_marker("integration"):
        return
    import subprocess

    import redis.connection

    def refuse(what: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(
                f"{request.node.nodeid} {what} in the fast tier: mark it "
                "`pytest.mark.integration` (or use a fixture that does)"
            )

        return call

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("starts a process"))
    monkeypatch.setattr(redis.connection.AbstractConnection, "connect", refuse("connects to Redis"))


# Tests use this Redis database (override with ELA_TEST_REDIS_URL), and within it a key prefix
# of their own per session and per test, so concurrent runs never take each other's tasks.
# Only our own keys are deleted afterwards.
TEST_REDIS_URL = os.environ.get("ELA_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
SESSION_PREFIX = f"ela-test-{os.getpid()}-{uuid.uuid4().hex[:6]}:"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"no Redis at {TEST_REDIS_URL}: start one (the test command does)")
    yield TEST_REDIS_URL
    delete_prefixed(client, SESSION_PREFIX)
    client.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix (``ELA_REDIS_PREFIX``) no other test or session uses."""
    prefix = f"{SESSION_PREFIX}{uuid.uuid4().hex[:6]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    delete_prefixed(client, prefix)
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def local_bucket(tmp_path: Path) -> LocalBucket:
    return LocalBucket(tmp_path / "bucket")


@pytest.fixture(scope="session")
def storage_emulator() -> Iterator[str]:
    with gcs_emulator() as host:
        yield host


@pytest.fixture
def gcs_bucket(storage_emulator: str) -> Iterator[GCSBucket]:
    """A fresh bucket in the GCS emulator, through the real google-cloud-storage client."""
    environ = {"STORAGE_EMULATOR_HOST": storage_emulator}
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = storage_emulator  # the client reads it from os.environ
    name = f"ela-test-{uuid.uuid4().hex[:10]}"
    bucket = GCSBucket(name, environ)
    bucket.client.create_bucket(name)
    yield bucket
    for blob in bucket.client.list_blobs(name):
        blob.delete()
    bucket.bucket.delete()
    if old is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old


WorkerFactory = Callable[..., WorkerHandle]


@pytest.fixture
def worker_factory(redis_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start real ``celery -A worker worker`` processes against our Redis database.

    ``worker_factory(extra_env={...}, env="dev", config=None, concurrency=2)``
    (``via_ela=True``: started as ``ela worker``, as the compose files do): ``extra_env``
    carries provider endpoints/credentials, ``ELA_BUCKET_URL`` (default: a folder under
    tmp_path), ``ELA_TOKEN_DIR`` (default: under tmp_path), ``STORAGE_EMULATOR_HOST``.
    """
    handles: list[WorkerHandle] = []

    def factory(
        extra_env: dict[str, str] | None = None,
        env: str = "dev",
        config: str | Path | None = None,
        concurrency: int = 2,
        extra_args: tuple[str, ...] = (),
        via_ela: bool = False,
    ) -> WorkerHandle:
        defaults = {
            "ELA_ENV": env,
            "ELA_BUCKET_URL": (tmp_path / "bucket").as_uri(),
            "ELA_TOKEN_DIR": str(tmp_path / "tokens"),
            "ELA_REDIS_PREFIX": redis_prefix,
        }
        if config is not None:
            defaults["ELA_CONFIG"] = str(config)
        environ = base_environ(redis_url, {**defaults, **(extra_env or {})})
        log = tmp_path / f"worker-{env}-{len(handles)}.log"
        process = start_worker(
            environ, log, concurrency=concurrency, extra_args=extra_args, via_ela=via_ela
        )
        handle = WorkerHandle(process, client_app(environ), env, environ)
        handles.append(handle)
        return handle

    yield factory
    for handle in handles:
        handle.process.stop()
        handle.client.close()


def read_jsonl(data: bytes | None) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in (data or b"").splitlines() if line.strip()]
