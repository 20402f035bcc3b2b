"""``tasks.run_group``: fan a job group out, so Flower and ``celery call`` can trigger groups."""

from __future__ import annotations

from typing import Any

from ela import run_input
from ela.errors import IngestError
from worker.app import app, config


@app.task(name="tasks.run_group", throws=(IngestError,))
def run_group(**kwargs: Any) -> list[dict[str, str]]:
    """Send each enabled job of ``group`` (or a single job name) to its queue, with the same
    overrides; returns their task ids. Overrides must apply to every job of the group."""
    sent = []
    for run in run_input.check_group(config, kwargs):
        task = config.jobs[run.job].task
        result = app.send_task(task, kwargs=run.kwargs())
        sent.append({"job": run.job, "task": task, "task_id": result.id})
    return sent
