"""Words the operator reads, the same in the ``ela`` command and on Flower's Jobs page."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``1 record``, ``2 records``, ``1,000 records``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def age(seconds: float) -> str:
    """A coarse duration: ``5m``, ``2.5h``, ``1.5d``."""
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{int(seconds) // 60}m"
