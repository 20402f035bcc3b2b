"""Caps that end a runaway source before it fills a worker's memory or disk.

A provider that answers with an endless body, or a run whose records never stop coming, ends
as a ``payload`` error instead of running until the time limit. Both caps are far
above anything real: the largest page any job reads is about 1 MB (200 Strava activities with
their polylines), and the largest run lands about 30 MB (a 10,000-track Spotify library).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ela.errors import FatalError

MAX_BODY_BYTES = 32 << 20  # one HTTP response body, after decompression
MAX_SPOOL_BYTES = 1 << 30  # one run's landing data, spooled to a temporary file
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_SIZE = re.compile(r"\s*(\d+)\s*([KMG]?)(?:I?B)?\s*", re.IGNORECASE)


def size(environ: Mapping[str, str], name: str, default: int) -> int:
    """Bytes from the setting ``name``: a number of bytes, or with a unit (``32MB``, ``1G``;
    units are binary: 1MB is 1,048,576 bytes). ``default`` when unset.

    Raises:
        FatalError: a value that is not a positive size, naming the setting.
    """
    raw = environ.get(name)
    if not raw:
        return default
    found = _SIZE.fullmatch(raw)
    value = int(found[1]) * _UNITS[found[2].upper()] if found else 0
    if value <= 0:
        raise FatalError(
            f"{name}={raw!r} is not a size: give a number of bytes (33554432) or one with a "
            "unit (32MB)"
        )
    return value


def max_body_bytes(environ: Mapping[str, str]) -> int:
    return size(environ, "ELA_MAX_BODY_BYTES", MAX_BODY_BYTES)


def max_spool_bytes(environ: Mapping[str, str]) -> int:
    return size(environ, "ELA_MAX_SPOOL_BYTES", MAX_SPOOL_BYTES)
