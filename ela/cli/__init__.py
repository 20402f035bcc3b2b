"""The ``ela`` command: the click group, and the commands of this package's modules added to it.

Every user-facing failure is one line (or one line per config problem) and exit status 1;
tracebacks are for bugs. Commands that need Celery, Redis or a bucket client import them inside
the command, so ``ela validate`` and ``ela schedule`` work without a broker and start fast.

Where each command lives: ``configs`` (validate, jobs, schedule, diff, promote, config),
``run``, ``processes`` (worker, beat, flower), ``status``, ``backfill``, ``bucket``, ``auth``
and ``demo``; ``common`` holds what they share.
"""

from __future__ import annotations

import click

from ela.cli import auth, backfill, bucket, configs, demo, processes, run, status


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ela-ingest")
def main() -> None:
    """ELA Ingest: Spotify, Strava, Garmin and Todoist into per-environment GCS buckets."""


main.add_command(configs.validate)
main.add_command(configs.jobs)
main.add_command(configs.schedule)
main.add_command(configs.diff_command)
main.add_command(configs.promote_command)
main.add_command(configs.config_group)
main.add_command(run.run)
main.add_command(processes.worker)
main.add_command(processes.beat)
main.add_command(processes.flower)
main.add_command(status.status_command)
main.add_command(backfill.backfill)
main.add_command(bucket.bucket)
main.add_command(auth.auth)
main.add_command(demo.demo)
