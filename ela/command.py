"""The origin orchestrator's job ``command`` lines, read as parameters.

The origin ran each job as a shell line (docs/configuration.md, "The keys the origin had")::

    python -m src.connectors.spotify.spotify_fetch top_tracks --limit 25 --time-range medium_term
    python -m src.connectors.strava.strava --athlete
    python -m src.connectors.garmin.garmin_fetch sleep --days 1
    python -m src.connectors.todoist.todoist tasks

Nothing here runs the line. It tells which service (the package under ``src.connectors``) and
data type (the positional argument; for Strava ``--athlete`` or not) the line fetched, and
which parameters it passed, so that a config keeping the origin's ``command`` loads with the
same parameters, and the loader can check them against the job's ``service``/``data_type``.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from typing import Any

# The flags of the origin's fetchers, and the job parameter each one sets.
PARAM_FLAGS = {"--limit": "limit", "--days": "days", "--time-range": "time_range"}
# Strava's fetcher lands the athlete with this flag and activities without it.
STRAVA_ATHLETE_FLAG = "--athlete"
TIME_RANGES = ("short_term", "medium_term", "long_term")
_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")
_MODULE = re.compile(r"^src\.connectors\.(?P<service>[a-z_]+)\.[A-Za-z_][A-Za-z0-9_]*$")
_SHELL = {"&&", "||", "|", ";", ">", ">>", "<", "&"}


class CommandError(ValueError):
    """A command line that does not read as one of the origin's fetcher calls."""


@dataclasses.dataclass(frozen=True)
class Command:
    """What an origin command line fetched.

    Attributes:
        service: the package under ``src.connectors`` (``spotify``).
        data_type: the data type it named (``recently_played``), or None if it named none.
        params: the parameters its flags set (``{"limit": 20}``), in the job model's terms.
        flags: each parameter's flag as written, for messages (``{"limit": "--limit 20"}``).
    """

    service: str
    data_type: str | None
    params: dict[str, Any]
    flags: dict[str, str]


def parse(line: str) -> Command:
    """Read one of the origin's command lines.

    Raises:
        CommandError: naming what is wrong and what the origin's lines look like.
    """
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise CommandError(f"cannot split {line!r} into words: {exc}") from None
    if any(word in _SHELL for word in words):
        raise CommandError(f"{line!r} is not a single fetcher call (it has shell operators)")
    if words[:2] == ["uv", "run"]:
        words = words[2:]
    if not words or not _PYTHON.match(words[0]):
        raise CommandError(
            f"{line!r} does not start with python; expected the origin's "
            "'python -m src.connectors.<service>.<module> ...'"
        )
    if len(words) > 2 and words[1] == "-m":
        module, args = words[2], words[3:]
    elif len(words) > 1 and words[1].endswith(".py"):
        module, args = words[1].removesuffix(".py").replace("/", "."), words[2:]
    else:
        raise CommandError(f"{line!r} runs no module; expected 'python -m src.connectors...'")
    found = _MODULE.match(module)
    if found is None:
        raise CommandError(
            f"{module!r} is not one of the origin's fetchers (src.connectors.<service>.<module>)"
        )
    service = found["service"]
    positional, params, flags, athlete = _arguments(args)
    if len(positional) > 1:
        raise CommandError(f"{' '.join(positional)!r}: a fetcher takes one data type")
    data_type = positional[0] if positional else None
    if service == "strava" and data_type is None:
        data_type = "athlete" if athlete else "activities"
    elif athlete:
        raise CommandError(f"{STRAVA_ATHLETE_FLAG} is a Strava flag, not a {service} one")
    return Command(service, data_type, params, flags)


def _arguments(args: list[str]) -> tuple[list[str], dict[str, Any], dict[str, str], bool]:
    positional: list[str] = []
    params: dict[str, Any] = {}
    flags: dict[str, str] = {}
    athlete = False
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not word.startswith("-"):
            positional.append(word)
            continue
        flag, eq, value = word.partition("=")
        flag = flag.replace("_", "-")
        if flag == STRAVA_ATHLETE_FLAG and not eq:
            athlete = True
            continue
        field = PARAM_FLAGS.get(flag)
        if field is None:
            known = ", ".join([*PARAM_FLAGS, STRAVA_ATHLETE_FLAG])
            raise CommandError(f"unknown option {flag}; the origin's fetchers take {known}")
        if not eq:
            if i >= len(args) or args[i].startswith("-"):
                raise CommandError(f"{flag} needs a value")
            value = args[i]
            i += 1
        flags[field] = f"{flag} {value}"
        params[field] = _value(flag, field, value)
    return positional, params, flags, athlete


def _value(flag: str, field: str, value: str) -> Any:
    if field == "time_range":
        if value not in TIME_RANGES:
            raise CommandError(f"{flag} {value}: expected one of {', '.join(TIME_RANGES)}")
        return value
    if not value.isdigit() or int(value) < 1:
        raise CommandError(f"{flag} {value}: expected a positive whole number")
    return int(value)
