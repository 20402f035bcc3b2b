"""The ``ela`` command.

Every user-facing failure is one line (or one line per config problem) and exit status 1;
tracebacks are for bugs. Commands that need Celery import it lazily, so ``ela validate`` and
``ela schedule`` work without a broker and start fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from ela import config as config_module
from ela import run_input
from ela.cli_common import (
    ENV_OPTION,
    emit_json,
    fail,
    load,
    plural,
    print_table,
    ready,
    user_errors,
)
from ela.errors import IngestError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ela-ingest")
def main() -> None:
    """ELA Ingest: Spotify, Strava, Garmin and Todoist into per-environment GCS buckets."""


# -- configuration ------------------------------------------------------------------------------


@main.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--check-env",
    is_flag=True,
    help="Also report every enabled job whose dependencies are unset in this environment.",
)
def validate(files: Sequence[str], check_env: bool) -> None:
    """Validate config files (default: both shipped ones). Problems print as FILE:LINE: message.

    Notices (things that load but should change) print as ``note: FILE:LINE: ...``.
    """
    paths = list(files) or [str(config_module.config_path(env, {})) for env in config_module.ENVS]
    failed = False
    for path, config, problems in config_module.iter_problems(paths):
        if config is None:
            failed = True
            for line in problems:
                click.echo(line)
            continue
        for notice in config.notices:
            click.echo(f"note: {notice}")
        unset = config_module.unset_dependencies(config, os.environ) if check_env else []
        failed = failed or bool(unset)
        for line in unset:
            click.echo(line)
        jobs = config.jobs
        enabled = sum(job.enabled for job in jobs.values())
        click.echo(
            f"{path}: {'unset dependencies' if unset else 'ok'} — env {config.env}, "
            f"{len(jobs)} jobs ({enabled} enabled), {len(config.job_groups)} groups, "
            f"bucket {config.global_.gcs_bucket}, timezone {config.global_.timezone}"
        )
    sys.exit(1 if failed else 0)


def _utc_text(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def schedule_rows(config: config_module.IngestionConfig, count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    tz = config.global_.tz
    rows = []
    for name, job in config.jobs.items():
        runs = job.cron.next_runs(tz, now, count) if job.enabled else []
        rows.append(
            {
                "job": name,
                "task": job.task,
                "cron": job.schedule,
                "timezone": config.global_.timezone,
                "queue": config.queue(job.service),
                "enabled": job.enabled,
                "params": job.params(),
                "next_runs": [_utc_text(run) for run in runs],
                "next_runs_local": [run.astimezone(tz).isoformat() for run in runs],
            }
        )
    return rows


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "-"


@main.command()
@ENV_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def jobs(env: str | None, as_json: bool) -> None:
    """List the env's jobs and groups."""
    with user_errors():
        config = load(env)
    rows = schedule_rows(config, 0)
    if as_json:
        groups = {name: group.jobs for name, group in config.job_groups.items()}
        emit_json({"env": config.env, "jobs": rows, "groups": groups})
        return
    click.echo(f"{config.env}: {config.path}")
    print_table(
        [
            [
                r["job"],
                r["task"],
                r["cron"],
                r["queue"],
                _params_text(r["params"]),
                "yes" if r["enabled"] else "no",
            ]
            for r in rows
        ],
        ["JOB", "TASK", "CRON", "QUEUE", "PARAMS", "ENABLED"],
    )
    click.echo("")
    for name, group in config.job_groups.items():
        click.echo(f"group {name}: {', '.join(group.jobs)}")


@main.command()
@ENV_OPTION
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per job.")
@click.option(
    "--next",
    "count",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="How many upcoming runs to show.",
)
def schedule(env: str | None, as_json: bool, count: int) -> None:
    """Show each job's cron, queue, parameters and next run times.

    Crons are read in the config's timezone; each run shows in that zone and in UTC.
    """
    with user_errors():
        config = load(env)
    rows = schedule_rows(config, count)
    if as_json:
        emit_json(rows)
        return
    tz = config.global_.tz

    def both(utc_text: str) -> str:
        moment = datetime.fromisoformat(utc_text.replace("Z", "+00:00"))
        return f"{moment.astimezone(tz):%Y-%m-%d %H:%M %Z} ({moment:%H:%MZ})"

    print_table(
        [
            [
                r["job"],
                r["cron"],
                r["queue"],
                _params_text(r["params"]),
                ", ".join(both(run) for run in r["next_runs"]),
            ]
            for r in rows
        ],
        ["JOB", "CRON", "QUEUE", "PARAMS", f"NEXT {count} RUNS, {config.global_.timezone} (UTC)"],
    )


