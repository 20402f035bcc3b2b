"""Section 1: what orchestration costs. Empty-connector runs through Redis and a worker vs
bare Celery no-ops on the same app and worker, with the bucket on tmpfs, then on disk."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from celery import Celery

from bench import harness, plugin
from bench.harness import TMPFS, Context, say
from bench.report import Row, X
from ela.sandbox.processes import client_app, wait_for


def rows(ctx: Context) -> list[Row]:
    """Item 1 twice: with the bucket on tmpfs (what orchestration costs: the goal rows), then
    on this machine's disk (what a local bucket adds here: a fsync per manifest)."""
    ns, tmp, n = ctx.ns, ctx.tmp, ctx.n
    with tempfile.TemporaryDirectory(prefix="ela-bench-", dir=TMPFS) as memory:
        tmpfs = _orchestration(ns, tmp, Path(memory), n)
    disk = _orchestration(ns, tmp, tmp, n)
    fsync = _fsync_ms(tmp)
    where = "tmpfs" if TMPFS else "this disk (no tmpfs here)"
    return [
        Row(
            f"1. empty-connector runs via Redis+worker, N={n:,} (-c 2), bucket on {where}",
            tmpfs.ours,
            tmpfs.bare,
            "tasks/s",
            f"≥ 0.90{X}",
            tmpfs.ours / tmpfs.bare >= 0.9,
        ),
        Row(
            "1. the same: one task in the pool process, median (Celery's 'succeeded in')",
            tmpfs.ours_ms,
            tmpfs.bare_ms,
            "ms",
            "—",
            None,
        ),
        Row(
            f"1. the same, bucket on this disk (a fsync per manifest: {fsync:.2f} ms median)",
            disk.ours,
            disk.bare,
            "tasks/s",
            "—",
            None,
        ),
    ]


# The bucket of the goal rows: memory, so that they measure orchestration, not this disk.


@dataclasses.dataclass
class Drained:
    ours: float  # tasks/s
    bare: float
    ours_ms: float  # median time of one task in the pool process
    bare_ms: float


def _orchestration(ns: harness.Namespace, tmp: Path, where: Path, n: int) -> Drained:
    """ABBA: bare no-ops and empty-connector runs in alternating halves, each drained from a
    full queue (the consumer is paused while the messages are sent)."""
    config = harness.write_config(tmp / "orchestration.yaml", bench_job=True)
    tag = uuid.uuid4().hex[:6]
    bucket = where / f"bucket-orchestration-{tag}"
    environ = harness.worker_environ(
        ns, config, {"ELA_BUCKET_URL": bucket.as_uri(), "ELA_TOKEN_DIR": str(tmp)}
    )
    app = client_app(environ)
    log = tmp / f"orchestration-{tag}.log"
    worker, _ = harness.start_worker(environ, log, app="bench.worker", concurrency=2)
    kinds = {"bare": ("bench.noop", "dev.ops"), "ours": (plugin.TASK, "dev.bench")}
    seconds = dict.fromkeys(kinds, 0.0)
    warm = min(300, n)
    try:
        node = _node(app)
        for kind in kinds:  # warm both pool processes and both code paths
            _drain(app, ns, node, *kinds[kind], count=warm)
        half = math.ceil(n / 2)
        for kind in ("bare", "ours", "ours", "bare"):
            seconds[kind] += _drain(app, ns, node, *kinds[kind], count=half)
    finally:
        worker.stop()
    runs = 2 * half
    manifests = len(list((bucket / plugin.NAME / "_runs").rglob("*.json")))
    if manifests != runs + warm:
        say(f"!! expected {runs + warm} manifests of empty runs, found {manifests}")
    text = log.read_text()
    ms = {kind: _median_task_ms(text, task) for kind, (task, _) in kinds.items()}
    ours, bare = runs / seconds["ours"], runs / seconds["bare"]
    say(
        f"1. orchestration, bucket in {where}: ours {ours:.0f}/s ({ms['ours']:.2f} ms a task), "
        f"bare {bare:.0f}/s ({ms['bare']:.2f} ms), {runs} each"
    )
    return Drained(ours, bare, ms["ours"], ms["bare"])


def _median_task_ms(log: str, task: str) -> float:
    pattern = re.escape(task) + r"\[[^\]]+\] succeeded in ([0-9.e-]+)s"
    return statistics.median(float(t) for t in re.findall(pattern, log)) * 1000


def _node(app: Celery) -> str:
    replies = app.control.ping(timeout=2, limit=1)
    return next(iter(replies[0]))


def _drain(
    app: Celery, ns: harness.Namespace, node: str, task: str, queue: str, count: int
) -> float:
    """Send ``count`` messages with the consumer paused, resume, time from the first message
    taken until all are acked.

    Not from the resume: the worker's Redis transport picks up an added queue with its next
    BRPOP, up to a second later, which would be counted against whichever side was draining.
    """
    app.control.cancel_consumer(queue, destination=[node], reply=True, limit=1)
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task(task, producer=producer)
    wait_for(lambda: ns.pending(queue) == count, 30, f"{count} messages in {queue}")
    app.control.add_consumer(queue, destination=[node], reply=True, limit=1)
    waiting = ns.key(queue)
    wait_for(lambda: ns.client.llen(waiting) < count, 30, "the worker to start", 0.0005)
    start = time.perf_counter()
    while ns.pending(queue):
        time.sleep(0.005)
    return time.perf_counter() - start


def _fsync_ms(where: Path, count: int = 200) -> float:
    """Median milliseconds to write a manifest-sized file and fsync it, in ``where``."""
    times = []
    for i in range(count):
        path = where / f"fsync-{i}"
        start = time.perf_counter()
        with path.open("wb") as out:
            out.write(b"x" * 640)
            out.flush()
            os.fsync(out.fileno())
        times.append(time.perf_counter() - start)
        path.unlink()
    return statistics.median(times) * 1000
