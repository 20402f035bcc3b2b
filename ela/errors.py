"""Errors named by what the caller must do about them.

The run pipeline maps every provider exception to one of these through the provider's error
map (``Service.classify``); the Celery task retries only :class:`RetriableError`.
"""

from __future__ import annotations

from typing import Any


class IngestError(Exception):
    """Base class: a run failed for a reason a person can read in one line."""

    kind = "error"


class RetriableError(IngestError):
    """Try again later: rate limits, 5xx, timeouts, dropped connections."""

    kind = "retriable"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ReauthError(IngestError):
    """Credentials are missing, expired or revoked: fail at once; the message says what fixes it."""

    kind = "reauth"


class PayloadError(IngestError):
    """The provider sent something we cannot land (malformed JSON, a record of the wrong shape)."""

    kind = "payload"


class FatalError(IngestError):
    """Anything else that retrying will not fix (e.g. a connector not implemented yet)."""

    kind = "fatal"


class TimeLimitError(IngestError):
    """The run exceeded the environment's ``timeout_minutes`` (Celery's soft time limit)."""

    kind = "time_limit"


class InputError(IngestError):
    """The run was asked for with arguments it cannot take (a wrong type, an unknown job, a bad
    run id): refused before anything is fetched; the message names the field."""

    kind = "input"


class ConfigError(Exception):
    """A configuration problem; ``problems`` holds one ``FILE:LINE: message`` line each.

    ``found`` holds the same problems as (key path, message), e.g.
    ``(("jobs", "x", "cron"), "bad cron: ...")``, for tools that act on them.
    """

    def __init__(
        self, problems: list[str], found: list[tuple[tuple[Any, ...], str]] | None = None
    ) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.found = found or []
