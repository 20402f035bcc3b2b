"""``python -m bench`` (``scripts/bench``): measure, side by side, and print one table.

1. Orchestration: N empty-connector runs through Redis and a worker vs N bare Celery no-ops,
   with the bucket on tmpfs, then on disk.
2. Ingest: records/s from the emulators to a local folder and to the GCS emulator, the worker
   vs a plain sequential script (``bench/baseline/``) with the same library and the same JSONL;
   then again with a network round trip added to every call (``--latency``).
3. Memory: peak RSS of the worker's pool process ingesting 1,000 vs 100,000 records.
4. API calls per run against the minimum, full runs and steady-state runs.
5. Start-up: worker ready time, and the import time of the task modules.
6. Completeness: plays lost over a simulated listening day at prd's schedule, with and without
   follow-up runs; the size and read/write time of a job state at its cap of landed keys.
7. The Jobs page of ``ela flower``: object bodies a load reads with 10,000 manifests in the
   bucket, the first time and again (its cache reads only new or changed objects).
8. With ``--peer dlt``: Spotify, Todoist and Strava through a dlt REST API pipeline
   (``bench/sections/peer.py``, dlt in a virtual environment of its own) against the worker.
9. The data types added after the origin's thirteen (``bench/sections/data_types.py``): calls
   per run at their minimum (item 4), and the biggest against a plain script (item 2).

Progress goes to stderr; the table to stdout. Redis: ``ELA_BENCH_REDIS_URL`` (default db 12),
under a key prefix of this run's own, deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import redis

from bench import harness
from bench.report import Row, section_of, table
from bench.sections import SECTIONS


def machine(client: redis.Redis) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    info = client.info("server")
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"Redis {info.get('redis_version')}, {platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("-n", type=int, default=5_000, help="empty runs (and no-ops), ≥ 5,000")
    parser.add_argument("--repeats", type=int, default=3, help="ingest runs per side; best kept")
    parser.add_argument(
        "--latency", type=float, default=0.02, help="seconds per call in the last ingest round"
    )
    parser.add_argument(
        "--only", default="1,2,3,5,6,7,9", help="sections to run, e.g. 2 (item 4 rides on 2)"
    )
    parser.add_argument(
        "--manifests", type=int, default=10_000, help="manifests in the bucket for item 7"
    )
    parser.add_argument(
        "--peer",
        choices=["dlt"],
        help="also run section 8: the same sources through dlt (installed into .bench-venvs/)",
    )
    args = parser.parse_args(argv)
    sections = set(args.only.split(",")) | ({"8"} if args.peer else set())
    clock = time.perf_counter()
    ns = harness.Namespace()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ela-bench-") as root:
        ctx = harness.Context(
            ns,
            Path(root),
            n=args.n,
            repeats=args.repeats,
            latency=args.latency,
            manifests=args.manifests,
        )
        try:
            for number, section in SECTIONS.items():
                if number in sections:
                    rows += section(ctx)
            about = machine(ns.client)  # before clean() closes the client
        finally:
            ns.clean()
    rows.sort(key=section_of)  # stable: section 4's rows (measured in 2) go after 3's
    print(table(rows))
    print(f"\nmachine: {about}; whole run {time.perf_counter() - clock:.0f} s")
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
