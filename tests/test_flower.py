"""Flower behind basic auth, against a real worker and a real ``ela flower`` process.

Flower 2.2 leaves ``/metrics`` open under ``--basic-auth``; ``worker/flower_app.py`` (which
``ela flower`` runs) puts it, and every other route except ``/healthcheck``, behind the same
credentials. These tests start Flower exactly as a user does and talk HTTP to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO, free_port, wait_for
from ela.sinks import LocalBucket
from tests.conftest import WorkerFactory, read_jsonl
from tests.helpers import todoist_only
from worker.flower_app import broker_uri_for_flower, flower_argv

pytestmark = [pytest.mark.timeout(180), pytest.mark.integration]  # Flower processes

USER = "ela-admin"
PASSWORD = "flower-test-password-4f9c"
# /broker and /api/queues/length read Redis through Flower's broker inspector.
PROTECTED = (
    "/",
    "/workers",
    "/tasks",
    "/broker",
    "/api/workers",
    "/api/tasks",
    "/api/queues/length",
    "/metrics",
)


class FlowerProcess:
    """``ela flower --port PORT`` as a subprocess; ``url`` once it answers."""

    def __init__(self, environ: Mapping[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ela.cli", "flower", "--port", str(self.port)],
            cwd=REPO,
            env=dict(environ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"flower exited {self.proc.returncode}:\n{self.log()}")
            try:
                return requests.get(f"{self.url}/healthcheck", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(up, 60, "Flower's /healthcheck", 0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def running_flower(environ: Mapping[str, str], log: Path) -> Iterator[FlowerProcess]:
    flower = FlowerProcess(environ, log)
    try:
        yield flower
    finally:
        flower.stop()


@pytest.fixture
def todoist() -> Iterator[TodoistEmulator]:
    with TodoistEmulator(projects=7, tasks=30) as emulator:
        yield emulator


def test_flower_needs_credentials_everywhere_and_sends_tasks_with_them(
    worker_factory: WorkerFactory, todoist: TodoistEmulator, tmp_path: Path
) -> None:
    worker = worker_factory(extra_env=todoist.environ(), config=todoist_only(tmp_path / "c.yaml"))
    environ = {**worker.environ, "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}
    with running_flower(environ, tmp_path / "flower.log") as flower:
        good = (USER, PASSWORD)
        for path in PROTECTED:
            url = flower.url + path
            anonymous = requests.get(url, timeout=10, allow_redirects=False)
            assert anonymous.status_code == 401, (path, anonymous.status_code)
            assert "flower_" not in anonymous.text  # no metric leaks into a refusal
            for wrong in ((USER, "not-the-password"), ("someone", PASSWORD), (USER, "")):
                refused = requests.get(url, auth=wrong, timeout=10, allow_redirects=False)
                assert refused.status_code == 401, (path, wrong, refused.status_code)
            assert requests.get(url, auth=good, timeout=30).status_code == 200, path
        # Any verb, and a scheme other than Basic, are refused the same way.
        assert requests.head(f"{flower.url}/metrics", timeout=10).status_code == 401
        bearer = {"Authorization": f"Bearer {PASSWORD}"}
        assert requests.get(f"{flower.url}/metrics", headers=bearer, timeout=10).status_code == 401
        # With credentials, /metrics is Flower's Prometheus text.
        metrics = requests.get(f"{flower.url}/metrics", auth=good, timeout=10)
        assert "flower_events_total" in metrics.text, metrics.text[:2000]
        # The liveness probe stays open and says nothing but OK.
        health = requests.get(f"{flower.url}/healthcheck", timeout=10)
        assert (health.status_code, health.text) == (200, "OK")

        # Sending a task without credentials is refused and sends nothing.
        send = f"{flower.url}/api/task/send-task/tasks.todoist.projects"
        assert requests.post(send, json={}, timeout=10).status_code == 401
        assert requests.post(send, json={}, auth=(USER, "x"), timeout=10).status_code == 401

        # A bad argument, a foreign job or queue, a run id that is not a UUID: 400 and the
        # schema's one line, nothing sent (through send-task and through apply).
        for body, said in (
            ({"kwargs": {"limit": "abc"}}, "limit: expected a whole number, got 'abc'"),
            ({"kwargs": {"job": "todoist_tasks"}}, "job: todoist_tasks runs tasks.todoist.tasks"),
            ({"kwargs": {}, "queue": "prd.todoist"}, "queue 'prd.todoist' is not"),
            ({"kwargs": {}, "task_id": "../../x"}, "is not a UUID"),
        ):
            refused = requests.post(send, json=body, auth=good, timeout=30)
            assert refused.status_code == 400, refused.text
            [line] = refused.text.strip().splitlines()
            assert line.startswith("tasks.todoist.projects: ") or "UUID" in line
            assert said in line
        apply = f"{flower.url}/api/task/async-apply/tasks.todoist.projects"
        refused = requests.post(apply, json={"kwargs": {"limt": 3}}, auth=good, timeout=30)
        assert refused.status_code in (400, 404), refused.text  # 404: not registered in Flower

        # With them, the worker runs it and it lands.
        sent = requests.post(
            send, json={"kwargs": {"job": "todoist_projects"}}, auth=good, timeout=30
        )
        assert sent.status_code == 200, sent.text
        task_id = sent.json()["task-id"]
        bucket = LocalBucket(tmp_path / "bucket")
        name = f"todoist/_runs/todoist_projects/{task_id}.json"
        wait_for(lambda: bucket.get_bytes(name), 60, name, 0.5)
        manifest = json.loads(bucket.get_bytes(name) or b"{}")
        assert manifest["job"] == "todoist_projects" and manifest["records"] == len(
            todoist.projects
        )
        assert read_jsonl(bucket.get_bytes(manifest["objects"][0]["name"])) == todoist.projects

        # ... and Flower saw it run (events) and reports it, to the authenticated only.
        def info() -> dict[str, Any] | None:
            got = requests.get(f"{flower.url}/api/task/info/{task_id}", auth=good, timeout=10)
            data: dict[str, Any] = got.json() if got.status_code == 200 else {}
            return data if data.get("state") == "SUCCESS" else None

        reported = wait_for(info, 30, "Flower reporting the task", 0.5)
        assert reported["name"] == "tasks.todoist.projects"
        # Its result (the repr the worker sent, cut at resultrepr_maxsize) starts with what an
        # operator looks for, all of it inside the cut; the success line in the log too.
        start = (
            f"{{'outcome': 'succeeded', 'job': 'todoist_projects', 'records': 7, "
            f"'objects': [{{'name': '{manifest['objects'][0]['name']}', "
        )
        assert reported["result"].startswith(start), reported["result"]
        assert f"'api_calls': {manifest['api_calls']}, " in reported["result"]
        assert "succeeded in " in worker.log() and f"s: {start}" in worker.log()
        info_url = f"{flower.url}/api/task/info/{task_id}"
        assert requests.get(info_url, timeout=10).status_code == 401
        # Flower's own log is JSON like the worker's (not on a terminal), scrubbed alike.
        lines = [json.loads(line) for line in flower.log().splitlines() if line.strip()]
        assert any(f"http://127.0.0.1:{flower.port}" in r["message"] for r in lines)
        assert all(r["env"] == "dev" for r in lines)
        assert PASSWORD not in flower.log()
    # Only the credentialed send reached the emulator: the refused ones never ran.
    assert todoist.calls_to("/projects") == 1


def test_ela_flower_refuses_to_start_without_a_password(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    for value in (None, "", "user-only", "user:"):
        env = environ if value is None else {**environ, "FLOWER_BASIC_AUTH": value}
        for command in (["-m", "ela.cli", "flower"], ["-m", "worker.flower_app"]):
            done = subprocess.run(
                [sys.executable, *command, f"--port={free_port()}"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 1, (command, value, done.stdout, done.stderr)
            assert "FLOWER_BASIC_AUTH" in done.stderr


def test_flower_binds_loopback_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWER_ADDRESS", raising=False)
    assert flower_argv(["--port=1"]) == [
        "celery",
        "-A",
        "worker",
        "flower",
        "--address=127.0.0.1",
        "--port=1",
    ]
    assert "--address=127.0.0.1" not in flower_argv(["--address=0.0.0.0"])


def test_flowers_broker_inspector_gets_a_redis_uri_for_our_transport() -> None:
    ours = "worker.redis_transport:Transport://default:pw@127.0.0.1:6379/11"
    assert broker_uri_for_flower(ours, "redis") == "redis://default:pw@127.0.0.1:6379/11"
    plain = "redis://127.0.0.1:6379/0"
    assert broker_uri_for_flower(plain, "redis") == plain
