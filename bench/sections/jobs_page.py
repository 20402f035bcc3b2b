"""Section 7: the Jobs page of ``ela flower``: object bodies a load reads with many manifests in
the bucket, the first time and again (its cache reads only new or changed objects)."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import TMPFS, Context, say
from bench.report import Row
from ela import config as config_module
from ela import naming
from ela.ops.jobs_view import JobsBoard
from ela.pipeline import run_job
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO
from ela.sinks import LocalBucket, put_json


def rows(ctx: Context) -> list[Row]:
    """Item 7: a bucket holding ``ctx.manifests`` manifests over the dev config's jobs (a real
    run's manifest, copied under new run ids, an hour apart per job); the Jobs page's data is
    loaded, loaded again with nothing changed, then again after one new run.

    A local folder on tmpfs: the GCS emulator takes ~20 ms per upload, 200 s to fill. On GCS
    every body read is a round trip, which is what the cache saves.
    """
    manifests = ctx.manifests
    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    with tempfile.TemporaryDirectory(prefix="ela-bench-jobs-", dir=TMPFS) as root:
        bucket = LocalBucket(Path(root) / "bucket")
        template = _real_manifest(config, bucket)
        now = datetime.now(UTC)
        jobs = list(config.jobs)
        for i in range(manifests):
            _put_manifest(bucket, config, template, jobs[i % len(jobs)], now - timedelta(hours=i))
        board = JobsBoard(config, bucket)
        first, first_s = _timed(board.build)
        second, second_s = _timed(board.build)
        _put_manifest(bucket, config, template, "todoist_projects", now)
        third, third_s = _timed(board.build)
    say(
        f"7. Jobs page, {manifests} manifests: {first.reads} bodies read in {first_s:.3f} s, "
        f"then {second.reads} in {second_s:.3f} s, then {third.reads} in {third_s:.3f} s"
    )
    where = f"{manifests:,} manifests in the bucket"
    return [
        Row(
            f"7. Jobs page, {where}: bodies read, load 2 vs load 1",
            second.reads,
            first.reads,
            "objects",
            "= 0 (lists only)",
            second.reads == 0,
        ),
        Row(
            "7. the same, after one new run: bodies read",
            third.reads,
            None,
            "objects",
            "= 1",
            third.reads == 1,
        ),
        Row(
            "7. the same: time to load the page's data, load 2 vs load 1",
            second_s,
            first_s,
            "s",
            "—",
            None,
        ),
    ]


def _real_manifest(config: config_module.IngestionConfig, bucket: LocalBucket) -> dict[str, Any]:
    """The manifest of one real todoist_projects run (pipeline, client library, emulator)."""
    run_id = str(uuid.uuid4())
    with TodoistEmulator(projects=25, tasks=0) as todoist:
        manifest = run_job(
            config,
            "todoist_projects",
            run_id=run_id,
            scheduled_at=datetime.now(UTC),
            bucket=bucket,
            environ={**os.environ, **todoist.environ()},
        )
    bucket.delete(naming.manifest("todoist", "todoist_projects", run_id))
    return {k: v for k, v in manifest.items() if k != "outcome"}


def _put_manifest(
    bucket: LocalBucket,
    config: config_module.IngestionConfig,
    template: dict[str, Any],
    job: str,
    at: datetime,
) -> None:
    spec, run_id = config.jobs[job], str(uuid.uuid4())
    name = naming.manifest(spec.service, job, run_id)
    body = {**template, "job": job, "service": spec.service, "run_id": run_id}
    put_json(bucket, name, {**body, "scheduled_at": at.isoformat(), "finished_at": at.isoformat()})
    os.utime(bucket.root / name, (at.timestamp(), at.timestamp()))


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start
