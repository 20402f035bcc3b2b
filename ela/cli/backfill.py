"""``ela backfill``: land a past date window of one job, chunk by chunk, resumably.

The chunking, run ids and pacing are :mod:`ela.ops.backfill`; this module is the command, the
progress display, and the one way a chunk reaches the workers (Celery is imported lazily, as
``ela run`` does). :mod:`ela.ops.backfill` is imported only when a backfill runs, so the
command costs other ``ela`` commands nothing.
"""

from __future__ import annotations

import shutil
import sys
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

import click

from ela.cli.common import ENV_OPTION, emit_json, fail, load, print_table, user_errors
from ela.errors import FatalError, IngestError
from ela.text import plural

if TYPE_CHECKING:
    from ela.ops import backfill as bf

DEFAULT_TIMEOUT = 3600.0  # seconds to wait for one chunk's result, as `ela run --wait`


# -- running a chunk on the workers ---------------------------------------------------------------


def _worker_app() -> Any:
    """The env's Celery app (imported only when a backfill goes through the workers)."""
    from worker.app import app

    return app


def worker_runner(app: Any, plan: bf.Plan, timeout: float) -> bf.RunChunk:
    """Send each chunk as ``tasks.<service>.<data_type>`` with its run id as the task id, and
    wait for its manifest, as a scheduled run lands.

    A chunk still in flight from an interrupted backfill (STARTED, or waiting for a retry) is
    awaited instead of sent again. Otherwise any stale result under the id (a failure of an
    earlier attempt) is forgotten first, so the answer awaited is this attempt's; a chunk
    already committed answers ``already_committed`` from its manifest, without a provider call.
    """
    from celery.exceptions import TimeoutError as ResultTimeout
    from celery.result import AsyncResult

    def attempt_once(chunk: bf.Chunk) -> dict[str, Any]:
        result = AsyncResult(chunk.run_id, app=app)
        if result.state in ("STARTED", "RETRY"):
            try:
                return _manifest(result.get(timeout=timeout, propagate=True))
            except ResultTimeout:
                pass  # its worker is gone: run it again below
        result.forget()
        sent = app.send_task(
            plan.task,
            kwargs=chunk.task_kwargs(plan.job, plan.profile.limit),
            task_id=chunk.run_id,
        )
        try:
            return _manifest(sent.get(timeout=timeout, propagate=True))
        except ResultTimeout:
            raise FatalError(
                f"no result for chunk {chunk.label} within {timeout:.0f} s: is a worker "
                f"consuming {plan.queue}?"
            ) from None

    def run(chunk: bf.Chunk, attempt: int) -> dict[str, Any]:
        try:
            return attempt_once(chunk)
        except IngestError:
            raise  # Celery rebuilds our own error classes: RetriableError stays retriable
        except Exception as exc:  # the broker, or an error class Celery could not rebuild
            raise FatalError(
                f"{plan.task}, chunk {chunk.label}: {type(exc).__name__}: {exc}"
            ) from exc

    return run


