"""The benchmark still runs: items 1, 5 and 6, small, through the same code as ``scripts/bench``.

No figure is asserted (speed goals live in the benchmark, not in tests): only that each
section runs to its rows and the table prints.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ela.sandbox.processes import REPO, base_environ

ROWS = (
    "1. empty-connector runs via Redis+worker, N=40",
    "1. the same: one task in the pool process",
    "1. the same, bucket on this disk",
    "5. worker ready",
    "5. import tasks",
)


def bench(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        env=base_environ(redis_url, {"ELA_BENCH_REDIS_URL": redis_url}),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_orchestration_and_start_up_sections_print_their_rows(redis_url: str) -> None:
    """The benchmark keys its Redis use by a prefix of its own and deletes it at the end."""
    out = bench(redis_url, "--only", "1,5", "-n", "40", "--repeats", "1")
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    for row in ROWS:
        assert f"| {row}" in out.stdout, out.stdout
    assert "machine: " in out.stdout


def test_completeness_section_loses_no_play_where_the_fixed_schedule_does(redis_url: str) -> None:
    """Section 6 drives the real connector and follow-up decision over a simulated day; its
    goal row (0 plays lost) is what exit status 0 reports."""
    out = bench(redis_url, "--only", "6")
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    [lost] = [line for line in out.stdout.splitlines() if "6. plays lost" in line]
    ours, fixed = (int(cell.split()[0]) for cell in lost.split("|")[2:4])
    assert ours == 0 < fixed
    assert "| 6. job state at its cap (10,000 landed keys" in out.stdout


def test_the_jobs_page_section_prints_its_rows(redis_url: str) -> None:
    out = bench(redis_url, "--only", "7", "--manifests", "200")
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    for row in (
        "7. Jobs page, 200 manifests in the bucket: bodies read, load 2 vs load 1",
        "7. the same, after one new run: bodies read",
        "7. the same: time to load the page's data",
    ):
        assert f"| {row}" in out.stdout, out.stdout


@pytest.mark.integration  # a Python process
def test_the_benchmark_needs_dlt_only_for_its_peer_section() -> None:
    """dlt lives in the benchmark's own virtual environment, run as a separate process; the
    benchmark itself (and so the product's environment) never imports it."""
    code = (
        "import sys, bench.__main__, bench.sections.peer; "
        "sys.exit(any(m == 'dlt' or m.startswith('dlt.') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
