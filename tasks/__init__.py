"""Every job's Celery task, ``tasks.<service>.<data_type>``, plus ``tasks.run_group``.

One task per registered data type, generated from the connector registry so adding a data type
is adding its connector function. Tasks are thin: Celery concerns (retries, run identity,
routing) live in :mod:`tasks.base`; the work is :func:`ela.pipeline.run_job`.
"""

from tasks import base, groups, housekeeping
from tasks.base import INGEST_TASKS

__all__ = ["INGEST_TASKS", "base", "groups", "housekeeping"]
