"""Section 3: peak RSS of the worker's pool process ingesting 1,000 vs 100,000 records, against
the baseline script's."""

from __future__ import annotations

import os

from bench import harness
from bench.harness import Context, Runner, run_baseline, say
from bench.report import Row
from ela import config as config_module
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO, client_app


def rows(ctx: Context) -> list[Row]:
    ns, tmp = ctx.ns, ctx.tmp
    config_path = harness.write_config(tmp / "memory.yaml")
    config = config_module.load(config_path)
    peaks: dict[int, float] = {}
    base: dict[int, float] = {}
    for count in (1_000, 100_000):
        with TodoistEmulator(projects=25, tasks=count) as em:
            extra = {
                **em.environ(),
                "ELA_TOKEN_DIR": str(tmp / "tokens"),
                "ELA_BUCKET_URL": (tmp / f"bucket-memory-{count}").as_uri(),
            }
            environ = harness.worker_environ(ns, config_path, extra)
            worker, _ = harness.start_worker(environ, tmp / f"memory-{count}.log")
            try:
                (child,) = worker.pool_children()
                manifest = Runner(client_app(environ), config).run("todoist_tasks")
                assert manifest["records"] == count, manifest["records"]
                peaks[count] = harness.vm_hwm_kib(child) / 1024
            finally:
                worker.stop()
            script = run_baseline(
                "todoist_tasks",
                (tmp / f"bucket-memory-base-{count}").as_uri(),
                {**os.environ, **em.environ(), "PYTHONPATH": str(REPO)},
            )
            base[count] = script["peak_kib"] / 1024
        say(
            f"3. memory, {count:,} Todoist tasks: worker {peaks[count]:.1f} MB, "
            f"script {base[count]:.1f} MB"
        )
    growth, base_growth = peaks[100_000] - peaks[1_000], base[100_000] - base[1_000]
    return [
        Row(
            "3. peak RSS, worker pool process, 1,000 records",
            peaks[1_000],
            base[1_000],
            "MB",
            "—",
            None,
        ),
        Row(
            "3. peak RSS, worker pool process, 100,000 records",
            peaks[100_000],
            base[100_000],
            "MB",
            "—",
            None,
        ),
        Row(
            "3. peak RSS growth 1,000 → 100,000 records",
            growth,
            base_growth,
            "MB",
            "< 20 MB",
            growth < 20,
        ),
    ]
