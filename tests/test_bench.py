"""The benchmark still runs: items 1, 5 and 6, small, through the same code as ``scripts/bench``.

No figure is asserted (speed goals live in the benchmark, not in tests): only that each
section runs to its rows and the table prints.
"""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO, base_environ

ROWS = (
    "1. empty-connector runs via Redis+worker, N=40",
    "1. the same: one task in the pool process",
    "1. the same, bucket on this disk",
    "5. worker ready",
    "5. import tasks",
)


def bench(redis_url: str, *args: str) -> str:
    """``python -m bench ARGS``' table; it must not have failed with a traceback."""
    out = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        env=base_environ(redis_url, {"ELA_BENCH_REDIS_URL": redis_url}),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.stdout


def test_orchestration_and_start_up_sections_print_their_rows(redis_url: str) -> None:
    """The benchmark keys its Redis use by a prefix of its own and deletes it at the end."""
    out = bench(redis_url, "--only", "1,5", "-n", "40", "--repeats", "1")
    for row in ROWS:
        assert f"| {row}" in out, out
    assert "machine: " in out


def test_the_jobs_page_section_prints_its_rows(redis_url: str) -> None:
    out = bench(redis_url, "--only", "6", "--manifests", "200")
    for row in (
        "6. Jobs page, 200 manifests in the bucket: bodies read, load 2 vs load 1",
        "6. the same, after one new run: bodies read",
        "6. the same: time to load the page's data",
    ):
        assert f"| {row}" in out, out
