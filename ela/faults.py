"""Named crash points for the crash-safety suite (tests/test_reliability.py).

With ``ELA_FAULT_POINT=<point>`` and ``ELA_FAULT_DIR=<folder>``, the first run to reach that
point SIGKILLs its own process, as the OOM killer or a node loss would; a marker file makes it
happen once, so the redelivered run can complete. Unset (always, outside that suite), a point
costs one dictionary lookup.

Points, in run order: ``mid_fetch`` (records spooled, more to come), ``before_upload``,
``after_landing`` (landing object written, no manifest), ``after_manifest`` (manifest written,
cursor not yet moved).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path

POINTS = ("mid_fetch", "before_upload", "after_landing", "after_manifest")


def armed(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether any crash point is set (only the crash-safety suite sets one)."""
    return bool(environ.get("ELA_FAULT_POINT"))


def point(name: str, environ: Mapping[str, str] = os.environ, key: str = "") -> None:
    """Crash here if ``ELA_FAULT_POINT`` names this point (once per point and ``key``)."""
    if environ.get("ELA_FAULT_POINT") != name:
        return
    marker = Path(environ.get("ELA_FAULT_DIR", ".")) / f"crashed-{name}-{key}"
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
