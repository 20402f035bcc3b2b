"""Every entry point checks a run's inputs with one schema (ela/run_input.py).

Where a message is sent (our app's ``send_task``: ``ela run``, ``celery call``, Flower, beat)
a bad one is refused with one line; a message that reaches Redis another way is refused by the
worker, which files an error object of kind ``input`` and runs nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ela import config as config_module
from ela.errors import InputError
from ela.pipeline import Overrides, run_job
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO, wait_for
from ela.sinks import LocalBucket
from tests.conftest import WorkerFactory
from tests.helpers import foreign_app, todoist_only
from worker.app import create_app

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
TRAVERSAL = "../../../spotify/_runs/spotify_recently_played/x"


@pytest.fixture
def todoist() -> Iterator[TodoistEmulator]:
    with TodoistEmulator(projects=12, tasks=40) as emulator:
        yield emulator


@pytest.mark.parametrize(
    ("task", "kwargs", "options", "said"),
    [
        ("tasks.todoist.tasks", {"limit": "abc"}, {}, "limit: expected a whole number"),
        ("tasks.spotify.saved_tracks", {"job": "todoist_tasks"}, {}, "job: todoist_tasks runs"),
        ("tasks.todoist.tasks", {"limt": 10}, {}, "limt: not an argument"),
        ("tasks.todoist.tasks", {}, {"task_id": TRAVERSAL}, "is not a UUID"),
        ("tasks.todoist.tasks", {}, {"task_id": "x" * 5000}, "is not a UUID"),
        ("tasks.todoist.tasks", {}, {"queue": "prd.todoist"}, "queue 'prd.todoist' is not"),
        ("tasks.run_group", {}, {}, "tasks.run_group: group: required"),
        ("tasks.purge_errors", {"days": 1}, {}, "takes no arguments"),
    ],
)
def test_the_app_refuses_to_send_a_bad_message(
    task: str, kwargs: dict[str, Any], options: dict[str, Any], said: str
) -> None:
    app = create_app(CONFIG, {"REDIS_URL": "redis://127.0.0.1:1/0"})  # never reached
    with pytest.raises(InputError, match=said):
        app.send_task(task, kwargs=kwargs, **options)
    with pytest.raises(InputError, match="keyword arguments only"):
        app.send_task("tasks.todoist.tasks", args=[1])


@pytest.mark.parametrize(
    ("task", "kwargs", "task_id", "said"),
    [
        ("tasks.todoist.tasks", {"limit": "abc"}, None, "limit: expected a whole number"),
        ("tasks.todoist.tasks", {"since": "yesterday"}, None, "since: 'yesterday' is not"),
        ("tasks.todoist.tasks", {"scheduled_at": "garbage"}, None, "scheduled_at: 'garbage'"),
        ("tasks.todoist.tasks", {"limt": 10}, None, "limt: not an argument"),
        ("tasks.todoist.tasks", {"dry_run": "false"}, None, "dry_run: expected true or false"),
        ("tasks.todoist.projects", {"job": "todoist_tasks"}, None, "job: todoist_tasks runs"),
        ("tasks.todoist.tasks", {}, TRAVERSAL, "is not a UUID"),
        ("tasks.todoist.tasks", {}, "a\x00" * 30, "is not a UUID"),
    ],
)
def test_the_worker_refuses_a_bad_message_with_an_error_object(
    worker_factory: WorkerFactory,
    todoist: TodoistEmulator,
    tmp_path: Path,
    task: str,
    kwargs: dict[str, Any],
    task_id: str | None,
    said: str,
) -> None:
    worker = worker_factory(extra_env=todoist.environ(), config=todoist_only(tmp_path / "c.yaml"))
    foreign = foreign_app(worker.environ)
    queue = "dev.todoist"
    result = foreign.send_task(task, kwargs=kwargs, task_id=task_id, queue=queue)
    with pytest.raises(Exception, match=said):
        result.get(timeout=60)
    bucket = LocalBucket(tmp_path / "bucket")
    errors = wait_for(lambda: list(bucket.list("todoist/errors/")), 20, "the error object")
    [body] = [json.loads(bucket.get_bytes(o.name) or b"") for o in errors]
    assert body["kind"] == "input" and said in body["message"]
    assert not list(bucket.list("todoist/_runs/")) and not list(bucket.list("todoist/landing/"))
    assert todoist.calls == []  # nothing was fetched
    assert all(name.startswith("todoist/errors/") for name in (o.name for o in bucket.list("")))
    worker.process.wait_log(said)  # the worker's one line (written after the result)
    assert "Traceback" not in worker.log()


def test_celery_call_and_ela_run_say_one_line(
    worker_factory: WorkerFactory, todoist: TodoistEmulator, tmp_path: Path
) -> None:
    worker = worker_factory(extra_env=todoist.environ(), config=todoist_only(tmp_path / "c.yaml"))
    for argv in (
        ["celery", "-A", "worker", "call", "tasks.todoist.tasks", "--kwargs", '{"limit": -1}'],
        ["ela.cli", "run", "todoist_tasks", "--limit", "10"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", *argv],
            cwd=REPO,
            env=worker.environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done
        [line] = done.stderr.strip().splitlines()
        assert "tasks.todoist.tasks: limit:" in line


def test_a_chosen_run_id_cannot_overwrite_another_runs_landing_object(tmp_path: Path) -> None:
    """Landing names carry 8 characters of the run id: an id chosen to share them, at the same
    minute, would land under another run's name (100 lines became 1)."""
    config = config_module.load(todoist_only(tmp_path / "c.yaml"))
    bucket = LocalBucket(tmp_path / "bucket")
    when = datetime(2025, 3, 1, 6, tzinfo=UTC)
    first = str(uuid.uuid4())
    chosen = first[:8] + str(uuid.uuid4())[8:]
    with TodoistEmulator(projects=12, tasks=100) as todoist:
        environ = {**os.environ, **todoist.environ(), "ELA_TOKEN_DIR": str(tmp_path / "t")}
        landed = run_job(
            config, "todoist_tasks", run_id=first, scheduled_at=when, bucket=bucket, environ=environ
        )
        [obj] = landed["objects"]
        before = bucket.get_bytes(obj["name"])
        with pytest.raises(InputError, match=f"which run {first} landed"):
            run_job(
                config,
                "todoist_tasks",
                run_id=chosen,
                scheduled_at=when,
                bucket=bucket,
                environ=environ,
                overrides=Overrides(),
            )
    assert bucket.get_bytes(obj["name"]) == before
