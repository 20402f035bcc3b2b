"""The landing JSONL and the local bucket's copy (bytes, not just parsed values); a GCS key
the process may not read."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ela.errors import FatalError
from ela.sandbox.processes import REPO, isolated_environ
from ela.sinks import GCSBucket, JsonlSpool, LocalBucket, jsonl_line


def stdlib_line(record: Any) -> bytes:
    """What the origin wrote, and what every baseline script writes."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


AS_THE_ORIGIN_WROTE = [
    {"name": "Björk — Jóga", "emoji": "🎧", "cjk": "東京", "separators": "\u2028\u2029"},
    {"quote": 'a "b" c', "backslash": "C:\\x", "controls": "\t\n\r\x00\x1f\x7f", "slash": "a/b"},
    {"ints": [0, -1, 2**63 - 1, -(2**63)], "floats": [0.1, -0.0, 1.5, 123.456, 0.001]},
    {"nested": {"a": [{"b": None, "c": True, "d": False}], "empty": {}, "list": []}},
    {"z": 1, "a": 2, "m": 3},  # the provider's key order, not sorted
]


@pytest.mark.parametrize("record", AS_THE_ORIGIN_WROTE)
def test_a_line_is_byte_for_byte_what_the_standard_library_writes(record: dict[str, Any]) -> None:
    assert jsonl_line(record) == stdlib_line(record)


@pytest.mark.parametrize(
    "record",
    [
        {"id": 2**64 + 1},  # beyond 64 bits: orjson refuses
        {"text": "half a pair: \ud800"},  # a lone surrogate, as json.loads makes of "\\ud800"
        {1: "an integer key"},
    ],
)
def test_what_orjson_refuses_still_lands_as_valid_json(record: dict[Any, Any]) -> None:
    line = jsonl_line(record)
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    line.decode("ascii")  # the fallback escapes, so it is valid UTF-8 whatever the input
    assert json.loads(line) == {str(k): v for k, v in record.items()}


def test_floats_keep_their_value_and_non_json_numbers_become_null() -> None:
    record = {"big": 1e16, "small": 1e-7, "tiny": 5e-324, "nan": math.nan, "inf": -math.inf}
    parsed = json.loads(jsonl_line(record))
    assert parsed == {"big": 1e16, "small": 1e-7, "tiny": 5e-324, "nan": None, "inf": None}


def test_the_spool_hashes_and_counts_exactly_the_bytes_it_lands(tmp_path: Path) -> None:
    records = [{"n": n, "text": "é" * (n % 50)} for n in range(5_000)]
    expected = b"".join(stdlib_line(r) for r in records)
    bucket = LocalBucket(tmp_path / "bucket")
    spool = JsonlSpool()
    try:
        spool.write_all(records)
        written = spool.upload(bucket, "svc/landing/x.jsonl")
    finally:
        spool.close()
    assert bucket.get_bytes("svc/landing/x.jsonl") == expected
    assert (written.size, written.records) == (len(expected), 5_000)
    assert written.sha256 == hashlib.sha256(expected).hexdigest()
    assert not list((tmp_path / "bucket" / "svc" / "landing").glob(".tmp-*"))


def test_local_upload_copies_from_a_file_or_from_memory(tmp_path: Path) -> None:
    bucket = LocalBucket(tmp_path / "bucket")
    data = bytes(range(256)) * 20_000  # 5 MB: several sendfile calls' worth
    source = tmp_path / "source"
    source.write_bytes(b"skip" + data)
    with source.open("rb") as file:
        file.seek(4)  # uploads from the file's position, as the spool hands it over
        bucket.upload("a/from-file", file, len(data), "application/octet-stream")
    bucket.upload("a/from-memory", io.BytesIO(data), len(data), "application/octet-stream")
    assert bucket.get_bytes("a/from-file") == data
    assert bucket.get_bytes("a/from-memory") == data


# -- a service-account key this user may not read (a gcloud key is 0600, owned by its writer) ---

ROOT = os.geteuid() == 0
OWNER, OTHER = 65533, 65534  # two uids that are not root; the key belongs to the first
# As root, a subprocess loses the capabilities that let root read any file, so the key's mode
# and owner decide, as for the image's uid 10001. (Not a uid switch: this Python may live where
# other uids cannot read it.)
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.fixture
def unreadable_key() -> Iterator[Path]:
    """A 0600 key file owned by another uid (as root), or at mode 000 (as anyone else), in a
    folder any uid may enter."""
    folder = Path(tempfile.mkdtemp(prefix="ela-key-"))
    folder.chmod(0o755)
    key = folder / "gcp-service-account.json"
    key.write_text(json.dumps({"type": "service_account", "client_email": "x@y"}))
    if ROOT:
        os.chown(key, OWNER, OWNER)
    key.chmod(0o600 if ROOT else 0o000)
    try:
        yield key
    finally:
        shutil.rmtree(folder)


@contextlib.contextmanager
def another_uid() -> Iterator[int]:
    """Act as a uid that cannot read the key (root: OTHER, switching back after), yield it."""
    if not ROOT:
        yield os.geteuid()
        return
    # What the client imports lazily must be loaded first: OTHER cannot read this Python's files.
    from google.cloud import storage  # noqa: F401

    os.seteuid(OTHER)
    try:
        yield OTHER
    finally:
        os.seteuid(0)


def test_an_unreadable_key_is_one_line_naming_the_file_and_the_uid(
    unreadable_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(unreadable_key))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    with another_uid() as uid, pytest.raises(FatalError) as raised:
        GCSBucket("ela-dp-dev", {})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{unreadable_key}: cannot read the Google credentials file")
    assert f"as uid {uid};" in message
    assert f"chown {uid} KEY" in message


@pytest.mark.integration
@pytest.mark.parametrize(
    "command",
    [["bucket", "setup"], ["run", "todoist_projects", "--inline"]],
    ids=["bucket-setup", "run-inline"],
)
def test_the_cli_says_so_without_a_traceback(unreadable_key: Path, command: list[str]) -> None:
    environ = {
        **isolated_environ(),
        "ELA_BUCKET_URL": "gs://ela-dp-dev",
        "GOOGLE_APPLICATION_CREDENTIALS": str(unreadable_key),
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [*(NO_OVERRIDE if ROOT else []), sys.executable, "-m", "ela.cli", *command, "--env", "dev"],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "cannot read the Google credentials" in line]
    assert len(lines) == 1, output
    assert f"{unreadable_key}: cannot read the Google credentials file" in lines[0]
    assert f"as uid {os.geteuid()};" in lines[0]
