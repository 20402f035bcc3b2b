"""``ela status``: each job's last runs and freshness from the bucket, then what Redis holds.

The work is done in ``ela/ops/status.py`` and ``ela/ops/broker.py``; this module parses the
options, calls them and prints (coloured table on a terminal, ``--json`` for scripts). They and
the bucket clients are imported inside the command, so other ``ela`` commands pay nothing.
Flower's Jobs page says freshness in the same words (:meth:`Freshness.text`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ela.cli.common import (
    ENV_OPTION,
    emit_json,
    fail,
    load,
    print_table,
    say,
    table_lines,
    terminal_width,
    user_errors,
)
from ela.text import age, plural

if TYPE_CHECKING:
    from ela.ops import broker


@contextmanager
def _bucket_errors(url: str) -> Iterator[None]:
    """A bucket that cannot be read (missing, no credentials, unreachable) is one line."""
    try:
        yield
    except OSError as exc:
        fail(f"{url}: cannot read the bucket: {exc}")
    except Exception as exc:
        module = type(exc).__module__
        if module.startswith(("google.", "requests.", "urllib3.")):
            fail(f"{url}: cannot read the bucket: {type(exc).__name__}: {exc}".splitlines()[0])
        raise


@click.command("status")
@ENV_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (shape below).")
@click.option("--stats", is_flag=True, help="Add per-job totals over --window.")
@click.option(
    "--window",
    default="7d",
    show_default=True,
    help="The --stats window: a number and m, h, d or w (30m, 12h, 7d, 2w).",
)
@click.option("--now", "at", type=click.DateTime(), hidden=True, help="Report as of (UTC).")
def status_command(
    env: str | None, as_json: bool, stats: bool, window: str, at: datetime | None
) -> None:
    """Each job's last success and failure, and how late it is against its schedule; then what
    Redis holds for the env: queues, runs in flight, retries waiting, runs held by dead workers.

    The jobs come from the env's bucket (ELA_BUCKET_URL, else gs://{global.gcs_bucket}): the run
    manifests under {service}/_runs/{job}/ and the error objects under {service}/errors/, so
    they show without Redis. A job is late when the latest tick of its cron is newer than its
    last success's scheduled time, and stale (flagged "!") when two ticks or more were missed.
    The broker part reads Redis (REDIS_URL) directly, so it answers with every worker down;
    without Redis it says so in one line. Exit status 0 whatever the jobs' state; 1 if the
    config or bucket cannot be read.

    \b
    --json prints one object:
      {"env": "dev", "bucket": "gs://ela-dp-dev", "now": ISO,
       "window_start": ISO | null,              # set with --stats
       "jobs": [{
         "job": str, "service": str, "schedule": str, "enabled": bool,
         "last_success": null | {"run_id", "scheduled_at", "finished_at",
                                 "records", "duration_s",
                                 "possible_gap": null | {"after", "before"}},
         "last_failure": null | {"run_id", "failed_at", "scheduled_at",
                                 "kind", "message", "object"},
         "failing": bool,                       # newest failure is after newest success
         "freshness": {"state": "fresh|late|stale|never|disabled",
                       "stale": bool, "due_at": ISO | null,
                       "missed_ticks": int | null, "behind_s": int | null},
         "stats": {"runs", "failures", "records", "api_calls", "bytes",
                   "duration_s", "cpu_s": float | null, "gaps"}   # with --stats only
       }],
       "broker": {"url": str, "reachable": bool, "error": str | null,
                  "queued": {QUEUE: int}, "running": int, "retries_waiting": int,
                  "held_by_dead_workers": int, "held_by_unknown_workers": int,
                  "workers": [{"id", "alive": bool, "node", "host", "pid", "env",
                               "started", "held": int}],
                  "deliveries": [{"run_id", "task", "job", "queue",
                                  "state": "running|retry waiting|dead worker|unknown worker",
                                  "worker": str | null, "taken_at": ISO, "age_s": int,
                                  "eta": ISO | null}]}}
    Times are UTC ISO 8601. Stats count runs scheduled inside the window; cpu_s sums the
    manifests' CPU seconds (null only for runs older than that field). possible_gap: the
    source may have dropped records between those times before the run read them (Spotify
    keeps 50 plays); gaps counts such runs.
    """
    from ela.ops import broker, status
    from ela.sinks import bucket_url, open_bucket

    with user_errors():
        config = load(env)
        span = status.parse_window(window) if stats else None
        url = bucket_url(config.global_.gcs_bucket)
    with user_errors(), _bucket_errors(url):
        bucket = open_bucket(url)
        now = at.replace(tzinfo=UTC) if at else None
        report = status.collect(config, bucket, now=now, window=span)
    held = broker.collect(config)
    if as_json:
        emit_json({**report.as_json(), "broker": held.as_json(datetime.now(UTC))})
        return
    say(f"{report.env}: {report.bucket} at {_short(status.iso(report.now))} UTC")
    header = ["", "JOB", "LAST SUCCESS", "RUN", "RECORDS", "DURATION", "FRESHNESS", "LAST FAILURE"]
    rows, totals = [], []
    for job in report.jobs:
        success = job.last_success or {}
        failure = job.last_failure
        row = [
            "!" if job.freshness.stale else "",
            job.job,
            _short(success.get("scheduled_at")),
            status_run8(success.get("run_id")),
            _text(success.get("records")),
            f"{success['duration_s']:.1f}s" if success.get("duration_s") is not None else "-",
            job.freshness.text(),
            (
                f"{_short(failure.get('failed_at'))} {failure.get('kind') or ''}".strip()
                + (" (since last success)" if status.failing_since_success(job) else "")
                if failure
                else "-"
            ),
        ]
        rows.append(row)
        if job.totals is not None:
            t = job.totals
            cpu = f"{t.cpu_s:.1f}" if t.cpu_s is not None else "-"
            numbers = [t.runs, t.failures, t.records, t.api_calls]
            totals.append([job.job, *(f"{n:,}" for n in numbers), _bytes(t.bytes), cpu])
    _print_coloured(rows, header, [job.freshness.state for job in report.jobs])
    if totals:
        say(f"\ntotals of the runs scheduled since {_short(status.iso(report.window_start))}")
        print_table(totals, ["JOB", "RUNS", "FAILS", "RECORDS", "API CALLS", "BYTES", "CPU S"])
    stale = [job.job for job in report.jobs if job.freshness.stale]
    if stale:
        say(f"\n! missed two ticks or more: {', '.join(stale)}")
    for job in report.jobs:
        gap = (job.last_success or {}).get("possible_gap")
        if gap:
            say(
                f"\n~ {job.job}: records may be missing between {_short(gap.get('after'))} and "
                f"{_short(gap.get('before'))} UTC (the source kept no more; see the manifest)"
            )
        if job.totals is not None and job.totals.gaps:
            say(f"~ {job.job}: {job.totals.gaps} run(s) in the window may have missed some")
    say("")
    _print_broker(held, report.env)


def _print_broker(held: broker.BrokerReport, env: str) -> None:
    """Queues, workers and the runs they hold, after the jobs' table."""
    from ela.ops import status

    if held.error is not None:
        say(f"broker {held.url}: cannot read it ({held.error}); runs in flight unknown")
        return
    alive = sum(1 for w in held.workers if w.alive)
    lost = held.count("dead worker") + held.count("unknown worker")
    say(
        f"broker {held.url}: {plural(alive, 'worker')} alive, "
        f"{len(held.workers) - alive} dead; {plural(held.count('running'), 'run')} in flight, "
        f"{held.count('retry waiting')} waiting to retry, "
        f"{lost} held by dead or unknown workers, {sum(held.queued.values())} queued"
    )
    say("")
    print_table([[queue, str(n)] for queue, n in held.queued.items()], ["QUEUE", "WAITING"])
    now = datetime.now(UTC)
    if held.deliveries:
        say("")
        rows = [
            [
                status_run8(d.run_id),
                d.job or d.task,
                d.state,
                d.worker or "-",
                age(d.age_s(now)) if d.age_s(now) >= 60 else f"{d.age_s(now)}s",
                _short(status.iso(d.eta)),
            ]
            for d in held.deliveries
        ]
        print_table(rows, ["RUN", "JOB", "STATE", "WORKER", "AGE", "RETRY AT"])
    mine = [w for w in held.workers if w.info.get("env") == env]
    if mine:
        say("")
        print_table(
            [[w.id, "alive" if w.alive else "dead", str(len(w.held))] for w in mine],
            ["WORKER", "LEASE", "HOLDS"],
        )


