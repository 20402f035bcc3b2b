"""Start-up checks of the process environment (ela/settings.py): one line per problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ela import config as config_module
from ela import settings
from ela.sandbox.processes import REPO, free_port, isolated_environ
from ela.sinks import BucketURLError, parse_bucket_url
from tests.helpers import PrivateRedis

DEV = config_module.load(REPO / "ingestion-config-dev.yaml")
PRD = config_module.load(REPO / "ingestion-config-prd.yaml")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ELA_HTTP_TIMEOUT", "abc", "ELA_HTTP_TIMEOUT='abc': expected seconds between 0 and 3600"),
        ("ELA_HTTP_TIMEOUT", "-5", "ELA_HTTP_TIMEOUT='-5': expected seconds"),
        ("ELA_HTTP_TIMEOUT", "nan", "ELA_HTTP_TIMEOUT='nan': expected seconds"),
        ("ELA_STRAVA_READ_BUDGET", "lots", "ELA_STRAVA_READ_BUDGET='lots': expected two integers"),
        ("ELA_BUCKET_URL", "file://relative/folder", "needs an absolute path, file:///"),
        ("ELA_BUCKET_URL", "gs://ela-dp-dev/landing", "a folder inside a bucket (/landing)"),
        ("ELA_BUCKET_URL", "s3://bucket", "expected gs://BUCKET or file:///FOLDER"),
        ("ELA_BUCKET_URL", "gs://Not_A_Bucket", "is not a bucket name"),
        ("SPOTIFY_API_URL", "api.spotify.com/v1", "SPOTIFY_API_URL='api.spotify.com/v1': expected"),
        ("REDIS_URL", "http://localhost:6379", "expected redis://host:port/db"),
        ("ELA_MAX_BODY_BYTES", "huge", "ELA_MAX_BODY_BYTES='huge' is not a size"),
        ("ELA_MAX_SPOOL_BYTES", "-1", "ELA_MAX_SPOOL_BYTES='-1' is not a size"),
        ("REDIS_URL", "rediss://:pw@redis.example:6380/0", "needs ?ssl_cert_reqs=required"),
        ("ELA_TOKEN_KEY", "pw-not-a-fernet-key", "ELA_TOKEN_KEY is not a Fernet key"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    variable: str, value: str, expected: str
) -> None:
    (line,) = settings.problems(DEV, {variable: value})
    assert expected in line
    assert "pw" not in line  # a password in REDIS_URL is never shown


def test_a_prd_process_may_not_write_into_the_dev_bucket() -> None:
    (line,) = settings.problems(PRD, {"ELA_BUCKET_URL": "gs://ela-dp-dev"})
    assert line == (
        "ELA_BUCKET_URL='gs://ela-dp-dev' is the dev bucket but this process runs prd; "
        "use gs://ela-dp-prd (or leave ELA_BUCKET_URL unset)"
    )
    assert settings.problems(PRD, {"ELA_BUCKET_URL": "gs://ela-dp-prd"}) == []
    assert settings.problems(DEV, {"ELA_BUCKET_URL": "gs://ela-dp-dev"}) == []


def test_good_settings_pass() -> None:
    good = {
        "ELA_HTTP_TIMEOUT": "30",
        "ELA_STRAVA_READ_BUDGET": "90,900",
        "ELA_BUCKET_URL": "file:///srv/bucket",
        "STORAGE_EMULATOR_HOST": "localhost:9023",
        "REDIS_URL": "rediss://:pw@redis.example:6380/0?ssl_cert_reqs=required",
        "TODOIST_API_URL": "http://127.0.0.1:9999/api/v1",
        "ELA_TOKEN_KEY": "uQnnTmh-NPxJYzWRpdC4dHFEmdqY2gvMzEZHXzqZ_Lk=,"
        "Q3ZGpaGFy9YVqRBrd1T-TbW0hPzL3LrLxZCqDd6XwfQ=",  # new,old
    }
    assert settings.problems(DEV, good) == []


def test_bucket_urls() -> None:
    assert parse_bucket_url("gs://ela-dp-dev") == ("gs", "ela-dp-dev")
    assert parse_bucket_url("gs://ela-dp-dev/") == ("gs", "ela-dp-dev")
    assert parse_bucket_url("file:///tmp/my%20bucket") == ("file", "/tmp/my bucket")
    with pytest.raises(BucketURLError):
        parse_bucket_url("file:relative")


def test_a_password_is_redacted() -> None:
    assert settings.redacted("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert settings.redacted("redis://u:s3cret@host/0") == "redis://u:***@host/0"
    assert settings.redacted("redis://host:6379/0") == "redis://host:6379/0"


@pytest.mark.integration
def test_redis_down_and_a_wrong_password_are_one_line_each(tmp_path: Path) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    problem = settings.redis_problem(down, timeout=1)
    assert problem is not None and "cannot reach Redis" in problem and "\n" not in problem
    server = PrivateRedis(tmp_path, password="right-password").start()
    try:
        assert settings.redis_problem(server.url) is None
        wrong = server.url.replace("right-password", "wrong-password")
        problem = settings.redis_problem(wrong)
        assert problem is not None and "refused the credentials" in problem
        assert "wrong-password" not in problem
        nopass = server.url.replace(":right-password@", "")
        problem = settings.redis_problem(nopass)
        assert problem is not None and "requires a password" in problem
    finally:
        server.stop()


@pytest.mark.integration
@pytest.mark.parametrize("command", [["worker"], ["beat"], ["run", "todoist_projects"]])
def test_commands_refuse_to_start_with_bad_settings(command: list[str], tmp_path: Path) -> None:
    environ = {
        **isolated_environ(os.environ),
        "ELA_HTTP_TIMEOUT": "abc",
        "ELA_BUCKET_URL": "file://relative",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "ela.cli", *command],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("ela: ELA_HTTP_TIMEOUT='abc'")
    assert lines[1].startswith("ela: ELA_BUCKET_URL='file://relative'")


@pytest.mark.integration
def test_a_worker_says_in_one_line_that_redis_is_down(tmp_path: Path) -> None:
    environ = {**isolated_environ(os.environ), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = subprocess.run(
        [sys.executable, "-m", "ela.cli", "worker"],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "cannot reach Redis" in line


def test_a_storage_emulator_host_without_a_scheme_works(
    storage_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``.env.example`` writes ``STORAGE_EMULATOR_HOST=localhost:9023``, as the emulator's docs
    do; the GCS client needs a URL, and used to fail with 'No connection adapters'."""
    from ela.sinks import GCSBucket

    bare = storage_emulator.split("://", 1)[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", bare)  # the client reads os.environ too
    bucket = GCSBucket("ela-test-bare-host", {"STORAGE_EMULATOR_HOST": bare})
    bucket.client.create_bucket("ela-test-bare-host")
    bucket.put_bytes("spotify/_state/x.json", b"{}", "application/json")
    assert bucket.get_bytes("spotify/_state/x.json") == b"{}"
    assert [o.name for o in bucket.list("spotify/")] == ["spotify/_state/x.json"]
    bucket.delete("spotify/_state/x.json")
    bucket.bucket.delete()
