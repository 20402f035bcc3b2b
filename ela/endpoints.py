"""Where each provider lives, and the one way a request's URL is pointed there.

Every URL can be redirected by an environment variable (docs/configuration.md) so tests, proxies and
``ela demo`` can point the real client libraries elsewhere. The libraries hard-code their
provider's URLs, and APIs answer with absolute links naming them; :class:`Hosts` is the one
rewrite of those onto the configured bases, and the one check that a request (with the
credentials the library put on it) goes nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from urllib.parse import urlsplit

from ela.errors import PayloadError

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


def origin(link: str) -> str:
    """``scheme://host:port`` of a URL, lower-cased, the port always spelled out."""
    parts = urlsplit(link)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"https": 443, "http": 80}.get(scheme)
    except ValueError:  # a port that is not a number
        port = None
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


class Hosts:
    """A provider's hosts: where its client library sends requests, and where they go instead.

    Args:
        service: the provider, for messages.
        bases: each base URL the library hard-codes (or API links name), mapped to the base
            it is configured to use (the same URL when not redirected).
    """

    def __init__(self, service: str, bases: Mapping[str, str]) -> None:
        self.service = service
        # Longest first, so that a base inside another (a path under the same host) wins.
        self._bases = sorted(
            (
                (library.rstrip("/"), configured.rstrip("/"))
                for library, configured in bases.items()
            ),
            key=lambda pair: -len(pair[0]),
        )
        self.origins = frozenset(origin(configured) for _, configured in self._bases)

    @classmethod
    def of(cls, service: str, environ: Mapping[str, str], *names: str, **extra: str) -> Hosts:
        """The hosts named by the environment variables ``names`` (their library default is
        the one in DEFAULTS), plus ``extra`` (library base → configured base) pairs."""
        bases = {DEFAULTS[name]: url(name, environ) for name in names}
        return cls(service, {**bases, **extra})

    def rewrite(self, link: str) -> str:
        """``link`` moved from the library's base onto the configured one (unchanged if it is
        under no library base)."""
        for library, configured in self._bases:
            if library != configured and (
                link == library or link.startswith((library + "/", library + "?"))
            ):
                return configured + link[len(library) :]
        return link

    def route(self, link: str, where: str = "") -> str:
        """The URL to send a request for ``link`` to: rewritten, and on a configured host.

        Raises:
            PayloadError: the URL names another host (an API link, a redirect): credentials
                go only to the configured hosts, so it is not followed.
        """
        link = self.rewrite(link)
        found = origin(link)
        if found not in self.origins:
            hosts = ", ".join(sorted(self.origins))
            raise PayloadError(
                f"{self.service}: {where + ': ' if where else ''}refused to follow a link to "
                f"{found}, which is not a configured host of {self.service} ({hosts}); "
                "credentials are sent only there"
            )
        return link
