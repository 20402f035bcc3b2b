"""``tasks.run_group``: fan a job group out, so Flower and ``celery call`` can trigger groups."""

from __future__ import annotations

from typing import Any

from worker.app import app, config


@app.task(name="tasks.run_group")
def run_group(group: str, **overrides: Any) -> list[dict[str, str]]:
    """Send each job of ``group`` (or a single job name) to its queue; returns their task ids."""
    sent = []
    for name in config.resolve(group):
        job = config.jobs[name]
        result = app.send_task(job.task, kwargs={"job": name, **overrides})
        sent.append({"job": name, "task": job.task, "task_id": result.id})
    return sent
