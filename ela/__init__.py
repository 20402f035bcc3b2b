"""ELA Ingest domain package: config, connectors, sinks, run pipeline and state.

Nothing in this package imports Celery; ``worker/``, ``tasks/`` and ``beat_schedules/`` do.
"""

__version__ = "0.1.0"
