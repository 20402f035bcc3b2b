"""Where each provider lives. Every URL can be redirected by an environment variable
(SPEC §3) so tests, proxies and ``ela demo`` can point the real client libraries elsewhere."""

from __future__ import annotations

import math
from collections.abc import Mapping

DEFAULTS = {
    "SPOTIFY_API_URL": "https://api.spotify.com/v1/",
    "SPOTIFY_ACCOUNTS_URL": "https://accounts.spotify.com",
    "STRAVA_API_URL": "https://www.strava.com",
    "GARMIN_API_URL": "https://connectapi.garmin.com",
    "GARMIN_SSO_URL": "https://sso.garmin.com",
    "TODOIST_API_URL": "https://api.todoist.com/api/v1",
}

# Connect timeout, read timeout (seconds): no provider request may hang a worker forever.
HTTP_TIMEOUT = (10.0, 60.0)


def http_timeout(environ: Mapping[str, str]) -> tuple[float, float]:
    """(connect, read) seconds; ``ELA_HTTP_TIMEOUT`` overrides the read timeout.

    Raises:
        ValueError: one line naming the variable (checked at start-up by ela.settings).
    """
    raw = environ.get("ELA_HTTP_TIMEOUT")
    try:
        read = float(raw) if raw else HTTP_TIMEOUT[1]
    except ValueError:
        read = math.nan
    if not 0 < read <= 3600:  # also refuses nan
        raise ValueError(f"ELA_HTTP_TIMEOUT={raw!r}: expected seconds between 0 and 3600, e.g. 60")
    return (min(HTTP_TIMEOUT[0], read), read)


def url(name: str, environ: Mapping[str, str]) -> str:
    """The base URL for ``name`` (one of DEFAULTS), without a trailing slash."""
    return (environ.get(name) or DEFAULTS[name]).rstrip("/")
