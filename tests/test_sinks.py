"""The landing JSONL and the local bucket's copy: bytes, not just parsed values."""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from ela.sinks import JsonlSpool, LocalBucket, jsonl_line


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
