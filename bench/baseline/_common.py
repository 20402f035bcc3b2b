"""What every baseline script shares: timing, JSONL as the origin wrote it, the upload."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


def lines_digest(lines: Iterable[bytes]) -> str:
    """A digest of JSONL lines that does not depend on their order: the sum of their sha256s.

    Ours and a baseline land the same records, but not always in the same order (Strava's
    activities are read from both ends of the window): this is what the benchmark compares.
    """
    total = sum(int.from_bytes(hashlib.sha256(line).digest(), "big") for line in lines)
    return f"{total % 2**256:064x}"


def _line(record: Any) -> bytes:
    """``record`` as the origin wrote a JSONL line, without the newline."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def write_jsonl(records: list[Any], bucket: str, service: str, data_type: str) -> str:
    """Write ``records`` to a local JSONL file, then store it in ``bucket``; its sha256."""
    stamp = datetime.now(UTC).strftime("%Y_%m_%d_%H_%M")
    name = f"{service}/landing/{stamp}_{service}_{data_type}.jsonl"
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as out:
        for record in records:
            line = _line(record) + b"\n"
            out.write(line)
            digest.update(line)
    parsed = urlparse(bucket)
    if parsed.scheme == "file":
        target = Path(parsed.path) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(out.name, target)
    else:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(credentials=AnonymousCredentials(), project="bench")
        client.bucket(parsed.netloc).blob(name).upload_from_filename(out.name)
        os.unlink(out.name)
    return digest.hexdigest()


def peak_kib() -> int:
    """This process' peak resident set size, KiB: ``VmHWM``, as the worker's is measured.

    Not ``ru_maxrss``: Linux carries it across ``execve``, so a script started by a large
    process (the benchmark, holding its emulators' data) would report that process' peak.
    (``bench.harness.vm_hwm_kib`` reads it for another pid; importing the harness here would
    load the worker app into the script being measured.)
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(run: Callable[[], tuple[list[Any], str, str]]) -> None:
    """Time ``run`` (→ records, service, data type) plus the write, and report as JSON."""
    bucket = sys.argv[1]
    start = time.perf_counter()
    records, service, data_type = run()
    sha = write_jsonl(records, bucket, service, data_type)
    seconds = time.perf_counter() - start
    peak = peak_kib()
    lines = lines_digest(map(_line, records))  # after the timing and the peak: not measured
    print(
        json.dumps(
            {
                "records": len(records),
                "seconds": seconds,
                "sha256": sha,
                "lines": lines,
                "peak_kib": peak,
            }
        )
    )


def garmin_login() -> Any:
    """A garminconnect client pointed at the ``GARMIN_*_URL`` emulator, resumed from the worker's
    stored tokens (``ELA_TOKEN_DIR/garmin.json``), as a script would."""
    import garminconnect.client as library
    from garminconnect import Garmin

    garmin = Garmin()
    garmin.client._connectapi = os.environ["GARMIN_API_URL"].rstrip("/")
    garmin.client._sso = sso = os.environ["GARMIN_SSO_URL"].rstrip("/")
    library.DI_TOKEN_URL = f"{sso}/di-oauth2-service/oauth/token"
    garmin.login(tokenstore=(Path(os.environ["ELA_TOKEN_DIR"]) / "garmin.json").read_text())
    return garmin
