"""Logs and Sentry for the worker and beat processes, with no secret in either (SPEC §3, §5).

Logging: Celery still builds its handlers (level, ``--logfile``, root-logger hijack, stdout
redirect); after it does, each handler gets our formatter: one JSON object per line when its
stream is not a terminal (``time``, ``level``, ``logger``, ``message``, ``process``, ``env``
and, inside a task, ``task``, ``task_id``, ``job``, ``run_id``), Celery's own human format when
it is. ``ELA_LOG_FORMAT=json|text`` overrides the terminal check. Both pass through the
:class:`Scrubber`. Celery's startup banner is printed to stdout, not logged, and stays text.

Sentry, only when ``SENTRY_DSN`` is set (otherwise ``sentry_sdk`` is never imported): the
config's env as Sentry ``environment`` and an ``env`` tag, the Celery integration with beat
entries monitored as crons (slug = beat entry name = job name), ``job`` / ``run_id`` / ``task``
tags set when a task starts, and every event, transaction and breadcrumb scrubbed on the way
out. It starts in the worker's main process (``celeryd_init``) and in beat (``beat_init``).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from celery import Task, signals

# Celery's own TaskFormatter reads the running task this way; there is no public equivalent
# that returns None outside a task.
from celery._state import get_current_task
from celery.utils.log import get_multiprocessing_logger

from beat_schedules import beat_sending
from ela.config import IngestionConfig
from ela.tokens import token_dir

FILTERED = "[Filtered]"
LOG_FORMAT_VAR = "ELA_LOG_FORMAT"
MONITOR_START_HEADER = "sentry-monitor-start-timestamp-s"  # read by sentry's beat integration

# -- what counts as a secret -------------------------------------------------------------------

_PROVIDER_PREFIXES = ("SPOTIFY_", "STRAVA_", "GARMIN_", "TODOIST_")
# Endpoint overrides are addresses, not credentials; filtering them would only blind the logs.
_NOT_SECRET_SUFFIXES = ("_URL", "_URI")
_SECRET_VAR = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|_AUTH$")
# Shorter values would turn ordinary digits and words into [Filtered] everywhere.
_MIN_SECRET_LEN = 4

# A key (env var, JSON field, header, query parameter) that names a credential: it ends in one
# of these words. ``token_type`` or ``status_code`` do not.
_KEY_WORDS = (
    r"authorization|auth|token|secret|password|passwd|pwd|api[_-]?key|apikey|cookie|dsn"
    r"|credentials?|session[_-]?id"
)
_SENSITIVE_KEY = re.compile(rf"(?i)(?:^|[_\-. ])(?:{_KEY_WORDS})$")

# Each pattern with the words it cannot match without (any of them, in text folded as
# _folded() does): most log lines hold none, and the first pattern alone took 100 µs on a
# 450-character line (every run's success line) where looking for its words takes 2 µs.
_PATTERNS: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    # key=value, key: value, "key": "value", 'key': 'value', ?key=value& — any identifier that
    # ends in a credential word, with an optional auth scheme before the value.
    (
        ("authorization", "token", "secret", "passw", "apikey", "api_key", "api-key"),
        re.compile(
            r"(?i)(\b[\w\-]*?(?:authorization|token|secret|password|passwd|api[_-]?key|apikey)"
            r"(?![\w\-])[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|oauth|token)\s+)?"
            r"(?!\[Filtered\])[^\s\"'&,;}\])]+"
        ),
        rf"\g<1>{FILTERED}",
    ),
    # An Authorization header value on its own: "Bearer abc.def", "OAuth ...".
    (
        ("bearer", "oauth"),
        re.compile(r"(?i)\b(bearer|oauth)\s+(?!\[Filtered\])[\w\-.~+/]{8,}=*"),
        rf"\1 {FILTERED}",
    ),
    # Basic credentials: base64 with a digit or padding, so "basic authentication" survives.
    (
        ("basic",),
        re.compile(r"(?i)\b(basic)\s+(?=[A-Za-z+/]*[\d+/=])[A-Za-z\d+/]{8,}={0,2}"),
        rf"\1 {FILTERED}",
    ),
    # user:password@ in a URL (Redis, the Sentry DSN's key, proxies); Celery's own ":**@"
    # mask is left as it is.
    (
        ("://",),
        re.compile(r"(?i)\b([a-z][a-z\d+.\-]*://)(?!:?\*+@)[^/\s@\"']+@"),
        rf"\1{FILTERED}@",
    ),
)


def _folded(text: str) -> str:
    """``text`` in lower case such that a word a ``(?i)`` pattern matches in it appears in it.
    ``casefold`` maps the letters ``re`` treats as equal to ASCII ones (the Kelvin sign, long s)
    except the dotted and dotless i, mapped here."""
    return text.casefold().replace("i\u0307", "i").replace("\u0131", "i")


def _variants(value: str) -> set[str]:
    """The ways a value shows up in text: as is, JSON- or repr-escaped, URL-encoded."""
    return {
        value,
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
    }


def credential_values(environ: Mapping[str, str]) -> set[str]:
    """Secret values in the environment: provider credentials, passwords in URLs, the DSN key."""
    values: set[str] = set()
    for name, value in environ.items():
        if not value:
            continue
        provider = name.startswith(_PROVIDER_PREFIXES) and not name.endswith(_NOT_SECRET_SUFFIXES)
        if provider or _SECRET_VAR.search(name):
            values.add(value)
        if name == "FLOWER_BASIC_AUTH":  # user:password[,user:password]
            values.update(pair.partition(":")[2] for pair in value.split(","))
        if "://" in value and "@" in value:
            parts = urllib.parse.urlsplit(value)
            values.add(parts.password or "")
            if name == "SENTRY_DSN":
                values.add(parts.username or "")
    return {v for v in values if len(v) >= _MIN_SECRET_LEN}


def _secret_leaves(data: Any, key: str = "") -> Iterable[str]:
    if isinstance(data, Mapping):
        for k, v in data.items():
            yield from _secret_leaves(v, str(k))
    elif isinstance(data, list):
        for v in data:
            yield from _secret_leaves(v, key)
    elif isinstance(data, str) and _SENSITIVE_KEY.search(key):
        yield data


class Scrubber:
    """Replaces secrets in text and nested data with ``[Filtered]``.

    Secrets are the credential values of the environment, the tokens in the token store
    (re-read when a file there changes, at most once a second), and anything shaped like a
    credential: ``Authorization``/``Bearer`` values, ``*token``/``*secret``/``*password`` keys
    and URL passwords.
    """

    RECHECK_SECONDS = 1.0

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        # Every form of the environment's secrets, built once; token values join on each change.
        self._env_secrets = {v for s in credential_values(environ) for v in _variants(s) if v}
        self._token_dir = token_dir(environ)
        self._token_stamp: tuple[tuple[str, int], ...] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._values: re.Pattern[str] | None = None
        # Not wasted: _refresh() stamps _checked before it compiles, so a thread whose text()
        # comes while the first refresh is still compiling uses this: the environment's secrets.
        self._compile(set())

    def _compile(self, token_values: set[str]) -> None:
        secrets = self._env_secrets | {v for s in token_values for v in _variants(s) if v}
        # Longest first, so a secret that contains another is filtered whole.
        alternatives = sorted(secrets, key=len, reverse=True)
        self._values = (
            re.compile("|".join(re.escape(s) for s in alternatives)) if alternatives else None
        )

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.RECHECK_SECONDS:
            return
        with self._lock:
            self._checked = now
            try:
                files = sorted(self._token_dir.glob("*.json"))
                stamp = tuple((f.name, f.stat().st_mtime_ns) for f in files)
            except OSError:
                files, stamp = [], ()
            if stamp == self._token_stamp:
                return
            tokens: set[str] = set()
            for path in files:
                try:
                    tokens.update(_secret_leaves(json.loads(path.read_text())))
                except (OSError, ValueError):
                    continue
            self._token_stamp = stamp
            self._compile({t for t in tokens if len(t) >= _MIN_SECRET_LEN})

    def text(self, text: str) -> str:
        self._refresh()
        if self._values is not None:
            text = self._values.sub(FILTERED, text)
        folded = _folded(text)
        for words, pattern, replacement in _PATTERNS:
            if any(word in folded for word in words):
                text = pattern.sub(replacement, text)
        return text

    def data(self, value: Any) -> Any:
        """A copy of ``value``: credential-named keys and secrets in strings filtered."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                k: FILTERED
                if isinstance(k, str) and _SENSITIVE_KEY.search(k) and value_present(v)
                else self.data(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


def value_present(value: Any) -> bool:
    return value not in (None, "", [], {})


# -- run context -------------------------------------------------------------------------------


def _is_ingest_task(name: str | None) -> bool:
    parts = (name or "").split(".")
    return len(parts) == 3 and parts[0] == "tasks"


def run_fields(
    config: IngestionConfig,
    task_name: str | None,
    task_id: str | None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    resolve_job: bool = True,
) -> dict[str, str]:
    """``task``, ``task_id`` and, for an ingest task, ``run_id`` (= task id) and ``job``."""
    fields: dict[str, str] = {}
    if task_name:
        fields["task"] = task_name
    if task_id:
        fields["task_id"] = task_id
    if not (task_id and _is_ingest_task(task_name)):
        return fields
    fields["run_id"] = task_id
    job = (kwargs or {}).get("job")
    if not job and resolve_job and task_name:
        try:
            job = config.job_for_task(task_name)
        except (KeyError, ValueError):
            job = None
    if isinstance(job, str) and job:
        fields["job"] = job
    return fields


def record_fields(config: IngestionConfig, record: logging.LogRecord) -> dict[str, str]:
    """The run a log record belongs to: the running task, else the message beat is sending,
    else the task Celery's line is about."""
    task = get_current_task()
    if task is not None and task.request is not None and task.request.id:
        return run_fields(config, task.name, task.request.id, task.request.kwargs)
    sending = beat_sending.get()  # beat's "Sending due task" line, and anything while it sends
    if sending is not None:
        return run_fields(config, *sending)
    data = getattr(record, "data", None)  # Celery's "received"/"succeeded" lines carry it
    if isinstance(data, Mapping) and data.get("id"):
        return run_fields(config, data.get("name"), data.get("id"), _kwargs(data.get("kwargs")))
    return {}


def _kwargs(text: Any) -> Mapping[str, Any] | None:
    """The kwargs of Celery's "received" line, which carries their repr (the job is the
    ``job`` kwarg if any, else the task's own job: ela.run_input's rule)."""
    if isinstance(text, Mapping):
        return text
    try:
        value = ast.literal_eval(text) if isinstance(text, str) else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, Mapping) else None


