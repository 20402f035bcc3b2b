"""Where rotated provider tokens live, so a restart or another worker never loses them.

Two stores, one interface (``read``, ``write``, ``locked``):

- :class:`TokenStore`: one JSON file per provider in ``ELA_TOKEN_DIR`` (default
  ``~/.config/ela/tokens``; the compose files mount a volume there), written atomically (rename
  into place, ``0600``), with an exclusive file lock across a refresh. Enough for every worker
  of one host, or of hosts sharing that folder.
- :class:`SharedTokenStore`, chosen by :meth:`TokenStore.from_env` when both ``ELA_TOKEN_KEY``
  and ``REDIS_URL`` are set: the tokens in Redis, encrypted (Fernet) with the key from the
  environment, under a Redis lock, so workers on any number of hosts refresh one token in turn.
  Strava and Garmin rotate their refresh tokens on every refresh: a worker using a copy of its
  own would present a dead one. Every write is mirrored to the local folder, and every read
  keeps the mirror up to date, so that a wiped Redis (FLUSHALL, a restart without persistence)
  loses nothing: a store entry carries a revision, the newest of Redis and the mirror wins, and
  a mirror newer than Redis (Redis wiped, or unreachable when the rotation happened) is put
  back. If Redis and every mirror are gone, workers start again from the bootstrap variables
  (``STRAVA_REFRESH_TOKEN``, ``SPOTIFY_REFRESH_TOKEN``), and a rotated-away Strava token asks for
  ``ela auth strava``.

Secrets never go to the bucket or the logs. Without a key (the sandbox, ``ela run --inline``
on a laptop, the tests) the file store is used, as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ela.errors import ReauthError, RetriableError

log = logging.getLogger("ela.tokens")

KEY_VARIABLE = "ELA_TOKEN_KEY"
_REV = "_ela_rev"  # the entry's revision, kept inside the stored object, never handed out
# A refresh holds the lock for one token call (ELA_HTTP_TIMEOUT, 60 s by default, plus the
# client's retries); a holder that died frees it after this. Waiters give up a little later.
LOCK_TTL_S = 180.0
LOCK_WAIT_S = LOCK_TTL_S + 15.0


def token_dir(environ: Mapping[str, str] = os.environ) -> Path:
    default = Path.home() / ".config" / "ela" / "tokens"
    return Path(environ.get("ELA_TOKEN_DIR") or default)


def _revision(data: Mapping[str, Any] | None) -> int:
    value = (data or {}).get(_REV)
    return value if isinstance(value, int) else 0


def _public(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    return {k: v for k, v in data.items() if k != _REV}


def cipher(key: str) -> Any:
    """The ``MultiFernet`` for ``ELA_TOKEN_KEY`` (the first key encrypts, any decrypts).

    Raises:
        ValueError: one line naming the variable and how to make a key.
    """
    from cryptography.fernet import Fernet, MultiFernet

    try:
        return MultiFernet([Fernet(k.strip()) for k in key.split(",") if k.strip()])
    except ValueError:
        raise ValueError(
            f"{KEY_VARIABLE} is not a Fernet key (44 url-safe base64 characters; NEW,OLD to "
            "change keys); make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None


class TokenStore:
    """Tokens in a local folder, one JSON file per provider."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TokenStore:
        """The shared store when ``ELA_TOKEN_KEY`` and ``REDIS_URL`` are set, else the folder.

        Only an explicit ``REDIS_URL`` counts: an in-process run must not put tokens into
        whatever Redis happens to listen on localhost.
        """
        local = cls(token_dir(environ))
        key, url = environ.get(KEY_VARIABLE), environ.get("REDIS_URL")
        if not (key and url):
            return local
        return SharedTokenStore(url, key, local, prefix=environ.get("ELA_REDIS_PREFIX", ""))

    @property
    def where(self) -> str:
        """Where the tokens are, for messages to a person."""
        return str(self.directory)

    def _path(self, provider: str) -> Path:
        return self.directory / f"{provider}.json"

    def _load(self, provider: str) -> dict[str, Any] | None:
        """The stored object, revision included."""
        try:
            data = json.loads(self._path(provider).read_text())
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def _save(self, provider: str, data: Mapping[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{provider}-")
        with os.fdopen(fd, "w") as out:
            json.dump(dict(data), out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self._path(provider))

    def read(self, provider: str) -> dict[str, Any] | None:
        return _public(self._load(provider))

    def write(self, provider: str, tokens: Mapping[str, Any]) -> None:
        current = _revision(self._load(provider))
        self._save(provider, {**tokens, _REV: current + 1})

    @contextlib.contextmanager
    def locked(self, provider: str) -> Iterator[None]:
        """Hold the provider's refresh lock (blocking) for the duration of the block."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.directory / f".{provider}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class SharedTokenStore(TokenStore):
    """Tokens in Redis, encrypted, under a Redis lock; mirrored in a local folder.

    Args:
        url: the Redis to keep them in (``REDIS_URL``). Both environments use the same
            provider credentials, so on one host their workers also share the mirror folder
            (the compose files' ``ela-tokens`` volume), which carries a rotation from one
            env's Redis to the other's.
        key: one Fernet key, or several comma-separated (the first encrypts; any decrypts, to
            rotate keys).
        local: the mirror.
        prefix: ``ELA_REDIS_PREFIX``.

    Raises:
        ReauthError: ``key`` is not a Fernet key.
    """

    def __init__(self, url: str, key: str, local: TokenStore, prefix: str = "") -> None:
        super().__init__(local.directory)
        import redis

        try:
            self._fernet = cipher(key)
        except ValueError as exc:
            raise ReauthError(str(exc)) from None
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.prefix = prefix
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._held = threading.local()  # providers whose lock this thread holds (re-entrant)

    @property
    def where(self) -> str:
        return f"Redis (encrypted; mirrored in {self.directory})"

    def _key(self, provider: str) -> str:
        return f"{self.prefix}ela:tokens:{provider}"

    def _remote(self, provider: str) -> dict[str, Any] | None:
        from cryptography.fernet import InvalidToken

        blob = self.redis.get(self._key(provider))
        if blob is None:
            return None
        try:
            data = json.loads(self._fernet.decrypt(blob))
        except InvalidToken:
            raise ReauthError(
                f"{KEY_VARIABLE} cannot decrypt the {provider} tokens kept in Redis: every "
                f"worker needs the same key (to change it, set {KEY_VARIABLE}=NEW,OLD until "
                "the tokens are written again)"
            ) from None
        return data if isinstance(data, dict) else None

    def _newest(self, provider: str) -> dict[str, Any] | None:
        """The newer of Redis's and the mirror's entry; the other is brought up to it."""
        local = super()._load(provider)
        try:
            remote = self._remote(provider)
            if local is not None and _revision(local) > _revision(remote):
                # Redis lost it (wiped), or the rotation reached only this host's folder (Redis
                # was away, or it came through the other env's Redis): give it back.
                with self.locked(provider):
                    remote = self._remote(provider)
                    if _revision(local) > _revision(remote):
                        self._put(provider, local)
                        log.warning(
                            "token store: %s tokens put back in Redis from %s",
                            provider,
                            self.directory,
                        )
                        remote = local
        except self._errors as exc:
            log.warning("token store: Redis unreachable (%s); using %s", exc, self.directory)
            return local
        if remote is not None and _revision(remote) > _revision(local):
            super()._save(provider, remote)  # keep the mirror as fresh as what we use
        return remote if remote is not None else local

    def _put(self, provider: str, data: Mapping[str, Any]) -> None:
        self.redis.set(self._key(provider), self._fernet.encrypt(json.dumps(dict(data)).encode()))

    def read(self, provider: str) -> dict[str, Any] | None:
        return _public(self._newest(provider))

    def write(self, provider: str, tokens: Mapping[str, Any]) -> None:
        data = {**tokens, _REV: _revision(self._newest(provider)) + 1}
        super()._save(provider, data)  # first: it survives a Redis wipe or outage
        try:
            self._put(provider, data)
        except self._errors as exc:
            log.warning(
                "token store: Redis unreachable (%s); the new %s tokens are kept in %s and go "
                "to Redis on the next read that reaches it",
                exc,
                provider,
                self.directory,
            )

    @contextlib.contextmanager
    def locked(self, provider: str) -> Iterator[None]:
        """The provider's lock in Redis (every host) and in the mirror folder (the other env's
        workers on this host, whose Redis may be another one). Re-entrant per thread."""
        held: set[str] = self._held.__dict__.setdefault("providers", set())
        if provider in held:
            yield
            return
        lock = self.redis.lock(
            f"{self._key(provider)}:lock", timeout=LOCK_TTL_S, blocking_timeout=LOCK_WAIT_S
        )
        try:
            acquired = lock.acquire()
        except self._errors as exc:
            log.warning("token store: Redis unreachable (%s); locking %s only", exc, provider)
            acquired = None
        if acquired is False:
            raise RetriableError(
                f"token store: another worker has held the {provider} refresh lock for "
                f"{LOCK_WAIT_S:.0f} s"
            )
        held.add(provider)
        try:
            with super().locked(provider):
                yield
        finally:
            held.discard(provider)
            if acquired:
                with contextlib.suppress(*self._errors):  # expired, or Redis went away
                    lock.release()
