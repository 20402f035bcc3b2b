"""``ela run``: a job or a group now, on the workers or ``--inline``; with ``--wait``, each run
followed to its end (retries said as they happen, a run Redis lost named as lost).

Celery and Redis are imported inside the functions that need them, so ``ela run --inline`` and
every other command start without them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from ela import config as config_module
from ela import run_input
from ela.cli.common import ENV_OPTION, emit_json, fail, print_table, ready, user_errors
from ela.errors import IngestError
from ela.text import plural


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@click.command("run")
@click.argument("target")
@ENV_OPTION
@click.option("--wait", is_flag=True, help="Wait for each job and print its outcome.")
@click.option("--inline", is_flag=True, help="Run in this process, without a broker.")
@click.option("--limit", type=click.IntRange(min=1), help="Override the jobs' item limit.")
@click.option("--since", type=click.DateTime(), help="Start of an explicit window (UTC).")
@click.option("--until", type=click.DateTime(), help="End of an explicit window (UTC).")
@click.option("--dry-run", is_flag=True, help="Fetch and count; write nothing.")
@click.option(
    "--timeout",
    type=float,
    default=3600,
    show_default=True,
    help="Seconds --wait waits for the runs to end.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def run(
    target: str,
    env: str | None,
    wait: bool,
    inline: bool,
    limit: int | None,
    since: datetime | None,
    until: datetime | None,
    dry_run: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Run TARGET (a job or a group) now: on the workers, or --inline in this process.

    With --wait, each job is printed as it ends, and retries as they happen. Exit status: 0
    all ended well; 1 a run failed, was refused or was lost by Redis; 2 a run was still
    queued or running at --timeout (it goes on).
    """
    with user_errors():
        config = ready(env, broker=not inline)
        names = config.resolve(target)
    if target in config.job_groups:  # a group runs what beat would run; a job named runs anyway
        disabled = [name for name in names if not config.jobs[name].enabled]
        names = [name for name in names if name not in disabled]
        if disabled:
            click.echo(f"skipping {', '.join(disabled)}: disabled in {config.path}", err=True)
        if not names:
            fail(f"every job of {target} is disabled in {config.path}")
    overrides: dict[str, Any] = {
        "limit": limit,
        "since": _iso(since.replace(tzinfo=UTC) if since else None),
        "until": _iso(until.replace(tzinfo=UTC) if until else None),
        "dry_run": dry_run or None,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    with user_errors():  # the schema every entry point uses: one line naming the field
        runs = [
            run_input.check(config, config.jobs[name].task, {"job": name, **overrides})
            for name in names
        ]

    def say(line: str) -> None:  # progress: on stderr when stdout is JSON for a script
        click.echo(line, err=as_json)

    if inline:
        outcomes = _run_inline(config, runs)
    else:
        outcomes = _run_on_workers(config, runs, wait, timeout, say)
    if as_json:
        emit_json(outcomes)
    elif inline or (wait and len(outcomes) > 1):
        print_table(
            [
                [
                    o["job"],
                    o["outcome"],
                    str(o.get("records", "-")),
                    str(len(o.get("objects", []))),
                    f"{o.get('duration_s', 0):.1f}s" if "duration_s" in o else "-",
                    o.get("error") or o.get("run_id", ""),
                ]
                for o in outcomes
            ],
            ["JOB", "OUTCOME", "RECORDS", "OBJECTS", "DURATION", "RUN / ERROR"],
        )
    else:
        for o in outcomes:
            click.echo(f"{o['job']}: sent {o['task']} to {o['queue']} as {o['run_id']}")
    if any(o["outcome"] in ("failed", "lost") for o in outcomes):
        sys.exit(1)
    if any(o["outcome"].startswith("still") for o in outcomes):
        sys.exit(2)


def _run_inline(
    config: config_module.IngestionConfig, runs: list[run_input.RunInput]
) -> list[dict[str, Any]]:
    from ela.pipeline import Overrides, run_job

    outcomes = []
    scheduled_at = datetime.now(UTC).replace(second=0, microsecond=0)
    for run in runs:
        run_id = str(uuid.uuid4())
        overrides = Overrides(
            limit=run.limit, since=run.since, until=run.until, dry_run=run.dry_run
        )
        try:
            result = run_job(
                config, run.job, run_id=run_id, scheduled_at=scheduled_at, overrides=overrides
            )
        except IngestError as exc:
            result = {"job": run.job, "run_id": run_id, "outcome": "failed", "error": str(exc)}
        outcomes.append(result)
    return outcomes


def _run_on_workers(
    config: config_module.IngestionConfig,
    runs: list[run_input.RunInput],
    wait: bool,
    timeout: float,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    from worker.app import app

    sent: list[_Sent] = []
    with app.producer_or_acquire() as producer:
        for run in runs:
            job = config.jobs[run.job]
            result = app.send_task(job.task, kwargs=run.kwargs(), producer=producer)
            sent.append(_Sent(run.job, job.task, config.queue(job.service), result))
    if not wait:
        return [s.outcome("sent") for s in sent]
    try:
        return _follow(config, sent, timeout, say)
    finally:
        for item in sent:
            _unsubscribe(item.result)


@dataclasses.dataclass
class _Sent:
    """A run sent to the workers, and what ``--wait`` has seen of it."""

    job: str
    task: str
    queue: str
    result: Any  # celery.result.AsyncResult
    retry_seen: tuple[Any, ...] = ()
    missing: int = 0  # polls in a row that found the run nowhere in Redis

    def outcome(self, outcome: str, **more: Any) -> dict[str, Any]:
        base = {"job": self.job, "task": self.task, "queue": self.queue}
        return {**base, "run_id": self.result.id, "outcome": outcome, **more}


POLL_S = 0.5  # how often --wait looks at the runs' states
WAIT_POLL_S = 2.0  # how often --wait checks that Redis still has the run


def _follow(
    config: config_module.IngestionConfig,
    sent: list[_Sent],
    timeout: float,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Each run's outcome, said as it ends (in the order they end), retries as they happen.

    A run Redis has lost (a restart without persistence, a FLUSHALL: seen nowhere twice in a
    row, :data:`WAIT_POLL_S` apart) is ``lost``; one not ended at ``timeout`` is ``still
    queued`` or ``still running``, never failed.
    """
    import redis

    from ela.ops import broker

    client = broker.connect()
    outcomes: dict[str, dict[str, Any]] = {}
    pending = list(sent)
    deadline = time.monotonic() + timeout
    next_locate = time.monotonic() + WAIT_POLL_S
    while pending and time.monotonic() < deadline:
        locating = time.monotonic() >= next_locate
        if locating:
            next_locate = time.monotonic() + WAIT_POLL_S
        for item in list(pending):
            try:
                state = item.result.state
            except (redis.RedisError, OSError):
                continue  # Redis is away: it may come back with the run, or without
            outcome = None
            if state in ("SUCCESS", "FAILURE"):
                outcome = _ended(item)
            elif state == "RETRY":
                _say_retry(item, say)
            elif locating:
                outcome = _located(config, client, item)
            if outcome is not None:
                pending.remove(item)
                outcomes[item.result.id] = outcome
                say(_ended_line(outcome))
        if pending:
            time.sleep(POLL_S)
    for item in pending:
        running = item.result.state in ("STARTED", "RETRY")
        outcome = item.outcome(
            "still running" if running else "still queued",
            error=f"not ended after {timeout:.0f} s (--timeout); it goes on without us",
        )
        outcomes[item.result.id] = outcome
        say(_ended_line(outcome))
    return [outcomes[item.result.id] for item in sent]


def _ended(item: _Sent) -> dict[str, Any]:
    try:
        value: dict[str, Any] = item.result.get(timeout=5, propagate=True)
    except Exception as exc:  # the task's own error, re-raised by Celery
        return item.outcome("failed", error=f"{type(exc).__name__}: {exc}")
    return {**item.outcome(value.get("outcome", "succeeded")), **value}


def _located(
    config: config_module.IngestionConfig, client: Any, item: _Sent
) -> dict[str, Any] | None:
    import redis

    from ela.ops import broker

    try:
        where = broker.locate(client, config.env, item.queue, item.result.id)
    except redis.RedisError:
        return None
    item.missing = item.missing + 1 if where is None else 0
    if item.missing < 2:
        return None
    return item.outcome(
        "lost",
        error="Redis lost this run (not queued, held by no worker, no result): it restarted "
        "empty or was flushed before a worker took it; nothing ran, so run it again",
    )


def _say_retry(item: _Sent, say: Callable[[str], None]) -> None:
    """One line per retry, as Celery stores it (state RETRY, the error as its result)."""
    seen = (item.result.state, str(item.result.info), item.result.date_done)
    if seen != item.retry_seen:
        item.retry_seen = seen
        reason = str(item.result.info).splitlines()[0][:160] if item.result.info else "?"
        say(click.style(f"↻ {item.job}: retrying after: {reason}", fg="yellow"))


def _ended_line(outcome: dict[str, Any]) -> str:
    job, state = outcome["job"], outcome["outcome"]
    if state in ("succeeded", "already_committed", "dry_run"):
        records = plural(int(outcome.get("records") or 0), "record")
        objects = plural(len(outcome.get("objects") or []), "object")
        took = f", {outcome['duration_s']:.1f} s" if "duration_s" in outcome else ""
        return click.style(f"✓ {job}: {state}, {records}, {objects}{took}", fg="green")
    mark, colour = ("…", "yellow") if state.startswith("still") else ("✗", "red")
    return click.style(f"{mark} {job}: {state}: {outcome.get('error', '')}", fg=colour)


def _unsubscribe(result: Any) -> None:
    """Drop the result's subscription now: left to ``AsyncResult.__del__`` at interpreter exit,
    after a Redis restart it tries to reconnect with its modules half torn down and prints a
    traceback."""
    with contextlib.suppress(Exception):
        result.backend.remove_pending_result(result)
