"""The Celery application for the environment named by ``ELA_ENV`` (or ``ELA_CONFIG``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from celery import Celery
from celery.signals import before_task_publish

from beat_schedules import SCHEDULED_AT_HEADER, build_schedule
from ela import config as config_module
from ela import run_input
from ela.errors import ConfigError, InputError
from worker import leases, observability, pdeathsig
from worker.settings import celery_settings

__all__ = ["SCHEDULED_AT_HEADER", "EnvApp", "app", "create_app"]


class EnvApp(Celery):
    """Celery for one environment, configured from its config file when first needed.

    Importing this module reads no file: ``app.conf`` (and :attr:`ela_config`) load the env's
    config the first time something asks for them, so a typo in the config fails the commands
    that use it, with one line per problem, not every import (a test module, say).

    ``send_task`` is where ``ela run``, beat, retries, follow-ups, backfill, ``celery call`` and
    Flower's API (``apply_async`` included) all publish, so a message with a wrong argument, a
    run id that is not a UUID or another env's queue is refused there, with one line naming the
    field (:func:`ela.run_input.check_message`), and never reaches a worker. The worker checks
    again (tasks/base.py): a message can reach Redis some other way.
    """

    def __init__(
        self,
        config: config_module.IngestionConfig | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        # The name carries the env (leases, beat's lock and Sentry read it): the one asked for,
        # which load_env checks the file against.
        super().__init__(f"ela-{config.env if config else _wanted_env(environ)}")
        self._config = config
        self._environ = environ
        self.add_defaults(self._settings)  # a promise: called when the conf is first read

    @property
    def ela_config(self) -> config_module.IngestionConfig:
        """The env's config, loaded once (a bad file: one line per problem, exit status 1)."""
        if self._config is None:
            self._config = _load(self._environ)
        return self._config

    def _settings(self) -> dict[str, Any]:
        config = self.ela_config
        return {**celery_settings(config, self._environ), "beat_schedule": build_schedule(config)}

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        queue = options.get("queue")
        run_input.check_message(
            self.ela_config,
            name,
            args,
            kwargs,
            run_id=options.get("task_id"),
            queue=getattr(queue, "name", queue),
        )
        return super().send_task(name, args, kwargs, **options)


def _wanted_env(environ: Mapping[str, str]) -> str:
    return environ.get("ELA_ENV") or "dev"


def create_app(
    config: config_module.IngestionConfig | None = None, environ: Mapping[str, str] = os.environ
) -> EnvApp:
    """A Celery app with ``config``'s settings and beat schedule (no tasks registered); without
    one, the env's (``ELA_ENV``, ``ELA_CONFIG``), read when the app is first configured."""
    app = EnvApp(config, environ)
    leases.install(app)  # a dead worker's runs back within a minute (worker/leases.py)
    return app


def _load(environ: Mapping[str, str] = os.environ) -> config_module.IngestionConfig:
    try:
        return config_module.load_env(environ=environ)
    except ConfigError as exc:  # a one-line-per-problem message, never a traceback
        print("\n".join(exc.problems), file=sys.stderr)
        raise SystemExit(1) from None


def _one_line_refusals(
    kind: type[BaseException], value: BaseException, trace: TracebackType | None
) -> None:
    """Uncaught, a refused message ends the process with its one line, not a traceback: what
    ``celery -A worker call TASK --kwargs '{"limit": "abc"}'`` prints (Celery's CLI lets it
    through)."""
    if isinstance(value, InputError):
        print(f"refused: {value}", file=sys.stderr)
        return
    _default_excepthook(kind, value, trace)


_default_excepthook = sys.excepthook
sys.excepthook = _one_line_refusals

app = create_app()
observability.setup(lambda: app.ela_config)  # JSON/text logs and Sentry, scrubbed of secrets
pdeathsig.install()  # 3 MB less in every pool process


def __getattr__(name: str) -> Any:
    """``worker.app.config``: the env's config, loaded on first use (PEP 562)."""
    if name == "config":
        return app.ela_config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@before_task_publish.connect
def stamp_scheduled_time(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Give every message the minute it was sent: the run's scheduled time.

    Beat sets it to the tick itself (a tick sent late, after a beat takeover, keeps its
    minute); anything else gets the minute it was sent. The header survives redelivery; a
    retry pins it into the task's kwargs (see tasks/base.py).
    """
    if headers is not None and SCHEDULED_AT_HEADER not in headers:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        headers[SCHEDULED_AT_HEADER] = now.isoformat()
