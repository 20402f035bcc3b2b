"""``celery -A bench.worker worker``: the product's worker app plus two benchmark tasks.

* ``tasks.bench.nothing`` — the product's ingest task for :mod:`bench.plugin`'s empty service.
* ``bench.noop`` — a bare Celery task returning None: the baseline, on the same app, the same
  settings (broker, result backend, acks_late, prefetch, events) and the same worker process.
"""

from __future__ import annotations

from bench import plugin

plugin.register()

from worker.app import app, config  # noqa: E402  (after the registry has the bench service)


@app.task(name="bench.noop")
def noop() -> None:
    """Does nothing: what Celery alone costs per task."""


celery = app

__all__ = ["app", "celery", "config", "noop"]
