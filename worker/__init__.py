"""The Celery app for ``celery -A worker worker|beat|call|inspect``; ``ELA_ENV`` picks the env.

The env's config is read when the app is configured, not when this package is imported.
"""

from typing import Any

from worker.app import app

celery = app


def __getattr__(name: str) -> Any:
    """``worker.config``: the env's config, loaded on first use."""
    if name == "config":
        return app.ela_config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "celery"]
