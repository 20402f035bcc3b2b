"""Buckets: a GCS bucket or a local folder, behind one small interface.

``ELA_BUCKET_URL`` picks one: ``gs://name`` (``STORAGE_EMULATOR_HOST`` honoured as the GCS client
does) or ``file:///some/folder``. Without it, ``gs://{global.gcs_bucket}``. Every write is
whole-object (a GCS upload, or a rename into place locally) so a crash never leaves half an
object under its final name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import unquote, urlparse

import orjson

from ela.errors import FatalError


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    updated: datetime


class Bucket(Protocol):
    url: str

    def upload(self, name: str, file: IO[bytes], size: int, content_type: str) -> None: ...
    def put_bytes(self, name: str, data: bytes, content_type: str) -> None: ...
    def get_bytes(self, name: str) -> bytes | None: ...
    def exists(self, name: str) -> bool: ...
    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...
    def delete(self, name: str) -> None: ...


def put_json(bucket: Bucket, name: str, value: Any) -> None:
    """``value`` as indented JSON with sorted keys (a manifest, a job state, an error object).

    Written by orjson: the manifest of every run passes here, and a job state at its cap of
    landed keys took 35 ms to encode with the standard library's indenting encoder. The same
    layout as ``json.dumps(indent=2, sort_keys=True, default=str)``, except that text is UTF-8
    rather than ASCII-escaped and an exponent is written in its shortest form; what orjson
    refuses (an integer past 64 bits) takes the standard library's path.
    """
    try:
        data = orjson.dumps(value, default=str, option=_PUT_JSON)
    except orjson.JSONEncodeError:
        data = json.dumps(value, indent=2, sort_keys=True, default=str).encode() + b"\n"
    bucket.put_bytes(name, data, "application/json")


# Dates through default=str, as before ("2025-07-01 09:00:00+00:00"); keys that are not strings
# (none expected) stringified, as json.dumps does.
_PUT_JSON = (
    orjson.OPT_INDENT_2
    | orjson.OPT_SORT_KEYS
    | orjson.OPT_APPEND_NEWLINE
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_NON_STR_KEYS
)


def get_json(bucket: Bucket, name: str) -> Any:
    data = bucket.get_bytes(name)
    return None if data is None else json.loads(data)


class LocalBucket:
    """A folder standing in for a bucket: object names are relative paths."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._base = os.path.realpath(self.root)  # once: resolving on every write costs
        self.url = Path(self._base).as_uri()

    def _path(self, name: str) -> Path:
        path = os.path.normpath(os.path.join(self._base, name))
        if not path.startswith(self._base + os.sep):
            raise ValueError(f"object name escapes the bucket: {name!r}")
        return Path(path)

    def upload(self, name: str, file: IO[bytes], size: int, content_type: str) -> None:
        self._write(name, lambda out: _copy(file, out, size))

    def put_bytes(self, name: str, data: bytes, content_type: str) -> None:
        self._write(name, lambda out: out.write(data))

    def _write(self, name: str, fill: Callable[[IO[bytes]], object]) -> None:
        """Write a temporary file beside ``name`` with ``fill``, fsync it, rename it into place.

        Every run's manifest is written here: the folder is made only when the file cannot be
        created without it, rather than asked for on every write.
        """
        path = self._path(name)
        folder = path.parent
        temporary = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(temporary, flags, 0o600)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(temporary, flags, 0o600)
        try:
            with open(fd, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(fd)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def get_bytes(self, name: str) -> bytes | None:
        try:
            with open(self._path(name), "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = Path(self._base)
        start = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else base
        if not start.exists():
            return
        for path in sorted(start.rglob("*")):
            name = path.relative_to(base).as_posix()
            if path.is_file() and not path.name.startswith(".tmp-") and name.startswith(prefix):
                stat = path.stat()
                yield ObjectInfo(name, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)


def _copy(source: IO[bytes], target: IO[bytes], size: int) -> None:
    """``size`` bytes from ``source``'s position into ``target``: in the kernel when ``source``
    is a file (the spool), else through a buffer."""
    try:
        fd = source.fileno()
    except (AttributeError, io.UnsupportedOperation):  # not a file: a BytesIO
        fd = -1
    if fd >= 0 and sys.platform == "linux":  # elsewhere sendfile may write only to sockets
        offset, end = source.tell(), source.tell() + size
        while offset < end:
            sent = os.sendfile(target.fileno(), fd, offset, end - offset)
            if sent == 0:
                raise OSError(f"{source.name}: {end - offset} bytes short of the {size} expected")
            offset += sent
        return
    while chunk := source.read(1 << 20):
        target.write(chunk)


class GCSBucket:
    """A Google Cloud Storage bucket through google-cloud-storage."""

    def __init__(self, name: str, environ: Mapping[str, str] = os.environ) -> None:
        from google.cloud import storage

        self.url = f"gs://{name}"
        if emulator := environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            # `.env.example` and the emulator's own docs write host:port; the client needs a URL.
            emulator = emulator if "://" in emulator else f"http://{emulator}"

            # Passed explicitly: the client itself only looks at os.environ.
            client = storage.Client(
                credentials=AnonymousCredentials(),
                project=environ.get("GOOGLE_CLOUD_PROJECT", "ela-local"),
                client_options={"api_endpoint": emulator},
            )
        else:
            from google.auth.exceptions import DefaultCredentialsError

            key = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            if key and not os.path.exists(key):
                raise FatalError(
                    f"{self.url}: GOOGLE_APPLICATION_CREDENTIALS={key}: no such file; point it "
                    "at the service-account key (in compose, the key's path on the host, .env)"
                )
            try:
                client = storage.Client()
            except DefaultCredentialsError as exc:
                said = f" ({key}: {exc})" if key else ""
                raise FatalError(
                    f"{self.url}: no usable Google credentials{said}; set "
                    "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or "
                    "ELA_BUCKET_URL=file:///some/folder"
                ) from None
            except PermissionError as exc:
                # A key written by gcloud is 0600 and owned by whoever wrote it; the container
                # user (uid 10001 in the image) then cannot read it.
                raise FatalError(unreadable_key(exc)) from None
        self.client = client
        self.bucket = client.bucket(name)

    def upload(self, name: str, file: IO[bytes], size: int, content_type: str) -> None:
        blob = self.bucket.blob(name)
        blob.upload_from_file(file, size=size, content_type=content_type, rewind=True)

    def put_bytes(self, name: str, data: bytes, content_type: str) -> None:
        self.bucket.blob(name).upload_from_string(data, content_type=content_type)

    def get_bytes(self, name: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            data: bytes = self.bucket.blob(name).download_as_bytes()
        except NotFound:
            return None
        return data

    def exists(self, name: str) -> bool:
        return bool(self.bucket.blob(name).exists())

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for blob in self.client.list_blobs(self.bucket, prefix=prefix):
            yield ObjectInfo(blob.name, int(blob.size or 0), blob.updated or datetime.now(UTC))

    def delete(self, name: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self.bucket.blob(name).delete()


class BucketURLError(ValueError):
    """``ELA_BUCKET_URL`` names no bucket we can write to; the message says what would."""


# GCS bucket names: 3-63 lowercase letters, digits, dots, dashes and underscores.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


def parse_bucket_url(url: str) -> tuple[str, str]:
    """``gs://NAME`` → ("gs", NAME); ``file:///FOLDER`` → ("file", "/FOLDER").

    Raises:
        BucketURLError: a prefix inside a GCS bucket (not supported: give each environment a
            bucket of its own), a relative ``file://`` path (``file://data`` names a host
            "data", and wrote at the filesystem root), or any other scheme.
    """
    parsed = urlparse(url)
    if parsed.scheme == "gs":
        if parsed.path.strip("/"):
            raise BucketURLError(
                f"ELA_BUCKET_URL={url!r}: a folder inside a bucket ({parsed.path}) is not "
                f"supported; use the bucket itself, gs://{parsed.netloc}"
            )
        if not _BUCKET_NAME.fullmatch(parsed.netloc):
            raise BucketURLError(f"ELA_BUCKET_URL={url!r}: {parsed.netloc!r} is not a bucket name")
        return "gs", parsed.netloc
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise BucketURLError(
                f"ELA_BUCKET_URL={url!r}: a file:// URL needs an absolute path, "
                "file:///absolute/folder (three slashes)"
            )
        return "file", unquote(parsed.path)
    raise BucketURLError(f"ELA_BUCKET_URL={url!r}: expected gs://BUCKET or file:///FOLDER")


def unreadable_key(exc: PermissionError) -> str:
    """One line for a key file this process may not read: which file, which user, the fix."""
    path = exc.filename or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "?")
    uid = os.geteuid()  # the uid files are checked against
    return (
        f"{path}: cannot read the Google credentials file (GOOGLE_APPLICATION_CREDENTIALS) as "
        f"uid {uid}; make it readable by that uid: chown {uid} KEY && chmod 600 KEY "
        "(under docker compose, KEY is the file on the host)"
    )


def bucket_url(default_bucket: str, environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("ELA_BUCKET_URL") or f"gs://{default_bucket}"


_OPEN: dict[tuple[str, str], Bucket] = {}


def open_bucket(url: str, environ: Mapping[str, str] = os.environ) -> Bucket:
    """``gs://name`` or ``file:///folder`` → a bucket, one per process and URL.

    A worker runs thousands of jobs: building a GCS client (credentials, an HTTP session) for
    each would cost more than an empty run itself.
    """
    key = (url, environ.get("STORAGE_EMULATOR_HOST", ""))
    if key not in _OPEN:
        _OPEN[key] = _open_bucket(url, environ)
    return _OPEN[key]


def _open_bucket(url: str, environ: Mapping[str, str]) -> Bucket:
    scheme, location = parse_bucket_url(url)
    return GCSBucket(location, environ) if scheme == "gs" else LocalBucket(location)


def jsonl_line(record: Any) -> bytes:
    """``record`` as one line of JSON Lines: compact, UTF-8, keys in the provider's order.

    The bytes are ``json.dumps(record, ensure_ascii=False, separators=(",", ":"))`` plus a
    newline, written by orjson (three times as fast; JSON is much of a run's CPU). Except: an
    exponent is written in its shortest form (``1e16``, ``1e-7``, where the standard library
    writes ``1e+16``, ``1e-07``), and NaN/Infinity, which are not JSON, as null. What orjson
    refuses (an integer beyond 64 bits, a lone surrogate from a ``\\ud800`` escape) takes the
    standard library's ASCII-escaped path, so every record lands as valid JSON equal to what
    was read.
    """
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"


@dataclasses.dataclass
class WrittenObject:
    name: str
    size: int
    sha256: str
    records: int


class SpoolFull(Exception):
    """The run's landing data would pass the spool's ``max_bytes``."""

    def __init__(self, limit: int, records: int) -> None:
        super().__init__(f"spool full: {limit} bytes after {records} records")
        self.limit = limit
        self.records = records


# The spool's write buffer. A record is a few hundred bytes to a few KB: with the default 8 KiB
# a write(2) every few records, each one giving up the GIL to a thread that reads the next page
# ahead; a Strava run of 5,000 activities spent a third of its CPU in them (0.16 s → 0.11 s).
# 256 KiB is as fast as 1 MiB was (0.09-0.10 s) and lies in a run's memory 0.75 MB less.
SPOOL_BUFFER = 1 << 18


class JsonlSpool:
    """Records → JSON Lines in a temporary file, hashed as they are written.

    Memory stays flat however many records a run has; the file is uploaded whole at the end.
    The file has no name (it is unlinked when made), so its disk space goes back when it is
    closed, or when the process dies; it never grows past ``max_bytes``.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self._file: IO[bytes] | None = None  # created on the first record: empty runs need none
        self.hash = hashlib.sha256()
        self.size = 0
        self.records = 0
        self.max_bytes = max_bytes

    @property
    def file(self) -> IO[bytes]:
        if self._file is None:
            self._file = tempfile.TemporaryFile(buffering=SPOOL_BUFFER)  # noqa: SIM115
        return self._file

    def write_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Spool ``records``.

        Raises:
            SpoolFull: the next record would take the file past ``max_bytes``.
        """
        self.write_lines(jsonl_line(record) for record in records)

    def write_lines(self, lines: Iterable[bytes]) -> None:
        """Spool lines already written by :func:`jsonl_line`, each ending in a newline.

        Raises:
            SpoolFull: the next line would take the file past ``max_bytes``.
        """
        limit = self.max_bytes or sys.maxsize
        for line in lines:
            if self.size + len(line) > limit:
                raise SpoolFull(limit, self.records)
            self.file.write(line)
            self.hash.update(line)
            self.size += len(line)
            self.records += 1

    def upload(self, bucket: Bucket, name: str) -> WrittenObject:
        self.file.seek(0)
        bucket.upload(name, self.file, self.size, "application/x-ndjson")
        return WrittenObject(name, self.size, self.hash.hexdigest(), self.records)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
