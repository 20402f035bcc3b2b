"""What a run may be asked to do: one schema for every entry point.

A run is requested by ``ela run``, beat, Flower's API, ``celery call`` or backfill; each sends a
task message with keyword arguments and a task id. The same checks run where the message is sent
(so the sender gets the refusal) and again where it runs (a message can come from anywhere that
reaches Redis): :func:`check` takes the task name, its keyword arguments and its id and returns a
:class:`RunInput`, or raises :class:`~ela.errors.InputError` with one line naming the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ela.config import IngestionConfig
from ela.connectors import SERVICES, DataType
from ela.errors import InputError

# A run id is the Celery task id: a UUID as Celery makes them (uuid4; backfill's are uuid5).
# Object names are built from it, so nothing else may pass (no '/', '..', NUL, 5,000 characters).
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
GROUP_TASK = "tasks.run_group"
PURGE_TASK = "tasks.purge_errors"


class _Kwargs(BaseModel):
    """The keyword arguments of ``tasks.<service>.<data_type>``, as JSON carries them."""

    model_config = ConfigDict(extra="forbid", strict=True)

    job: str | None = None
    limit: int | None = Field(default=None, ge=1)
    since: str | None = None
    until: str | None = None
    dry_run: bool = False
    scheduled_at: str | None = None
    follow_up: str | None = Field(default=None, max_length=64)  # a follow-up's hop (tasks/)


@dataclasses.dataclass(frozen=True)
class RunInput:
    """A checked request for one run of ``job``."""

    job: str
    limit: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False
    scheduled_at: datetime | None = None
    follow_up: str | None = None

    def kwargs(self) -> dict[str, Any]:
        """The task's keyword arguments, as a message carries them (unset ones left out)."""
        values: dict[str, Any] = {
            "job": self.job,
            "limit": self.limit,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "dry_run": self.dry_run or None,
            "scheduled_at": self.scheduled_at.isoformat() if self.scheduled_at else None,
            "follow_up": self.follow_up,
        }
        return {k: v for k, v in values.items() if v is not None}


def windowed(data_type: DataType) -> bool:
    """Whether ``since``/``until`` mean something to ``data_type``: incremental types take them
    instead of the cursor, day-windowed ones (``days``) as the window's ends."""
    return data_type.incremental or "days" in data_type.params


def check_run_id(run_id: Any) -> str:
    """``run_id`` if it is a UUID string; else InputError."""
    if isinstance(run_id, str) and RUN_ID.fullmatch(run_id):
        return run_id
    raise InputError(
        f"run id {quoted(run_id)} is not a UUID (8-4-4-4-12 lowercase hex, as Celery makes)"
    )


def check(
    config: IngestionConfig, task: str, kwargs: Mapping[str, Any], run_id: Any = None
) -> RunInput:
    """Check one run's request against the schema and the env's config.

    Args:
        config: the environment the run belongs to.
        task: the task name, ``tasks.<service>.<data_type>``.
        kwargs: the message's keyword arguments.
        run_id: the task id, checked when given (a sender may leave it to Celery).

    Raises:
        InputError: one line, ``task: field: what is wrong``.
    """
    if run_id is not None:
        check_run_id(run_id)
    data_type = _data_type(task)
    try:
        given = _Kwargs.model_validate(dict(kwargs))
    except ValidationError as exc:
        raise InputError(f"{task}: {_message(exc)}") from None
    job = _job(config, task, given.job)
    limit = given.limit
    if limit is not None:
        if "limit" not in data_type.params:
            raise InputError(f"{task}: limit: does not apply to {job} (it takes no limit)")
        if data_type.max_limit is not None and limit > data_type.max_limit:
            raise InputError(
                f"{task}: limit: {limit} is above what the API returns for {job} "
                f"({data_type.max_limit})"
            )
    since = _moment(task, "since", given.since)
    until = _moment(task, "until", given.until)
    if (since or until) and not windowed(data_type):
        field = "since" if since else "until"
        raise InputError(f"{task}: {field}: does not apply to {job} (it has no time window)")
    if since and until and since > until:
        raise InputError(f"{task}: since: {since.isoformat()} is after until {until.isoformat()}")
    return RunInput(
        job=job,
        limit=limit,
        since=since,
        until=until,
        dry_run=given.dry_run,
        scheduled_at=_moment(task, "scheduled_at", given.scheduled_at),
        follow_up=given.follow_up,
    )


