"""``ela bucket``: the env's bucket set up (lifecycle rule), its old errors purged, and its
landing objects checked against BigQuery's rules. The bucket clients load inside the commands."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from ela.cli.common import ENV_OPTION, load, user_errors
from ela.text import plural


@click.group("bucket")
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