# -- logging -----------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the values scrubbed before they are encoded."""

    def __init__(self, config: IngestionConfig, scrubber: Scrubber) -> None:
        super().__init__()
        self.config = config
        self.scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
            "env": self.config.env,
            **record_fields(self.config, record),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(self.scrubber.data(out), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Celery's human format (colours and all), scrubbed."""

    def __init__(self, inner: logging.Formatter, scrubber: Scrubber) -> None:
        super().__init__()
        self.inner = inner
        self.scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        return self.scrubber.text(self.inner.format(record))


def log_format(stream: Any, environ: Mapping[str, str] = os.environ) -> str:
    """``json`` or ``text``: ``ELA_LOG_FORMAT`` if it says, else text only on a terminal."""
    forced = environ.get(LOG_FORMAT_VAR, "").strip().lower()
    if forced in ("json", "text"):
        return forced
    isatty = getattr(stream, "isatty", None)
    try:
        return "text" if callable(isatty) and isatty() else "json"
    except ValueError:  # a closed stream
        return "json"


def format_handlers(
    logger: logging.Logger | None,
    config: IngestionConfig,
    scrubber: Scrubber,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Give each of the logger's handlers our formatter, chosen by where that handler writes."""
    if logger is None:
        return
    for handler in logger.handlers:
        if isinstance(handler.formatter, JsonFormatter | TextFormatter):
            continue
        if log_format(getattr(handler, "stream", None), environ) == "json":
            handler.setFormatter(JsonFormatter(config, scrubber))
        else:
            handler.setFormatter(TextFormatter(handler.formatter or logging.Formatter(), scrubber))


# -- Sentry ------------------------------------------------------------------------------------


def init_sentry(config: IngestionConfig, environ: Mapping[str, str] = os.environ) -> bool:
    """Start Sentry if ``SENTRY_DSN`` is set; True if it runs in this process."""
    dsn = environ.get("SENTRY_DSN", "").strip()
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration

    if sentry_sdk.is_initialized():  # beat embedded in a worker (-B) inherits the worker's
        return True
    # The DSN's key is what the SDK authenticates to this same Sentry with, and the trace
    # header of every envelope carries it (from the event, after before_send): keep it there.
    scrubber = Scrubber({k: v for k, v in environ.items() if k != "SENTRY_DSN"})

    def scrub_event(event: Any, hint: Any) -> Any:
        event = scrubber.data(event)
        event.setdefault("tags", {})["env"] = config.env
        return event

    def scrub_breadcrumb(crumb: Any, hint: Any) -> Any:
        return scrubber.data(crumb)

    sentry_sdk.init(
        dsn=dsn,
        environment=config.env,
        # Beat entries become cron monitors named after the entry (the job), with its crontab
        # and the config's timezone; the worker reports each run's ok/error check-in.
        # No trace propagation: its baggage header would put the DSN key into every task
        # message in Redis (and Flower). Nothing is traced, so nothing is lost but this.
        integrations=[CeleryIntegration(monitor_beat_tasks=True, propagate_traces=False)],
        send_default_pii=False,
        # Frame locals can hold a client, a token, a response: never send them.
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
    )
    sentry_sdk.get_global_scope().set_tag("env", config.env)
    _tune_monitors(config)

    def tag_run(task_id: str | None = None, task: Task | None = None, **kw: Any) -> None:
        if task is not None:
            sentry_sdk.set_tags(run_fields(config, task.name, task_id, kw.get("kwargs")))

    def report_expected_failure(
        sender: Task | None = None, exception: BaseException | None = None, **_: Any
    ) -> None:
        # The integration skips a task's `throws` (our IngestError: logged without a traceback),
        # but a run that failed for good is what the person behind Sentry must hear about.
        if sender is not None and exception is not None and isinstance(exception, sender.throws):
            sentry_sdk.set_tag("error_kind", getattr(exception, "kind", "error"))
            sentry_sdk.capture_exception(exception)

    def stamp_monitor_start(headers: dict[str, Any] | None = None, **_: Any) -> None:
        # What the integration's trace propagation would add: the worker's ok/error check-in
        # reports its duration from it.
        if headers is not None and "sentry-monitor-slug" in headers:
            headers.setdefault(MONITOR_START_HEADER, f"{time.time():.9f}")

    signals.before_task_publish.connect(
        stamp_monitor_start, weak=False, dispatch_uid="ela-sentry-monitor-start"
    )
    # Runs inside the integration's per-task scope, so the tags belong to that run only.
    signals.task_prerun.connect(tag_run, weak=False, dispatch_uid="ela-sentry-tags")
    signals.task_failure.connect(
        report_expected_failure, weak=False, dispatch_uid="ela-sentry-expected"
    )
    return True


def _tune_monitors(config: IngestionConfig) -> None:
    """Make Sentry's cron check-ins match how a run really ends.

    - A retry is not the end of a run: the integration closes the check-in as ``error`` on
      ``task_retry``, and Sentry ignores the ``ok`` that a recovered run sends afterwards
      (measured: ``error`` then ``ok`` for one check-in id). Only the final outcome reports.
    - Sentry flags runs past its 30-minute default ``max_runtime``; prd allows 45 minutes.
      The integration builds each monitor's config (crontab + timezone) in a private
      function: wrap it to add the hard time limit. Beat sends the config with the in-progress
      check-in and the worker echoes it from the task headers, so both agree. If a future
      sentry-sdk moves either name, monitors keep Sentry's defaults.
    """
    import math

    from sentry_sdk.integrations.celery import beat as sentry_beat

    from worker.settings import hard_time_limit

    on_retry = getattr(sentry_beat, "crons_task_retry", None)
    if on_retry is not None:
        signals.task_retry.disconnect(on_retry)
    original = getattr(sentry_beat, "_get_monitor_config", None)
    if original is None or getattr(original, "_ela_wrapped", False):
        return
    minutes = math.ceil(hard_time_limit(config) / 60)

    def monitor_config(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if result:
            result.setdefault("max_runtime", minutes)
        return result

    monitor_config._ela_wrapped = True  # type: ignore[attr-defined]
    sentry_beat._get_monitor_config = monitor_config


# -- wiring ------------------------------------------------------------------------------------


def setup(config: Callable[[], IngestionConfig], environ: Mapping[str, str] = os.environ) -> None:
    """Hook logging and Sentry into Celery's worker and beat start-up (idempotent).

    Sentry starts in the worker's main process (``celeryd_init``), before the prefork pool
    forks: the integration patches Celery's tracer builder, and children build their tracers
    from it as they start; Sentry's transport restarts its thread in each child. Starting it in
    ``worker_process_init`` would be too late for that and would miss the main process's events.

    ``config`` is asked for when a logger or Sentry is set up, not now (the app's config loads
    when the app is configured).
    """
    scrubber = Scrubber(environ)

    def on_logger(logger: logging.Logger | None = None, **_: Any) -> None:
        format_handlers(logger, config(), scrubber, environ)
        format_handlers(get_multiprocessing_logger(), config(), scrubber, environ)

    def on_start(**_: Any) -> None:
        init_sentry(config(), environ)

    signals.after_setup_logger.connect(on_logger, weak=False, dispatch_uid="ela-logs")
    signals.after_setup_task_logger.connect(on_logger, weak=False, dispatch_uid="ela-task-logs")
    for signal in (signals.celeryd_init, signals.beat_init, signals.beat_embedded_init):
        signal.connect(on_start, weak=False, dispatch_uid=f"ela-sentry-{signal.name}")


__all__ = [
    "FILTERED",
    "JsonFormatter",
    "Scrubber",
    "TextFormatter",
    "credential_values",
    "init_sentry",
    "log_format",
    "run_fields",
    "setup",
]
