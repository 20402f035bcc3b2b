"""The config files: ``ela validate``, ``jobs``, ``schedule``, ``diff``, ``promote`` and
``config migrate``.

None of them needs Redis or Celery. ``diff``, ``promote`` and ``migrate`` do their work in
``ela/ops/`` (with ruamel.yaml), imported inside the commands, so ``ela validate`` starts fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ela import config as config_module
from ela.cli.common import (
    ENV_OPTION,
    emit_json,
    load,
    print_table,
    table_lines,
    terminal_width,
    user_errors,
)
from ela.text import plural

# -- validate, jobs, schedule ------------------------------------------------------------------


@click.command("validate")
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


@click.command("jobs")
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


@click.command("schedule")
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


# -- diff ---------------------------------------------------------------------------------------


def _shown(path: str) -> str:
    """A file's path as the operator would type it: relative to here when it is below here."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _config_file(which: str) -> Path:
    """An environment name (``dev``/``prd``: its shipped file) or a path."""
    if which in config_module.ENVS:
        return config_module.config_path(which, {})  # ELA_CONFIG would make both sides one file
    path = Path(which)
    if not path.exists():
        raise ValueError(f"{which}: neither dev, prd nor an existing config file")
    return path


@click.command("diff")
@click.argument("left", default="dev")
@click.argument("right", default="prd")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--color/--no-color",
    default=None,
    help="Colour the differences (default: when writing to a terminal).",
)
def diff_command(left: str, right: str, as_json: bool, color: bool | None) -> None:
    """Two configs side by side: globals, schedules, parameters, groups, services.

    LEFT and RIGHT are environments (dev, prd: their files) or config file paths. Rows that
    differ are marked "*" (and coloured on a terminal); "-" is a job or group one side lacks.

    \b
    --json: {"left": {"env", "path"}, "right": {"env", "path"}, "differences": int,
             "sections": {"global"|"schedules"|"parameters"|"groups"|"services":
                          [{"key", "left", "right", "differs"}]}}
    """
    from ela.ops import configdiff

    with user_errors():
        lconf = config_module.load(_config_file(left))
        rconf = config_module.load(_config_file(right))
    rows = configdiff.compare(lconf, rconf)
    differs = any(row.differs for row in rows)
    if as_json:
        emit_json(configdiff.as_json(lconf, rconf, rows))
        sys.exit(1 if differs else 0)
    use_color = color if color is not None else sys.stdout.isatty()
    lname, rname = lconf.env.upper(), rconf.env.upper()
    if lname == rname:
        lname, rname = lconf.path, rconf.path
    for section in configdiff.SECTIONS:
        section_rows = [row for row in rows if row.section == section]
        if not section_rows:
            continue
        cells = [[row.key, *configdiff.render_cells(row)] for row in section_rows]
        header = [section.upper(), lname, rname]
        head, *lines = table_lines(cells, header, terminal_width(), indent=2)
        click.echo("\n".join(f"  {line}" for line in head))
        for row, row_lines in zip(section_rows, lines, strict=True):
            marker = "* " if row.differs else "  "
            for n, line in enumerate(row_lines):
                text = f"{marker if n == 0 else '  '}{line}"
                if use_color and row.differs:
                    missing = row.left is None or row.right is None
                    text = click.style(text, fg="red" if missing else "yellow", bold=missing)
                click.echo(text, color=use_color)
        click.echo("")
    count = sum(row.differs for row in rows)
    click.echo(f"{plural(count, 'difference')} ({_shown(lconf.path)} vs {_shown(rconf.path)})")
    sys.exit(1 if differs else 0)  # as diff(1) does: 0 the same, 1 different


# -- promote ------------------------------------------------------------------------------------


@click.command("promote")
@click.argument("job")
@click.option(
    "--from", "source", default="dev", show_default=True, help="Env or file to copy from."
)
@click.option("--to", "target", default="prd", show_default=True, help="Env or file to change.")
@click.option(
    "--cron", "--schedule", "schedule", metavar="CRON", help="Give the job this cron instead."
)
@click.option(
    "--keep-schedule",
    is_flag=True,
    help="Keep the target's cron for the job (the default without --cron).",
)
@click.option("--dry-run", is_flag=True, help="Print the diff; write nothing.")
def promote_command(
    job: str, source: str, target: str, schedule: str | None, keep_schedule: bool, dry_run: bool
) -> None:
    """Copy JOB's definition from one config into the other, keeping the target's schedule.

    Everything but the schedule is copied (service, data type, parameters, enabled,
    description, dependencies); a job the target lacks is appended to its jobs. The target's
    comments, order and quoting are kept, the result is validated before it is written, and
    the change is printed as a unified diff.
    """
    from ela.ops import promote

    with user_errors():
        source_path, target_path = _config_file(source), _config_file(target)
        if keep_schedule and schedule is not None:
            raise ValueError("--cron and --keep-schedule contradict each other; pick one")
        if source_path.resolve() == target_path.resolve():
            raise ValueError(f"--from and --to are the same file ({source_path})")
        result = promote.promote(job, source_path, target_path, schedule=schedule)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if not result.changed:
        click.echo(f"{target_path}: {job} already matches {source_path}; nothing to do")
        return
    click.echo(result.unified_diff(), nl=False)
    if dry_run:
        click.echo(f"dry run: {target_path} not written")
        return
    with user_errors():
        try:
            promote.write(result)
        except OSError as exc:
            raise ValueError(f"{target_path}: cannot write: {exc.strerror}") from None
    verb = "added to" if result.added else "updated in"
    click.echo(f"{job} {verb} {target_path} (cron {result.schedule!r})")


# -- config migrate -----------------------------------------------------------------------------


@click.group("config")
def config_group() -> None:
    """Config file tools."""


@click.command("migrate")
@click.argument("legacy", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where ingestion-config-dev.yaml and ingestion-config-prd.yaml are written.",
)
@click.option("--force", is_flag=True, help="Overwrite existing env files.")
@click.option("--dry-run", is_flag=True, help="Print the notes; write nothing.")
def migrate_command(legacy: Path, out_dir: Path, force: bool, dry_run: bool) -> None:
    """Turn the origin's single legacy config into the two env files.

    Reads LEGACY (the origin's ingestion-config.yaml: global with gcs_bucket_dev and
    gcs_bucket_prd) and writes each env file as LEGACY's own text with that env's bucket and
    environment, every job, group, comment and command line kept, once both validate. What
    could not be carried over, or needs a look, is printed as one FILE:LINE line each.
    """
    from ela.ops import migrate

    with user_errors():
        result = migrate.migrate(legacy)
        paths = result.paths(out_dir)
        if not dry_run:
            try:
                paths = migrate.write(result, out_dir, force=force)
            except OSError as exc:
                raise ValueError(f"{out_dir}: cannot write: {exc.strerror}") from None
    for note in result.notes:
        click.echo(f"note: {note}")
    for env, path in paths.items():
        state = "would write" if dry_run else "wrote"
        click.echo(f"{state} {path}: {len(result.configs[env].jobs)} jobs")


config_group.add_command(migrate_command)