def status_run8(run_id: Any) -> str:
    return str(run_id)[:8] if run_id else "-"


def _short(iso: Any) -> str:
    """``2025-11-01T14:00:00+00:00`` → ``2025-11-01 14:00``."""
    if not iso:
        return "-"
    return str(iso).replace("T", " ")[:16]


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


# How a job's row looks on a terminal, by its freshness (click drops colours elsewhere).
_COLOURS = {"late": "yellow", "stale": "red", "never": "red"}


# Left out of the status table when the terminal is too narrow for all of it (--json has them).
_OPTIONAL = ("RUN", "DURATION")


def _print_coloured(rows: list[list[str]], header: list[str], states: list[str]) -> None:
    """The status table, each job's lines coloured by its freshness ``states``."""
    width = terminal_width()
    head, *lines = table_lines(rows, header, width)
    if width is not None and any(len(line) > width for row in [head, *lines] for line in row):
        keep = [i for i, name in enumerate(header) if name not in _OPTIONAL]
        header, rows = [header[i] for i in keep], [[row[i] for i in keep] for row in rows]
        head, *lines = table_lines(rows, header, width)
    for line in head:
        click.echo(line)
    for state, row_lines in zip(states, lines, strict=True):
        for line in row_lines:
            click.echo(click.style(line, fg=_COLOURS.get(state)) if state in _COLOURS else line)


def _bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{size}B"
