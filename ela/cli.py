"""The ``ela`` command.

Every user-facing failure is one line (or one line per config problem) and exit status 1;
tracebacks are for bugs. Commands that need Celery import it lazily, so ``ela validate`` and
``ela schedule`` work without a broker and start fast.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from ela import config as config_module
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
    help="Seconds --wait waits for each job.",
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
    """Run TARGET (a job or a group) now: on the workers, or --inline in this process."""
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
    if inline:
        outcomes = _run_inline(config, names, overrides)
    else:
        outcomes = _run_on_workers(config, names, overrides, wait, timeout)
    if as_json:
        emit_json(outcomes)
    elif inline or wait:
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
    if any(o["outcome"] == "failed" for o in outcomes):
        sys.exit(1)


def _run_inline(
    config: config_module.IngestionConfig, names: list[str], overrides: dict[str, Any]
) -> list[dict[str, Any]]:
    from ela.pipeline import Overrides, run_job

    outcomes = []
    scheduled_at = datetime.now(UTC).replace(second=0, microsecond=0)
    for name in names:
        run_id = str(uuid.uuid4())
        try:
            result = run_job(
                config,
                name,
                run_id=run_id,
                scheduled_at=scheduled_at,
                overrides=Overrides.from_kwargs(**overrides),
            )
        except IngestError as exc:
            result = {"job": name, "run_id": run_id, "outcome": "failed", "error": str(exc)}
        outcomes.append(result)
    return outcomes


def _run_on_workers(
    config: config_module.IngestionConfig,
    names: list[str],
    overrides: dict[str, Any],
    wait: bool,
    timeout: float,
) -> list[dict[str, Any]]:
    from worker.app import app

    sent = []
    with app.producer_or_acquire() as producer:
        for name in names:
            job = config.jobs[name]
            result = app.send_task(job.task, kwargs={"job": name, **overrides}, producer=producer)
            sent.append((name, job, result))
    outcomes = []
    for name, job, result in sent:
        outcome: dict[str, Any] = {
            "job": name,
            "task": job.task,
            "queue": config.queue(job.service),
            "run_id": result.id,
            "outcome": "sent",
        }
        if wait:
            try:
                outcome.update(result.get(timeout=timeout, propagate=True))
            except Exception as exc:  # the task's own error, re-raised by Celery
                outcome.update(outcome="failed", error=f"{type(exc).__name__}: {exc}")
        outcomes.append(outcome)
    return outcomes


# -- processes ----------------------------------------------------------------------------------


def _exec_celery(env: str | None, args: list[str]) -> NoReturn:
    with user_errors():
        ready(env, broker=True)
    argv = [sys.executable, "-m", "celery", "-A", "worker", *args]
    os.execvpe(argv[0], argv, {**os.environ, "PYTHONPATH": _pythonpath()})


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

    Extra arguments go to 'celery worker'.
    """
    _exec_celery(env, ["worker", "-l", loglevel, *ctx.args])


@main.command(context_settings=PASSTHROUGH)
@ENV_OPTION
@click.option("-l", "--loglevel", default="info", show_default=True)
@click.pass_context
def beat(ctx: click.Context, env: str | None, loglevel: str) -> None:
    """Celery beat with the env's schedule. Extra arguments go to 'celery beat'."""
    state_dir = Path(os.environ.get("ELA_STATE_DIR", ".ela"))
    state_dir.mkdir(parents=True, exist_ok=True)
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
    click.echo(f"{provider}: tokens stored in {store.directory}")


# -- sandbox ------------------------------------------------------------------------------------


@main.command()
@click.option("--keep", is_flag=True, help="Keep the sandbox running until Ctrl-C.")
@click.option("--folder", type=click.Path(file_okay=False), help="Where the local bucket goes.")
def demo(keep: bool, folder: str | None) -> None:
    """Run every job through a real worker against local emulators, into a local bucket."""
    from ela.sandbox import run_demo

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