def _manifest(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FatalError(f"the task returned {type(value).__name__}, not a manifest")
    return value


# -- progress -----------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m"


class Progress:
    """A redrawn ``\\r`` line with a bar on a terminal; one plain line per event otherwise."""

    BAR = 24

    def __init__(self, plan: bf.Plan, stream: IO[str], tty: bool) -> None:
        self.plan = plan
        self.stream = stream
        self.tty = tty
        self.width = 0

    def __call__(self, event: bf.Event) -> None:
        if self.tty:
            self._draw(event)
        else:
            self._line(event)

    def _status(self, event: bf.Event) -> str:
        chunk, result = event.chunk, event.result
        if event.kind == "start":
            return f"{chunk.label} running"
        if event.kind == "wait":
            return f"waiting {_duration(event.seconds)} ({event.reason})"
        if event.kind == "retry":
            return f"{chunk.label} retrying in {_duration(event.seconds)}: {event.reason}"
        assert result is not None
        if event.kind == "failed":
            return f"{chunk.label} failed: {result.error}"
        if result.outcome == "already_committed":
            return f"{chunk.label} already committed"
        return (
            f"{chunk.label} {plural(result.records, 'record')}, {plural(result.api_calls, 'call')}"
        )

    def _draw(self, event: bf.Event) -> None:
        total = len(self.plan.chunks)
        filled = self.BAR * event.done // total
        text = (
            f"{self.plan.job} [{'#' * filled}{'-' * (self.BAR - filled)}] "
            f"{event.done}/{total}  {self._status(event)}"
        )
        # A line wider than the terminal wraps, and \r would then redraw only its last row.
        text = text[: shutil.get_terminal_size().columns - 1]
        pad = max(0, self.width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.width = len(text)
        if event.kind == "failed" or event.done == total:
            self.stream.write("\n")
        self.stream.flush()

    def _line(self, event: bf.Event) -> None:
        if event.kind == "start":
            return  # a line per outcome is enough in a log
        chunk = event.chunk
        self.stream.write(f"chunk {chunk.index}/{chunk.count} {self._status(event)}\n")
        self.stream.flush()

    def interrupted(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")


# -- the command ----------------------------------------------------------------------------------


@click.command()
@click.argument("job")
@click.option(
    "--since",
    "since",
    type=click.DateTime(["%Y-%m-%d"]),
    required=True,
    help="First day (UTC) to land.",
)
@click.option(
    "--until",
    "until",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Last day (UTC) to land, included (default: today).",
)
@ENV_OPTION
@click.option(
    "--chunk-days",
    type=click.IntRange(min=1),
    help="Days per run (default: 30 for Strava and Garmin).",
)
@click.option("--inline", is_flag=True, help="Run the chunks in this process, without a broker.")
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each chunk on the workers.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def backfill(
    job: str,
    since: datetime,
    until: datetime | None,
    env: str | None,
    chunk_days: int | None,
    inline: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Land JOB's data from --since to --until in chunks, resumably.

    Each chunk is a run with a run id fixed by (env, job, window): run the same command again
    after an interruption and the chunks already committed are not fetched again. Chunks go
    through the workers (like scheduled runs) unless --inline.
    """
    from ela.ops import backfill as bf

    with user_errors():
        config = load(env)
        plan = bf.plan(config, job, since.date(), until.date() if until else None, chunk_days)
    run_chunk = (
        bf.inline_runner(config, plan) if inline else worker_runner(_worker_app(), plan, timeout)
    )
    execute(plan, run_chunk, as_json=as_json)


def execute(
    plan: bf.Plan,
    run_chunk: bf.RunChunk,
    *,
    as_json: bool = False,
    pacer: bf.Pacer | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Run the plan with a progress display, then report; exits 1 on a failed chunk, 130 on
    Ctrl-C (in both cases the committed chunks stay committed: re-run to resume)."""
    from ela.ops import backfill as bf

    progress_stream = stream or (sys.stderr if as_json else sys.stdout)
    progress = Progress(plan, progress_stream, _isatty(progress_stream))
    pacer = pacer or bf.Pacer(plan.profile.quotas)
    state = bf.Backfill(plan)
    if not as_json:
        click.echo(
            f"backfill {plan.job} ({plan.env}) {plan.first}..{plan.last}: "
            f"{len(plan.chunks)} chunks of up to {plan.chunk_days} days"
        )
    try:
        bf.run_backfill(state, run_chunk, pacer=pacer, on_event=progress)
    except KeyboardInterrupt:
        progress.interrupted()
        done = len(state.results)
        click.echo(
            f"ela: interrupted after {done} of {len(plan.chunks)} chunks; committed chunks stay "
            "committed: run the same command again to resume",
            err=True,
        )
        sys.exit(130)
    if as_json:
        emit_json(state.as_dict(pacer.waited))
    else:
        _report(state, pacer.waited)
    failed = state.failed
    if failed is not None:
        before = len(state.results) - 1
        kept = f"the {plural(before, 'chunk')} before it stay committed; " if before else ""
        fail(
            f"chunk {failed.chunk.index}/{failed.chunk.count} ({failed.chunk.label}) failed: "
            f"{failed.error}; {kept}run the same command again to resume"
        )


def _report(state: bf.Backfill, waited: float) -> None:
    totals = state.totals()
    click.echo(
        f"{state.plan.job}: {totals['succeeded']} chunks landed, "
        f"{totals['already_committed']} already committed, {totals['failed']} failed; "
        f"{totals['records']} records, {totals['api_calls']} API calls"
        + (f", {_duration(waited)} waiting for rate limits" if waited else "")
    )
    if state.plan.incremental and state.results:
        last = state.results[-1]
        if last.cursor_after is not None:
            click.echo(f"cursor after the last chunk: {last.cursor_after}")
    rows = [
        [
            f"{r.chunk.index}",
            r.chunk.label,
            r.outcome,
            str(r.records),
            str(r.api_calls),
            r.chunk.run_id,
        ]
        for r in state.results
        if r.outcome != "already_committed"
    ]
    if rows:
        print_table(rows, ["CHUNK", "DAYS", "OUTCOME", "RECORDS", "CALLS", "RUN"])


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
