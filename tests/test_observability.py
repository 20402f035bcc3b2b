"""Logs and Sentry: JSON lines with the run's context, Sentry events and cron check-ins, and no
secret in either.

Sentry is a tiny HTTP server on loopback in this process that records the envelopes the real
``sentry_sdk`` transport posts to it; the worker and beat are real ``celery`` processes.
"""

from __future__ import annotations

import io
import json
import logging
import math
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ela import scrub
from ela.config import load
from ela.errors import InputError, ReauthError
from ela.run_input import RUN_ID
from ela.sandbox.emulators.server import Fault
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO, wait_for
from ela.scrub import FILTERED, Scrubber, credential_values
from ela.tokens import TokenStore
from tests.conftest import WorkerFactory
from tests.helpers import Beat, SentryEndpoint, foreign_app, todoist_only
from worker.app import config as dev_config
from worker.logs import JsonFormatter, log_format
from worker.sentry import init_sentry
from worker.settings import hard_time_limit

pytestmark = pytest.mark.timeout(180)

SENTRY_KEY = "c0ffee5e9a1b4d2f8e7a6b5c4d3e2f10"


@pytest.fixture
def sentry() -> Iterator[SentryEndpoint]:
    with SentryEndpoint(SENTRY_KEY) as endpoint:
        yield endpoint