# -- running ------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@main.command()
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


# -- processes ----------------------------------------------------------------------------------


def _exec_celery(
    env: str | None, args: list[str], defaults: dict[str, str] | None = None
) -> NoReturn:
    with user_errors():
        ready(env, broker=True)
    argv = [sys.executable, "-m", "celery", "-A", "worker", *args]
    environ = {**(defaults or {}), **os.environ, "PYTHONPATH": _pythonpath()}
    os.execvpe(argv[0], argv, environ)


def _pythonpath() -> str:
    root = str(config_module.REPO_ROOT)
    current = os.environ.get("PYTHONPATH", "")
    return f"{root}{os.pathsep}{current}" if current else root


PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@main.command(context_settings=PASSTHROUGH)
@ENV_OPTION
@click.option("-l", "--loglevel", default="info", show_default=True)
@click.pass_context
def worker(ctx: click.Context, env: str | None, loglevel: str) -> None:
    """A Celery worker for the env's queues (concurrency and limits from its config).

    SIGTERM stops it in bounded time: running tasks get the soft-shutdown grace
    (worker_soft_shutdown_timeout), then whatever is left, retries waiting on a countdown
    included, goes back to its queue. Extra arguments go to 'celery worker'.
    """
    # Celery (billiard) reads REMAP_SIGTERM from the environment at import, so it is set for the
    # process we exec: SIGTERM then starts a cold shutdown with the soft grace period instead of
    # a warm one that waits for every running task (up to the hard time limit).
    named = any(a in ("-n", "--hostname") or a.startswith("--hostname=") for a in ctx.args)
    # The env in the node name: a dev and a prd worker on one host are two nodes, in Flower,
    # `inspect` and the logs (`celery worker`'s default would name both celery@host).
    node = [] if named else ["-n", f"{config_module.load_env(env).env}@%h"]
    _exec_celery(env, ["worker", "-l", loglevel, *node, *ctx.args], {"REMAP_SIGTERM": "SIGQUIT"})


@main.command(context_settings=PASSTHROUGH)
@ENV_OPTION
@click.option("-l", "--loglevel", default="info", show_default=True)
@click.pass_context
def beat(ctx: click.Context, env: str | None, loglevel: str) -> None:
    """Celery beat with the env's schedule. Extra arguments go to 'celery beat'.

    Every tick is sent once across beat restarts and leader changes; what was sent lives in
    Redis beside the env's leader lock, so beat keeps no file.
    """
    _exec_celery(env, ["beat", "-l", loglevel, *ctx.args])


@main.command(context_settings=PASSTHROUGH)
@ENV_OPTION
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", default=5555, show_default=True)
@click.pass_context
def flower(ctx: click.Context, env: str | None, address: str, port: int) -> None:
    """Flower for the env, bound to loopback, behind FLOWER_BASIC_AUTH (user:password).

    Every page, API call and /metrics needs the credentials (worker/flower_app.py); only
    /healthcheck answers without them. Extra arguments go to Flower.
    """
    user, _, password = os.environ.get("FLOWER_BASIC_AUTH", "").partition(":")
    if not user or not password:
        said = " is not set" if not user else f"={user!r} has no password"
        fail(f"FLOWER_BASIC_AUTH{said}: Flower can send tasks, so it needs user:password")
    with user_errors():
        ready(env, broker=True)
    argv = [sys.executable, "-m", "worker.flower_app", f"--address={address}", f"--port={port}"]
    os.execvpe(argv[0], [*argv, *ctx.args], {**os.environ, "PYTHONPATH": _pythonpath()})


# -- bucket -------------------------------------------------------------------------------------


@main.group()
def bucket() -> None:
    """The env's bucket: set-up and housekeeping."""


