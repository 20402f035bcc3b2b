"""Importing the app reads no config: a typo in it fails the commands that need it, once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ela.sandbox.configs import write_config
from ela.sandbox.processes import REPO, isolated_environ

pytestmark = pytest.mark.integration  # each case is a Python or celery process


def python(code: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=environ, capture_output=True, text=True
    )


@pytest.fixture
def broken(tmp_path: Path) -> dict[str, str]:
    bad = tmp_path / "ingestion-config-dev.yaml"
    bad.write_text((REPO / "ingestion-config-dev.yaml").read_text().replace("jobs:", "jobz:", 1))
    return {**isolated_environ(os.environ), "ELA_CONFIG": str(bad)}


def test_a_config_typo_does_not_break_imports(broken: dict[str, str]) -> None:
    modules = "worker, tasks, beat_schedules, ela.sinks, ela.sandbox.processes, tests.helpers"
    done = python(f"import {modules}", broken)
    assert done.returncode == 0, done.stderr


CELERY = ["-m", "celery", "-A", "worker"]
LAUNCHER = ["-m", "worker.main"]  # what `ela worker|beat` exec


@pytest.mark.parametrize(
    "command",
    [
        [*CELERY, "worker"],
        [*CELERY, "beat"],
        [*CELERY, "call", "tasks.todoist.projects"],
        [*LAUNCHER, "worker"],
        [*LAUNCHER, "beat"],
    ],
)
def test_celery_with_a_config_typo_says_so_in_one_line_per_problem(
    broken: dict[str, str], command: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, *command],
        cwd=REPO,
        env=broken,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines and all(line.startswith(broken["ELA_CONFIG"] + ":") for line in lines), lines


def test_retries_come_from_the_config_the_app_loads(tmp_path: Path) -> None:
    config = write_config(tmp_path / "ingestion-config-dev.yaml", retry_attempts=4)
    environ = {**isolated_environ(os.environ), "ELA_CONFIG": str(config)}
    done = python(
        "import tasks; print(tasks.INGEST_TASKS['tasks.todoist.tasks'].max_retries)", environ
    )
    assert done.stdout.strip() == "4", done.stderr


def test_the_worker_launcher_imports_no_other_celery_command() -> None:
    """`celery -A worker worker` imports Flower, tornado and prompt_toolkit for its other
    commands and plugins; the launcher `ela worker` execs does not, and still parses Celery's
    worker options."""
    code = (
        "import sys, runpy; sys.argv = ['worker.main', 'worker', '--help']\n"
        "try:\n    runpy.run_module('worker.main', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('flower', 'tornado', 'prompt_toolkit', 'click_repl') "
        "if m in sys.modules))"
    )
    done = python(code, isolated_environ(os.environ))
    assert "--concurrency" in done.stdout, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_pool_processes_ask_for_sigkill_without_cffis_c_parser() -> None:
    """What Celery's pool initializer does in each pool process: set the parent-death signal.
    billiard would declare prctl to cffi, whose parser (pycparser) costs 3 MB a process."""
    code = (
        "import ctypes, sys, celery.platforms, worker.app\n"
        "celery.platforms.set_pdeathsig('SIGKILL')\n"
        "got = ctypes.c_int()\n"
        "ctypes.CDLL(None).prctl(2, ctypes.byref(got))  # PR_GET_PDEATHSIG\n"
        "print(got.value, 'cffi' in sys.modules, 'pycparser' in sys.modules)"
    )
    done = python(code, isolated_environ(os.environ))
    assert done.stdout.split() == ["9", "True", "False"], done.stderr
