"""``celery -A bench.bare worker``: bare Celery with the product's settings and no tasks.

The start-up baseline: what a worker costs before our task modules, connectors and logging.
"""

from __future__ import annotations

from celery import Celery

from ela import config as config_module
from worker.settings import celery_settings

config = config_module.load_env()
app = Celery(f"bare-{config.env}")
app.conf.update({**celery_settings(config), "imports": ()})
celery = app