@bucket.command("setup")
@ENV_OPTION
def bucket_setup(env: str | None) -> None:
    """Create the bucket if missing and apply the error-retention lifecycle rule (GCS)."""
    from ela.retention import apply_lifecycle
    from ela.sinks import GCSBucket, LocalBucket, bucket_url, open_bucket

    with user_errors():
        config = load(env)
        target = open_bucket(bucket_url(config.global_.gcs_bucket))
    days = config.global_.error_retention_days
    if isinstance(target, LocalBucket):
        target.root.mkdir(parents=True, exist_ok=True)
        click.echo(
            f"{target.url}: local folder ready; tasks.purge_errors (daily, beat) deletes "
            f"error objects after {days} days"
        )
        return
    assert isinstance(target, GCSBucket)
    if not target.bucket.exists():
        target.client.create_bucket(target.bucket.name)
        click.echo(f"{target.url}: created")
    apply_lifecycle(target, config)
    click.echo(f"{target.url}: lifecycle rule deletes */errors/ objects after {days} days")


@bucket.command("purge-errors")
@ENV_OPTION
def bucket_purge_errors(env: str | None) -> None:
    """Delete error objects older than the env's error_retention_days now."""
    from ela.retention import purge_errors
    from ela.sinks import bucket_url, open_bucket

    with user_errors():
        config = load(env)
        deleted = purge_errors(open_bucket(bucket_url(config.global_.gcs_bucket)), config)
    click.echo(
        f"deleted {plural(len(deleted), 'error object')} older than "
        f"{plural(config.global_.error_retention_days, 'day')}"
    )


@bucket.command("check")
@ENV_OPTION
@click.argument("prefixes", nargs=-1)
def bucket_check(env: str | None, prefixes: Sequence[str]) -> None:
    """Check landing objects against BigQuery's rules for loading JSONL with auto-detection.

    PREFIXES default to every service's landing folder. Each finding prints as
    OBJECT:LINE: FIELD: PROBLEM (the first line that breaks each rule); exit status 1 if any.
    """
    from ela.bqcheck import check_jsonl
    from ela.connectors import SERVICES
    from ela.sinks import bucket_url, open_bucket

    with user_errors():
        config = load(env)
        target = open_bucket(bucket_url(config.global_.gcs_bucket))
        names = [
            info.name
            for prefix in prefixes or [f"{service}/landing/" for service in SERVICES]
            for info in target.list(prefix)
            if info.name.endswith(".jsonl")
        ]
        findings = 0
        for name in names:
            for finding in check_jsonl(target.get_bytes(name) or b""):
                findings += 1
                click.echo(f"{name}:{finding.line}: {finding.path or '(row)'}: {finding.problem}")
    verdict = f"{findings} problems" if findings else "BigQuery can load them all"
    click.echo(f"{target.url}: checked {len(names)} landing objects; {verdict}")
    sys.exit(1 if findings else 0)


# -- credentials --------------------------------------------------------------------------------


@main.command()
@click.argument("provider", type=click.Choice(["spotify", "strava", "garmin"]))
def auth(provider: str) -> None:
    """Authorize PROVIDER interactively and store its tokens where workers read them."""
    import importlib

    from ela.tokens import TokenStore

    module = importlib.import_module(f"ela.connectors.{provider}")
    authorize: Callable[..., None] | None = getattr(module, "authorize", None)
    if authorize is None:
        fail(f"{provider}: interactive authorization is not implemented yet")
    store = TokenStore.from_env()

    def ask(prompt: str, secret: bool = False) -> str:
        return str(click.prompt(prompt, hide_input=secret))

    with user_errors():
        authorize(os.environ, store, ask, click.echo)
    click.echo(f"{provider}: tokens stored in {store.where}")


# -- sandbox ------------------------------------------------------------------------------------


@main.command()
@click.option("--keep", is_flag=True, help="Keep the sandbox running until Ctrl-C.")
@click.option("--folder", type=click.Path(file_okay=False), help="Where the local bucket goes.")
def demo(keep: bool, folder: str | None) -> None:
    """Run every job through a real worker against local emulators, into a local bucket."""
    from ela.sandbox.demo import run_demo

    with user_errors():
        code = run_demo(folder=Path(folder) if folder else None, keep=keep)
    sys.exit(code)


# Operations commands (status, diff, promote, config migrate, backfill) live in their modules.
from ela.cli_backfill import register as _register_backfill  # noqa: E402
from ela.cli_ops import register as _register_ops  # noqa: E402

_register_ops(main)
_register_backfill(main)

if __name__ == "__main__":
    main()
