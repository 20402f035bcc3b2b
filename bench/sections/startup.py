"""Section 5: worker ready time against a bare Celery app, and the import time of the task
modules against importing the provider libraries too."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from bench import harness
from bench.harness import Context, say
from bench.report import Row
from ela.sandbox.processes import REPO


def rows(ctx: Context) -> list[Row]:
    ns, tmp, repeats = ctx.ns, ctx.tmp, min(2, ctx.repeats)
    environ = harness.worker_environ(
        ns, REPO / "ingestion-config-dev.yaml", {"ELA_TOKEN_DIR": str(tmp / "tokens")}
    )
    ready: dict[str, float] = {}
    for app in ("worker", "bench.bare"):
        times = []
        for i in range(repeats):
            worker, seconds = harness.start_worker(environ, tmp / f"ready-{app}-{i}.log", app=app)
            worker.stop()
            times.append(seconds)
        ready[app] = min(times)
    ours_import, loaded = _import_time("import tasks", environ, repeats)
    eager, _ = _import_time(
        "import tasks, " + ", ".join(harness.PROVIDER_MODULES), environ, repeats
    )
    say(
        f"5. ready {ready}, import tasks {ours_import:.3f} s (eager {eager:.3f} s), loaded {loaded}"
    )
    return [
        Row(
            "5. worker ready (spawn → 'ready.'), vs bare Celery app",
            ready["worker"],
            ready["bench.bare"],
            "s",
            "—",
            None,
        ),
        Row(
            "5. import tasks, vs importing the 4 provider libraries too",
            ours_import,
            eager,
            "s",
            "no provider lib imported",
            not loaded,
        ),
    ]


def _import_time(statement: str, environ: dict[str, str], repeats: int) -> tuple[float, list[str]]:
    # json is imported after the clock stops: only the statement is timed.
    code = (
        "import sys, time; t = time.perf_counter(); "
        f"{statement}; t = time.perf_counter() - t; import json; "
        f"print(t, json.dumps([m for m in {harness.PROVIDER_MODULES!r} if m in sys.modules]))"
    )
    best, loaded = math.inf, []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=environ,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split(" ", 1)
        best = min(best, float(out[0]))
        loaded = json.loads(out[1])
    return best, loaded
