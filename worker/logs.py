"""Log lines of the worker, beat and Flower: JSON or Celery's text, the run's context, scrubbed.

Celery still builds its handlers (level, ``--logfile``, root-logger hijack, stdout redirect);
:func:`format_handlers` then gives each one our formatter: one JSON object per line when its
stream is not a terminal (``time``, ``level``, ``logger``, ``message``, ``process``, ``env``
and, inside a task, ``task``, ``task_id``, ``job``, ``run_id``), Celery's own human format when
it is. ``ELA_LOG_FORMAT=json|text`` overrides the terminal check. Both pass through the
:class:`ela.scrub.Scrubber`. Celery's startup banner is printed to stdout, not logged, and
stays text.
"""

from __future__ import annotations

import ast
import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# Celery's own TaskFormatter reads the running task this way; there is no public equivalent
# that returns None outside a task.
from celery._state import get_current_task

from beat_schedules import beat_sending
from ela.config import IngestionConfig
from ela.scrub import Scrubber

LOG_FORMAT_VAR = "ELA_LOG_FORMAT"

# -- run context -------------------------------------------------------------------------------


def _is_ingest_task(name: str | None) -> bool:
    parts = (name or "").split(".")
    return len(parts) == 3 and parts[0] == "tasks"


def run_fields(
    config: IngestionConfig,
    task_name: str | None,
    task_id: str | None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    resolve_job: bool = True,
) -> dict[str, str]:
    """``task``, ``task_id`` and, for an ingest task, ``run_id`` (= task id) and ``job``."""
    fields: dict[str, str] = {}
    if task_name:
        fields["task"] = task_name
    if task_id:
        fields["task_id"] = task_id
    if not (task_id and _is_ingest_task(task_name)):
        return fields
    fields["run_id"] = task_id
    job = (kwargs or {}).get("job")
    if not job and resolve_job and task_name:
        try:
            job = config.job_for_task(task_name)
        except (KeyError, ValueError):
            job = None
    if isinstance(job, str) and job:
        fields["job"] = job
    return fields


def record_fields(config: IngestionConfig, record: logging.LogRecord) -> dict[str, str]:
    """The run a log record belongs to: the running task, else the message beat is sending,
    else the task Celery's line is about."""
    task = get_current_task()
    if task is not None and task.request is not None and task.request.id:
        return run_fields(config, task.name, task.request.id, task.request.kwargs)
    sending = beat_sending.get()  # beat's "Sending due task" line, and anything while it sends
    if sending is not None:
        return run_fields(config, *sending)
    data = getattr(record, "data", None)  # Celery's "received"/"succeeded" lines carry it
    if isinstance(data, Mapping) and data.get("id"):
        return run_fields(config, data.get("name"), data.get("id"), _kwargs(data.get("kwargs")))
    return {}


def _kwargs(text: Any) -> Mapping[str, Any] | None:
    """The kwargs of Celery's "received" line, which carries their repr (the job is the
    ``job`` kwarg if any, else the task's own job: ela.run_input's rule)."""
    if isinstance(text, Mapping):
        return text
    try:
        value = ast.literal_eval(text) if isinstance(text, str) else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, Mapping) else None


# -- formatters and handlers -------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the values scrubbed before they are encoded."""

    def __init__(self, config: IngestionConfig, scrubber: Scrubber) -> None:
        super().__init__()
        self.config = config
        self.scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
            "env": self.config.env,
            **record_fields(self.config, record),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(self.scrubber.data(out), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Celery's human format (colours and all), scrubbed."""

    def __init__(self, inner: logging.Formatter, scrubber: Scrubber) -> None:
        super().__init__()
        self.inner = inner
        self.scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        return self.scrubber.text(self.inner.format(record))


def log_format(stream: Any, environ: Mapping[str, str] = os.environ) -> str:
    """``json`` or ``text``: ``ELA_LOG_FORMAT`` if it says, else text only on a terminal."""
    forced = environ.get(LOG_FORMAT_VAR, "").strip().lower()
    if forced in ("json", "text"):
        return forced
    isatty = getattr(stream, "isatty", None)
    try:
        return "text" if callable(isatty) and isatty() else "json"
    except ValueError:  # a closed stream
        return "json"


def format_handlers(
    logger: logging.Logger | None,
    config: IngestionConfig,
    scrubber: Scrubber,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Give each of the logger's handlers our formatter, chosen by where that handler writes."""
    if logger is None:
        return
    for handler in logger.handlers:
        if isinstance(handler.formatter, JsonFormatter | TextFormatter):
            continue
        if log_format(getattr(handler, "stream", None), environ) == "json":
            handler.setFormatter(JsonFormatter(config, scrubber))
        else:
            handler.setFormatter(TextFormatter(handler.formatter or logging.Formatter(), scrubber))
