"""The process environment, checked once at start-up with one line per problem.

A worker started with ``ELA_HTTP_TIMEOUT=abc`` used to start, then fail every run and blame the
provider; a prd process with ``ELA_BUCKET_URL=gs://ela-dp-dev`` wrote into the dev bucket. Every
variable the product reads is checked here, before anything runs: :func:`problems` without I/O,
:func:`redis_problem` by connecting. Each problem names the variable and what to do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ela import endpoints, limits, ratelimit, tokens
from ela.errors import FatalError
from ela.sinks import BucketURLError, parse_bucket_url

if TYPE_CHECKING:
    from ela.config import IngestionConfig

DEFAULT_BROKER = "redis://localhost:6379/0"  # the broker unless REDIS_URL says otherwise
_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+socket")
_TLS_PARAMETER = "ssl_cert_reqs"  # what Celery's Redis backend insists on for rediss://


def broker_prefix(env: str, environ: Mapping[str, str]) -> str:
    """The key prefix of ``env``'s Celery transport on Redis: its queues, the unacked hash,
    events and remote control (kombu prefixes their keys and channels alike), the workers'
    leases and beat's lock. Dev and prd on one Redis then never see each other's workers, events
    or control messages (``inspect``, Flower). ``ELA_REDIS_PREFIX`` comes first (the sandbox's
    own, and the tests')."""
    return f"{environ.get('ELA_REDIS_PREFIX', '')}ela-{env}:"


def result_prefix(env: str, environ: Mapping[str, str]) -> str:
    """The key prefix of ``env``'s task results (``{prefix}celery-task-meta-{id}``)."""
    return f"{environ.get('ELA_REDIS_PREFIX', '')}ela-{env}-"


def problems(config: IngestionConfig, environ: Mapping[str, str]) -> list[str]:
    """Everything wrong with ``environ`` for ``config``'s environment, one line each."""
    found: list[str] = []
    timeout = environ.get("ELA_HTTP_TIMEOUT")
    if timeout:
        try:
            endpoints.http_timeout(environ)
        except ValueError as exc:
            found.append(str(exc))
    try:
        ratelimit.budget(environ, "ELA_STRAVA_READ_BUDGET", (100, 1000))
    except ValueError as exc:
        found.append(str(exc))
    for check in (limits.max_body_bytes, limits.max_spool_bytes):
        try:
            check(environ)
        except FatalError as exc:
            found.append(str(exc))
    for name in endpoints.DEFAULTS:
        value = environ.get(name)
        if value and urlsplit(value).scheme not in ("http", "https"):
            found.append(f"{name}={value!r}: expected an http:// or https:// URL")
    found.extend(_bucket_problems(config, environ))
    emulator = environ.get("STORAGE_EMULATOR_HOST")
    if emulator and not urlsplit(_with_scheme(emulator)).hostname:
        found.append(f"STORAGE_EMULATOR_HOST={emulator!r}: expected host:port or http://host:port")
    redis_url = environ.get("REDIS_URL")
    if redis_url:
        found.extend(_redis_url_problems(redis_url))
    key = environ.get(tokens.KEY_VARIABLE)
    if key:
        try:
            tokens.cipher(key)
        except ValueError as exc:
            found.append(str(exc))
    return found


def _bucket_problems(config: IngestionConfig, environ: Mapping[str, str]) -> list[str]:
    url = environ.get("ELA_BUCKET_URL")
    if not url:
        return []
    try:
        scheme, location = parse_bucket_url(url)
    except BucketURLError as exc:
        return [str(exc)]
    other = "prd" if config.env == "dev" else "dev"
    if scheme == "gs" and other in re.split(r"[-_.]", location):
        return [
            f"ELA_BUCKET_URL={url!r} is the {other} bucket but this process runs {config.env}; "
            f"use gs://ela-dp-{config.env} (or leave ELA_BUCKET_URL unset)"
        ]
    return []


def _with_scheme(host: str) -> str:
    return host if "://" in host else f"http://{host}"


def _redis_url_problems(url: str) -> list[str]:
    parts = urlsplit(url)
    shown = redacted(url)
    if parts.scheme not in _REDIS_SCHEMES:
        return [f"REDIS_URL={shown!r}: expected redis://host:port/db (or rediss:// for TLS)"]
    if parts.scheme == "rediss" and _TLS_PARAMETER not in parse_qs(parts.query):
        return [
            f"REDIS_URL={shown!r}: a rediss:// URL needs ?{_TLS_PARAMETER}=required (or "
            "optional/none), plus ssl_ca_certs=/path when the server's certificate is private"
        ]
    return []


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def redis_problem(url: str, timeout: float = 3.0) -> str | None:
    """One line if Redis at ``url`` cannot be used (down, wrong password, TLS), else None."""
    import redis

    shown = redacted(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as exc:
        return f"REDIS_URL={shown!r}: {exc}"
    try:
        client.ping()
    except redis.AuthenticationError:  # also NOAUTH: a password is needed and none was given
        said = "requires a password" if not urlsplit(url).password else "refused the credentials"
        return (
            f"REDIS_URL={shown!r}: Redis {said}; put the right password in REDIS_URL "
            "(redis://:PASSWORD@host:port/db)"
        )
    except redis.RedisError as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        return f"REDIS_URL={shown!r}: cannot reach Redis ({reason}); start it or fix REDIS_URL"
    finally:
        client.close()
    return None
