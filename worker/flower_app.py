"""Flower for the env's app, with every page, API call and ``/metrics`` behind basic auth.

``python -m worker.flower_app [flower options]`` is ``celery -A worker flower [options]`` with
one change. Flower 2.2 checks credentials per handler (``@tornado.web.authenticated`` on the
UI and API methods, which calls ``BaseHandler.get_current_user``: a 401 for a missing or wrong
``Authorization: Basic`` header), and its ``/metrics`` and ``/healthcheck`` handlers carry no
such check: with ``--basic-auth`` set, anyone who reaches the port reads the Prometheus metrics
(worker names, task names, counts, runtimes). Instead of relying on each handler remembering
the decorator, this module makes authentication the default: every Flower handler's
``prepare()`` (run by Tornado before any method, for every HTTP verb) first asks
``get_current_user`` — Flower's own check, same constant-time comparison, same 401 — and refuses
outright if no credentials are configured at all.

One path stays open: ``/healthcheck``. It answers the constant ``OK`` and nothing else, so it
reveals only that the process is up, and a container or load-balancer probe can use it
without the password in its own configuration (where ``docker inspect`` would show it).
Flower's static files (its own JS/CSS, served by Tornado's ``StaticFileHandler``) stay open too.

It adds the Jobs pages (``/jobs``: :mod:`worker.flower_jobs`), behind the same guard, and checks
every task sent through Flower's API with the schema of every other entry point
(:func:`check_task_request`): a bad argument is a 400 with one line.

It also hands Flower's broker inspector a ``redis://`` URI for our Redis transport subclass
(see :func:`broker_uri_for_flower`), so queue lengths and the Broker page keep working.

``ela flower`` runs this module; ``FLOWER_BASIC_AUTH`` (``user:password``) must be set, and the
listening address defaults to 127.0.0.1. The password is read from the environment, never from
the command line (where ``ps`` shows it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from functools import cache, cached_property
from typing import Any

import tornado.web

# Importing the URL table imports every handler module, so all subclasses exist below.
from flower import urls as _urls  # noqa: F401
from flower.app import Flower
from flower.views import BaseHandler

from ela import run_input
from ela.errors import InputError

OPEN_PATHS = ("/healthcheck",)
DEFAULT_ADDRESS = "127.0.0.1"
_GUARD = "_ela_requires_auth"


@cache  # asked on every request, for the one prefix the app runs with
def open_paths(url_prefix: str | None) -> frozenset[str]:
    prefix = f"/{url_prefix.strip('/')}" if url_prefix and url_prefix.strip("/") else ""
    return frozenset(f"{prefix}{path}" for path in OPEN_PATHS)


def require_auth(handler: BaseHandler) -> None:
    """Raise a 401 unless the request carries the configured credentials (or is open)."""
    options = handler.application.options
    if handler.request.path in open_paths(options.url_prefix):
        return
    if not (options.basic_auth or options.auth):
        raise tornado.web.HTTPError(401, "Flower runs only with FLOWER_BASIC_AUTH")
    # Flower's check: raises HTTPError(401) on a missing or wrong Basic header; for OAuth
    # (`--auth`) it returns None without a session, which is a 401 here too.
    if not handler.current_user:
        raise tornado.web.HTTPError(401)


def _guarded(prepare: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def guarded_prepare(self: BaseHandler) -> Any:
        require_auth(self)
        check_task_request(self)
        return prepare(self)

    setattr(guarded_prepare, _GUARD, True)
    return guarded_prepare


def _handler_classes() -> Iterator[type[BaseHandler]]:
    seen: set[type[BaseHandler]] = set()
    todo: list[type[BaseHandler]] = [BaseHandler]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.add(cls)
            yield cls
            todo.extend(cls.__subclasses__())


_TASK_API = re.compile(r"/api/task/(?:send-task|apply|async-apply)/(?P<task>[^/]+)$")


def check_task_request(handler: BaseHandler) -> None:
    """A task sent through Flower's API, checked before Flower sends it: 400 with the schema's
    one line (:func:`ela.run_input.check_message`, as our app's ``send_task`` does) instead of
    a 500 with an empty body and a traceback in Flower's log."""
    found = _TASK_API.search(handler.request.path)
    if handler.request.method != "POST" or found is None:
        return
    try:
        body = json.loads(handler.request.body or b"{}")
    except ValueError:
        return  # Flower answers 400 itself
    if not isinstance(body, dict):
        return
    try:
        run_input.check_message(
            handler.application.capp.ela_config,
            found.group("task"),
            body.get("args"),
            body.get("kwargs"),
            run_id=body.get("task_id"),
            queue=body.get("queue"),
        )
    except InputError as exc:
        raise tornado.web.HTTPError(400, str(exc).replace("%", "%%")) from None


def install() -> None:
    """Guard ``prepare`` on Flower's base handler and on every subclass that overrides it
    (``BaseApiHandler`` does, without calling ``super()``). Idempotent."""
    for cls in _handler_classes():
        prepare = cls.__dict__.get("prepare")
        if cls is BaseHandler and prepare is None:
            prepare = tornado.web.RequestHandler.prepare
        if prepare is not None and not getattr(prepare, _GUARD, False):
            cls.prepare = _guarded(prepare)


def broker_uri_for_flower(uri: str, driver_type: str | None) -> str:
    """The broker URI with the transport's driver as its scheme.

    Our broker transport is a class path (``worker.redis_transport:Transport``, a subclass of
    kombu's Redis transport), so the connection's URI starts with that; Flower's broker
    inspector (queue lengths, the Broker page) knows brokers only by scheme (``redis://``) and
    answers 404 to anything else.
    """
    scheme, sep, rest = uri.partition("://")
    if sep and driver_type and ":" in scheme:
        return f"{driver_type}://{rest}"
    return uri


def _broker_uri_with_password(self: Flower) -> str:
    with self.capp.connection() as conn:
        uri = conn.as_uri(include_password=True)
        return broker_uri_for_flower(uri, getattr(conn.transport, "driver_type", None))


def flower_argv(args: list[str]) -> list[str]:
    """``celery -A worker flower`` with ``args``, bound to loopback unless told otherwise."""
    has_address = any(a == "--address" or a.startswith("--address=") for a in args)
    if not has_address and not os.environ.get("FLOWER_ADDRESS"):
        args = [f"--address={DEFAULT_ADDRESS}", *args]
    return ["celery", "-A", "worker", "flower", *args]


def add_jobs_pages() -> None:
    """Add the Jobs pages (:mod:`worker.flower_jobs`) to the app Flower builds. Idempotent.

    Flower builds its app from ``flower.urls``' handler list and settings; the routes go in
    before its catch-all 404 route, and its template loader becomes ours (Flower's templates,
    the Jobs templates, and the nav bar with a Jobs link).
    """
    from flower import urls

    from worker import flower_jobs

    routes = flower_jobs.routes()
    names = {route.name for route in routes}
    if not any(getattr(handler, "name", None) in names for handler in urls.handlers):
        catch_all = next(
            (i for i, h in enumerate(urls.handlers) if isinstance(h, tuple) and h[0] == r".*"),
            len(urls.handlers),
        )
        urls.handlers[catch_all:catch_all] = routes
    urls.settings["template_loader"] = flower_jobs.Templates(urls.settings["template_path"])


def log_as_the_others() -> None:
    """Flower's own lines in the worker's and beat's format (JSON off a terminal, scrubbed):
    a root handler of ours, with which Tornado adds none of its own."""
    from ela.scrub import Scrubber
    from worker.app import config
    from worker.logs import format_handlers

    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    format_handlers(root, config, Scrubber(os.environ))


def main(args: list[str] | None = None) -> int:
    if not os.environ.get("FLOWER_BASIC_AUTH", "").partition(":")[2]:
        print(
            "flower: FLOWER_BASIC_AUTH (user:password) is not set: Flower can send tasks, "
            "so it never runs without it",
            file=sys.stderr,
        )
        return 1
    from celery.bin.celery import main as celery_main

    add_jobs_pages()
    install()
    log_as_the_others()
    prop = cached_property(_broker_uri_with_password)
    prop.__set_name__(Flower, "broker_uri_with_password")
    Flower.broker_uri_with_password = prop
    sys.argv = flower_argv(sys.argv[1:] if args is None else args)
    return celery_main()


if __name__ == "__main__":
    sys.exit(main())