def json_lines(log: str) -> list[dict[str, Any]]:
    """Every log record of a worker/beat log (stdout's banner lines are not records)."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def secret() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


# -- the scrubber ----------------------------------------------------------------------------


def test_credential_values_are_the_secrets_of_the_environment_not_its_addresses() -> None:
    environ = {
        "TODOIST_API_TOKEN": "tdst-123456",
        "SPOTIFY_CLIENT_SECRET": "spfy-secret",
        "SPOTIFY_API_URL": "http://127.0.0.1:9000",
        "STRAVA_REFRESH_TOKEN": "strv-refresh",
        "GARMIN_PASSWORD": "hunter22",
        "FLOWER_BASIC_AUTH": "ops:flower-pw,ro:other-pw",
        "SENTRY_DSN": "https://dsnkey123@o1.ingest.sentry.io/42",
        "REDIS_URL": "redis://default:redis-pw@10.0.0.1:6379/0",
        "ELA_ENV": "dev",
        "HOME": "/home/me",
    }
    values = credential_values(environ)
    for expected in ("tdst-123456", "spfy-secret", "strv-refresh", "hunter22", "flower-pw"):
        assert expected in values
    assert {"other-pw", "dsnkey123", "redis-pw"} <= values
    assert not {"http://127.0.0.1:9000", "dev", "/home/me", "default"} & values


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Authorization: Bearer abcdef123456", "Authorization: "),
        ("GET /v1/x?access_token=abc123&page=2", "page=2"),
        ("{'refresh_token': 'r-9f8e7d', 'expires_at': 17}", "'expires_at': 17"),
        ('{"client_secret": "cs-1234"}', '"client_secret": '),
        ("TODOIST_API_TOKEN=tdst-987654 rest", " rest"),
        ("sent header bearer eyJhbGciOi.J9xx.yy", "sent header bearer "),
        ("proxy http://user:pw123@proxy:8080/ down", "@proxy:8080/ down"),
        ("Basic b3BzOmZsb3dlci1wdw==", "Basic "),
    ],
)
def test_credential_shaped_text_is_filtered(text: str, kept: str) -> None:
    scrubbed = Scrubber({}).text(text)
    assert FILTERED in scrubbed and kept in scrubbed, scrubbed
    for gone in ("abcdef123456", "abc123", "r-9f8e7d", "cs-1234", "tdst-987654", "pw123"):
        assert gone not in scrubbed
    assert "eyJhbGciOi" not in scrubbed and "b3BzOmZsb3dlci1wdw" not in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "TODOIST_API_TOKEN is invalid or revoked: run ela auth todoist",
        '{"token_type": "Bearer", "status_code": 429}',
        "basic authentication failed",
        "Task tasks.todoist.projects[0b1c] succeeded in 0.2s: {'records': 12}",
        "redis://127.0.0.1:6379/11",
        "Connected to redis://:**@127.0.0.1:6379/0",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Scrubber({}).text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        # The letters re's (?i) takes for ASCII ones: long s, Kelvin sign, dotted and dotless i.
        "\u017fecret=abc123 and TO\u212aEN: xyz789",
        "AUTHOR\u0130ZATION: Bearer abcdef123456",
        "author\u0131zation=q1w2e3r4 oauth zzzzzzzzzz",
        "api-KEY: k-1 API_key=k-2 apikey=k-3 PASSWD=p-1 Password: p-2",
        "BASIC b3BzOmZsb3dlci1wdw== via HTTPS://u:p@host/",
        "Task tasks.todoist.projects[0b1c] succeeded in 0.2s: {'records': 12}",
    ],
)
def test_each_pattern_is_skipped_only_when_it_cannot_match(text: str) -> None:
    """A pattern runs only when one of its words is in the line (most lines hold none); the
    result is what running every pattern on every line gives."""
    every = text
    for _, pattern, replacement in scrub._PATTERNS:
        every = pattern.sub(replacement, every)
    assert Scrubber({}).text(text) == every


def test_environment_and_token_store_values_are_filtered_in_every_spelling(
    tmp_path: Path,
) -> None:
    token, stored = "tdst/7+abc def", secret()
    store = TokenStore(tmp_path)
    store.write("strava", {"refresh_token": stored, "expires_at": 1700000000})
    scrubber = Scrubber({"TODOIST_API_TOKEN": token, "ELA_TOKEN_DIR": str(tmp_path)})
    for spelling in (token, "tdst%2F7%2Babc%20def", "tdst%2F7%2Babc+def", stored):
        assert scrubber.text(f"x {spelling} y") == f"x {FILTERED} y"
    assert "1700000000" in scrubber.text("expires 1700000000")
    # A rotated token is filtered as soon as it is in the store.
    rotated = secret()
    store.write("strava", {"refresh_token": rotated})
    scrubber.RECHECK_SECONDS = 0
    assert scrubber.text(rotated) == FILTERED


def test_nested_data_is_filtered_by_key_and_by_value() -> None:
    scrubber = Scrubber({"STRAVA_CLIENT_SECRET": "strava-cs-42"})
    event = {
        "request": {"headers": {"Authorization": "Bearer x", "Accept": "json"}},
        "exception": {"values": [{"value": "bad since 'strava-cs-42'"}]},
        "extra": {"n": 3, "items": ["ok", "strava-cs-42"], "token_type": "Bearer"},
    }
    assert scrubber.data(event) == {
        "request": {"headers": {"Authorization": FILTERED, "Accept": "json"}},
        "exception": {"values": [{"value": f"bad since '{FILTERED}'"}]},
        "extra": {"n": 3, "items": ["ok", FILTERED], "token_type": "Bearer"},
    }


def test_json_formatter_writes_one_scrubbed_object_per_record() -> None:
    formatter = JsonFormatter(dev_config, Scrubber({"TODOIST_API_TOKEN": "tdst-55aa66"}))
    try:
        raise RuntimeError("token tdst-55aa66 refused\nsecond line")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "ela.pipeline", logging.ERROR, __file__, 1, "failed with %s", ("tdst-55aa66",), exc_info
    )
    line = formatter.format(record)
    assert "\n" not in line and "tdst-55aa66" not in line
    out = json.loads(line)
    assert out["message"] == f"failed with {FILTERED}"
    assert out["level"] == "ERROR" and out["logger"] == "ela.pipeline" and out["env"] == "dev"
    assert out["time"].endswith("Z") and "RuntimeError" in out["exc"]


def test_log_format_follows_the_terminal_unless_told() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert log_format(Tty(), {}) == "text"
    assert log_format(io.StringIO(), {}) == "json"
    assert log_format(Tty(), {"ELA_LOG_FORMAT": "json"}) == "json"
    assert log_format(io.StringIO(), {"ELA_LOG_FORMAT": "text"}) == "text"
    assert log_format(None, {}) == "json"


@pytest.mark.integration  # runs the `ela` command or a Python in a process
def test_without_a_dsn_sentry_is_neither_started_nor_imported() -> None:
    code = (
        "import sys, worker, tasks\n"
        "from celery import signals\n"
        "signals.celeryd_init.send(sender='w', instance=None, conf=None, options={})\n"
        "signals.beat_init.send(sender=None)\n"
        "print('sentry_sdk' in sys.modules)\n"
    )
    environ = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "ELA_ENV": "dev"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=environ, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert init_sentry(dev_config, {}) is False


# -- a real worker ---------------------------------------------------------------------------


def test_a_failed_run_reaches_sentry_tagged_and_no_secret_leaves(
    worker_factory: WorkerFactory, sentry: SentryEndpoint, tmp_path: Path
) -> None:
    planted = {
        "TODOIST_API_TOKEN": secret(),  # not the emulator's token: the run fails with reauth
        "SPOTIFY_CLIENT_SECRET": secret(),
        "SPOTIFY_REFRESH_TOKEN": secret(),
        "STRAVA_CLIENT_SECRET": secret(),
        "GARMIN_PASSWORD": secret(),
    }
    flower_password = secret()
    stored = {"access_token": secret(), "refresh_token": secret(), "expires_at": 1}
    TokenStore(tmp_path / "tokens").write("strava", stored)  # the worker's ELA_TOKEN_DIR
    bearer = uuid.uuid4().hex  # in no store: only its shape gives it away
    with TodoistEmulator(projects=3, tasks=5) as todoist:
        worker = worker_factory(
            extra_env={
                **todoist.environ(),
                **planted,
                "FLOWER_BASIC_AUTH": f"ops:{flower_password}",
                "SENTRY_DSN": sentry.dsn,
            },
            config=todoist_only(tmp_path / "c.yaml"),
        )
        revoked = worker.send("tasks.todoist.projects")
        with pytest.raises(ReauthError):
            revoked.get(timeout=30)
        # A secret pasted into the wrong argument, sent by a producer that is not ours (ours
        # refuses before sending): the worker's refusal quotes it back, whole.
        leaks = {
            "env": planted["TODOIST_API_TOKEN"],
            "store": stored["access_token"],
            "shape": f"Bearer {bearer}",
        }
        foreign = foreign_app(worker.environ)
        sent = {
            name: foreign.send_task(
                "tasks.todoist.projects", kwargs={"since": v}, queue="dev.todoist"
            )
            for name, v in leaks.items()
        }
        for result in sent.values():
            with pytest.raises(InputError, match="is not an ISO 8601"):
                result.get(timeout=30)
        run_ids = {revoked.id, *(r.id for r in sent.values())}
        events = wait_for(
            lambda: (e := sentry.items("event")) and len(e) >= len(run_ids) and e,
            30,
            "an event per failed run",
        )

    by_run = {event["tags"]["run_id"]: (header, event) for header, event in events}
    assert set(by_run) == run_ids
    for header, event in by_run.values():
        assert event["environment"] == "dev"
        assert header["trace"]["public_key"] == SENTRY_KEY  # the scrubber kept Sentry's own key
        assert event["tags"]["env"] == "dev" and event["tags"]["job"] == "todoist_projects"
        assert event["tags"]["task"] == "tasks.todoist.projects"
    [reauth] = by_run[revoked.id][1]["exception"]["values"][-1:]
    assert reauth["type"] == "ReauthError" and "invalid or revoked" in reauth["value"]
    assert by_run[revoked.id][1]["tags"]["error_kind"] == "reauth"
    for name, result in sent.items():
        [value] = by_run[result.id][1]["exception"]["values"][-1:]
        assert value["type"] == "InputError" and FILTERED in value["value"], (name, value)

    # No secret anywhere in what reached Sentry. (The DSN's own key does reach it: the SDK
    # authenticates with it and puts it in each envelope's trace header.)
    secrets = [*planted.values(), flower_password, str(stored["access_token"]), bearer]
    secrets.append(str(stored["refresh_token"]))
    for raw in sentry.envelopes():
        assert not [s for s in secrets if s in raw.decode()], raw[:2000]

    # ... nor in the worker's log, which is JSON records with the run's context.
    log = worker.log()
    assert not [s for s in [*secrets, SENTRY_KEY] if s in log]
    assert not [line for line in log.splitlines() if line.startswith("[20")]  # no text records
    records = json_lines(log)
    assert any(r["message"].endswith(" ready.") for r in records)
    for run_id in run_ids:
        mine = [r for r in records if r.get("run_id") == run_id]
        in_task = [r for r in mine if r["process"] != "MainProcess"]
        assert in_task, f"no record of run {run_id} from inside the task"
        for record in in_task:
            assert record["job"] == "todoist_projects" and record["env"] == "dev"
            assert record["task_id"] == run_id and record["task"] == "tasks.todoist.projects"
        # The worker's "received" line, written before the task runs, names the run too.
        [received] = [r for r in mine if r["message"].endswith(" received")]
        assert received["job"] == "todoist_projects", received
    assert {"time", "level", "logger", "message", "process", "env"} <= set(records[0])


def test_a_retried_scheduled_run_closes_its_check_in_once_with_the_final_outcome(
    worker_factory: WorkerFactory, sentry: SentryEndpoint, tmp_path: Path
) -> None:
    # The headers beat's Sentry integration puts on a scheduled task (see the beat test).
    monitor = {
        "sentry-monitor-slug": "todoist_projects",
        "sentry-monitor-check-in-id": uuid.uuid4().hex,
        "sentry-monitor-config": {"schedule": {"type": "crontab", "value": "* * * * *"}},
    }
    with TodoistEmulator(projects=3, tasks=5) as todoist:
        worker = worker_factory(
            extra_env={**todoist.environ(), "SENTRY_DSN": sentry.dsn},
            config=todoist_only(tmp_path / "c.yaml", retry_backoff_seconds=1),
        )
        todoist.inject(Fault(status=429, retry_after=1, path="/projects"))
        result = worker.client.send_task("tasks.todoist.projects", headers=monitor)
        assert result.get(timeout=30)["attempt"] == 1
        wait_for(lambda: sentry.items("check_in"), 10, "the check-in")
    assert "Retry in" in worker.log()
    [checkin] = [c for _, c in sentry.items("check_in")]
    assert checkin["check_in_id"] == monitor["sentry-monitor-check-in-id"]
    assert checkin["status"] == "ok" and checkin["duration"] >= 1  # the retry's wait included


@pytest.mark.slow
def test_beat_entries_are_sentry_cron_monitors_named_after_the_job(
    worker_factory: WorkerFactory, sentry: SentryEndpoint, tmp_path: Path
) -> None:
    config = todoist_only(
        tmp_path / "c.yaml", schedules={"todoist_projects": "* * * * *"}, timezone="Europe/Paris"
    )
    with TodoistEmulator(projects=3, tasks=5) as todoist:
        worker = worker_factory(
            extra_env={**todoist.environ(), "SENTRY_DSN": sentry.dsn}, config=config
        )
        beat = Beat(worker.environ, tmp_path / "beat.log")
        try:

            def checkins(status: str) -> list[dict[str, Any]]:
                return [c for _, c in sentry.items("check_in") if c["status"] == status]

            [ok, *_] = wait_for(lambda: checkins("ok"), 70, "the run's ok check-in", 0.5)
        finally:
            beat.stop()
    started = {c["check_in_id"]: c for c in checkins("in_progress")}
    begun = started[ok["check_in_id"]]  # beat opened it when it sent the task
    assert begun["monitor_slug"] == ok["monitor_slug"] == "todoist_projects"
    expected = {
        "schedule": {"type": "crontab", "value": "* * * * *"},
        "timezone": "Europe/Paris",  # the config's, through Celery's app.timezone
        "max_runtime": math.ceil(hard_time_limit(load(config)) / 60),  # dev: 990 s → 17 min
    }
    assert begun["monitor_config"] == ok["monitor_config"] == expected
    assert begun["environment"] == ok["environment"] == "dev"
    assert ok["duration"] > 0
    beat_records = json_lines(beat.log())
    [sending, *_] = [r for r in beat_records if "Sending due task todoist_projects" in r["message"]]
    assert sending["job"] == "todoist_projects" and RUN_ID.fullmatch(sending["run_id"]), sending
    assert all(r["env"] == "dev" for r in beat_records)
