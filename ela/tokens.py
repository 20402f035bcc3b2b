"""Where rotated provider tokens live, so a restart or a second worker never loses them.

One JSON file per provider in ``ELA_TOKEN_DIR`` (default ``~/.config/ela/tokens``; the compose
files mount a volume there). Never the bucket, never logs. Writes are atomic (rename into place)
and :meth:`TokenStore.locked` holds an exclusive lock across a refresh, so two workers on the
same host (or sharing the volume) never refresh at once and never overwrite each other's newer
token.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def token_dir(environ: Mapping[str, str] = os.environ) -> Path:
    default = Path.home() / ".config" / "ela" / "tokens"
    return Path(environ.get("ELA_TOKEN_DIR") or default)


class TokenStore:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TokenStore:
        return cls(token_dir(environ))

    def _path(self, provider: str) -> Path:
        return self.directory / f"{provider}.json"

    def read(self, provider: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._path(provider).read_text())
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def write(self, provider: str, tokens: Mapping[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{provider}-")
        with os.fdopen(fd, "w") as out:
            json.dump(dict(tokens), out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self._path(provider))

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
