"""Secrets out of text and data: what the logs and Sentry send passes through :class:`Scrubber`.

Pure: no Celery, no logging set-up, no Sentry. A secret is a credential value of the
environment, a token in the token store, or anything shaped like a credential (an
``Authorization``/``Bearer`` value, a ``*token``/``*secret``/``*password`` key, a URL's
password); each becomes ``[Filtered]``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from ela.tokens import token_dir

FILTERED = "[Filtered]"

# -- what counts as a secret -------------------------------------------------------------------

_PROVIDER_PREFIXES = ("SPOTIFY_", "STRAVA_", "GARMIN_", "TODOIST_")
# Endpoint overrides are addresses, not credentials; filtering them would only blind the logs.
_NOT_SECRET_SUFFIXES = ("_URL", "_URI")
_SECRET_VAR = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|_AUTH$")
# Shorter values would turn ordinary digits and words into [Filtered] everywhere.
_MIN_SECRET_LEN = 4

# A key (env var, JSON field, header, query parameter) that names a credential: it ends in one
# of these words. ``token_type`` or ``status_code`` do not.
_KEY_WORDS = (
    r"authorization|auth|token|secret|password|passwd|pwd|api[_-]?key|apikey|cookie|dsn"
    r"|credentials?|session[_-]?id"
)
_SENSITIVE_KEY = re.compile(rf"(?i)(?:^|[_\-. ])(?:{_KEY_WORDS})$")

# Each pattern with the words it cannot match without (any of them, in text folded as
# _folded() does): most log lines hold none, and the first pattern alone took 100 µs on a
# 450-character line (every run's success line) where looking for its words takes 2 µs.
_PATTERNS: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    # key=value, key: value, "key": "value", 'key': 'value', ?key=value& — any identifier that
    # ends in a credential word, with an optional auth scheme before the value.
    (
        ("authorization", "token", "secret", "passw", "apikey", "api_key", "api-key"),
        re.compile(
            r"(?i)(\b[\w\-]*?(?:authorization|token|secret|password|passwd|api[_-]?key|apikey)"
            r"(?![\w\-])[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|oauth|token)\s+)?"
            r"(?!\[Filtered\])[^\s\"'&,;}\])]+"
        ),
        rf"\g<1>{FILTERED}",
    ),
    # An Authorization header value on its own: "Bearer abc.def", "OAuth ...".
    (
        ("bearer", "oauth"),
        re.compile(r"(?i)\b(bearer|oauth)\s+(?!\[Filtered\])[\w\-.~+/]{8,}=*"),
        rf"\1 {FILTERED}",
    ),
    # Basic credentials: base64 with a digit or padding, so "basic authentication" survives.
    (
        ("basic",),
        re.compile(r"(?i)\b(basic)\s+(?=[A-Za-z+/]*[\d+/=])[A-Za-z\d+/]{8,}={0,2}"),
        rf"\1 {FILTERED}",
    ),
    # user:password@ in a URL (Redis, the Sentry DSN's key, proxies); Celery's own ":**@"
    # mask is left as it is.
    (
        ("://",),
        re.compile(r"(?i)\b([a-z][a-z\d+.\-]*://)(?!:?\*+@)[^/\s@\"']+@"),
        rf"\1{FILTERED}@",
    ),
)


def _folded(text: str) -> str:
    """``text`` in lower case such that a word a ``(?i)`` pattern matches in it appears in it.
    ``casefold`` maps the letters ``re`` treats as equal to ASCII ones (the Kelvin sign, long s)
    except the dotted and dotless i, mapped here."""
    return text.casefold().replace("i\u0307", "i").replace("\u0131", "i")


def _variants(value: str) -> set[str]:
    """The ways a value shows up in text: as is, JSON- or repr-escaped, URL-encoded."""
    return {
        value,
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
    }


def credential_values(environ: Mapping[str, str]) -> set[str]:
    """Secret values in the environment: provider credentials, passwords in URLs, the DSN key."""
    values: set[str] = set()
    for name, value in environ.items():
        if not value:
            continue
        provider = name.startswith(_PROVIDER_PREFIXES) and not name.endswith(_NOT_SECRET_SUFFIXES)
        if provider or _SECRET_VAR.search(name):
            values.add(value)
        if name == "FLOWER_BASIC_AUTH":  # user:password[,user:password]
            values.update(pair.partition(":")[2] for pair in value.split(","))
        if "://" in value and "@" in value:
            parts = urllib.parse.urlsplit(value)
            values.add(parts.password or "")
            if name == "SENTRY_DSN":
                values.add(parts.username or "")
    return {v for v in values if len(v) >= _MIN_SECRET_LEN}


def _secret_leaves(data: Any, key: str = "") -> Iterable[str]:
    if isinstance(data, Mapping):
        for k, v in data.items():
            yield from _secret_leaves(v, str(k))
    elif isinstance(data, list):
        for v in data:
            yield from _secret_leaves(v, key)
    elif isinstance(data, str) and _SENSITIVE_KEY.search(key):
        yield data


class Scrubber:
    """Replaces secrets in text and nested data with ``[Filtered]``.

    Secrets are the credential values of the environment, the tokens in the token store
    (re-read when a file there changes, at most once a second), and anything shaped like a
    credential: ``Authorization``/``Bearer`` values, ``*token``/``*secret``/``*password`` keys
    and URL passwords.
    """

    RECHECK_SECONDS = 1.0

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        # Every form of the environment's secrets, built once; token values join on each change.
        self._env_secrets = {v for s in credential_values(environ) for v in _variants(s) if v}
        self._token_dir = token_dir(environ)
        self._token_stamp: tuple[tuple[str, int], ...] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._values: re.Pattern[str] | None = None
        # Not wasted: _refresh() stamps _checked before it compiles, so a thread whose text()
        # comes while the first refresh is still compiling uses this: the environment's secrets.
        self._compile(set())

    def _compile(self, token_values: set[str]) -> None:
        secrets = self._env_secrets | {v for s in token_values for v in _variants(s) if v}
        # Longest first, so a secret that contains another is filtered whole.
        alternatives = sorted(secrets, key=len, reverse=True)
        self._values = (
            re.compile("|".join(re.escape(s) for s in alternatives)) if alternatives else None
        )

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.RECHECK_SECONDS:
            return
        with self._lock:
            self._checked = now
            try:
                files = sorted(self._token_dir.glob("*.json"))
                stamp = tuple((f.name, f.stat().st_mtime_ns) for f in files)
            except OSError:
                files, stamp = [], ()
            if stamp == self._token_stamp:
                return
            tokens: set[str] = set()
            for path in files:
                try:
                    tokens.update(_secret_leaves(json.loads(path.read_text())))
                except (OSError, ValueError):
                    continue
            self._token_stamp = stamp
            self._compile({t for t in tokens if len(t) >= _MIN_SECRET_LEN})

    def text(self, text: str) -> str:
        self._refresh()
        if self._values is not None:
            text = self._values.sub(FILTERED, text)
        folded = _folded(text)
        for words, pattern, replacement in _PATTERNS:
            if any(word in folded for word in words):
                text = pattern.sub(replacement, text)
        return text

    def data(self, value: Any) -> Any:
        """A copy of ``value``: credential-named keys and secrets in strings filtered."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                k: FILTERED
                if isinstance(k, str) and _SENSITIVE_KEY.search(k) and value_present(v)
                else self.data(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


def value_present(value: Any) -> bool:
    return value not in (None, "", [], {})
