"""The Celery app for ``celery -A worker worker|beat|call|inspect``; ``ELA_ENV`` picks the env."""

from worker.app import app, config

celery = app

__all__ = ["app", "celery", "config"]