def check_message(
    config: IngestionConfig,
    task: str,
    args: Any,
    kwargs: Any,
    run_id: Any = None,
    queue: str | None = None,
) -> None:
    """Everything a task message of ``config``'s env carries, checked before it is sent.

    Ingest tasks and ``tasks.run_group`` get the full schema; ``tasks.purge_errors`` takes no
    arguments; other tasks (Celery's own) pass. ``queue``: where the sender asked the message
    to go; it must be the task's own (:func:`route`), so no message reaches another env.

    Raises:
        InputError: one line naming what is wrong.
    """
    if task != GROUP_TASK and not task.startswith("tasks."):
        return
    if args:
        raise InputError(f"{task}: takes keyword arguments only, got {len(args)} positional")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise InputError(f"{task}: kwargs must be an object, got {type(kwargs).__name__}")
    given = dict(kwargs or {})
    if run_id is not None:
        check_run_id(run_id)
    if queue is not None and queue != route(config, task):
        raise InputError(
            f"{task}: queue {queue!r} is not this task's queue in {config.env} "
            f"({route(config, task)}); leave the queue out"
        )
    if task == GROUP_TASK:
        check_group(config, given)
    elif task == PURGE_TASK:
        if given:
            raise InputError(f"{task}: takes no arguments, got {', '.join(map(str, given))}")
    else:
        check(config, task, given)


def route(config: IngestionConfig, task: str) -> str:
    """The queue a task of ``config``'s env goes to: ``{env}.{service}``, else ``{env}.ops``."""
    parts = task.split(".")
    if len(parts) == 3 and parts[0] == "tasks" and parts[1] in SERVICES:
        return config.queue(parts[1])
    return config.queue("ops")


def check_group(config: IngestionConfig, kwargs: Mapping[str, Any]) -> list[RunInput]:
    """``tasks.run_group``'s arguments: ``group`` (a group or a job) plus overrides that must
    apply to every job it names. Returns the runs it stands for, disabled jobs left out."""
    overrides = dict(kwargs)
    group = overrides.pop("group", None)
    if not isinstance(group, str) or not group:
        raise InputError(f"{GROUP_TASK}: group: required (a group or job name of {config.path})")
    if "job" in overrides or "scheduled_at" in overrides:
        field = "job" if "job" in overrides else "scheduled_at"
        raise InputError(f"{GROUP_TASK}: {field}: set by the group for each job; leave it out")
    try:
        names = config.resolve(group)
    except KeyError:
        choices = [*config.job_groups, *config.jobs]
        raise InputError(
            f"{GROUP_TASK}: group: {group!r} is neither a group nor a job of {config.path}"
            + did_you_mean(group, choices)
        ) from None
    return [
        check(config, config.jobs[name].task, {**overrides, "job": name})
        for name in names
        if config.jobs[name].enabled
    ]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean X?"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _data_type(task: str) -> DataType:
    parts = task.split(".")
    if len(parts) == 3 and parts[0] == "tasks" and parts[1] in SERVICES:
        found = SERVICES[parts[1]].data_types.get(parts[2])
        if found is not None:
            return found
    raise InputError(f"{quoted(task)} is not an ingest task (tasks.<service>.<data_type>)")


def _job(config: IngestionConfig, task: str, job: str | None) -> str:
    if job is None:
        try:
            return config.job_for_task(task)
        except KeyError as exc:
            raise InputError(f"{task}: job: {exc.args[0]}") from None
    if job not in config.jobs:
        raise InputError(
            f"{task}: job: {quoted(job)} is not a job of {config.path}"
            + did_you_mean(job, config.jobs)
        )
    if config.jobs[job].task != task:
        raise InputError(f"{task}: job: {job} runs {config.jobs[job].task}, not {task}")
    return job


def _moment(task: str, field: str, value: str | None) -> datetime | None:
    """An ISO 8601 date or date-time; a naive one is UTC."""
    if value is None:
        return None
    try:
        parsed = (
            datetime.combine(date.fromisoformat(value), datetime.min.time())
            if len(value) == 10
            else datetime.fromisoformat(value)
        )
    except ValueError:
        raise InputError(
            f"{task}: {field}: {quoted(value)} is not an ISO 8601 date or time (2025-03-01 or "
            "2025-03-01T06:00:00+00:00)"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


_WANTED = {
    "int_type": "a whole number",
    "bool_type": "true or false",
    "string_type": "a string",
    "greater_than_equal": "a whole number of at least 1",
}


def _message(exc: ValidationError) -> str:
    """The first problem of a validation, as ``field: what``."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "arguments"
    if error["type"] == "extra_forbidden":
        known = ", ".join(_Kwargs.model_fields)
        return (
            f"{field}: not an argument of this task"
            + did_you_mean(field, _Kwargs.model_fields)
            + (f" (it takes {known})")
        )
    wanted = _WANTED.get(error["type"], error["msg"])
    return f"{field}: expected {wanted}, got {quoted(error.get('input'))}"


def quoted(value: Any) -> str:
    """A value as a refusal quotes it: whole, or only its type and length. Never a part of it:
    the log scrubber recognises a secret pasted into the wrong argument only whole."""
    text = repr(value)
    if len(text) <= 64:
        return text
    if isinstance(value, str):
        return f"a string of {len(value):,} characters"
    return f"a {type(value).__name__} of {len(text):,} characters as text"
