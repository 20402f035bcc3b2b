"""Operations on top of the ingest: status from the bucket, config diff, promote and migrate.

Domain code only: nothing here imports Celery, so every command works without a broker (and
``status`` after Redis is wiped, since it reads only the bucket). The click commands that drive
these modules live in ``ela/cli/`` (``status.py``, ``configs.py``, ``backfill.py``).
"""
