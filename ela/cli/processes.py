"""The long-running processes: ``ela worker``, ``ela beat`` and ``ela flower``.

Each checks the env's config and process environment (and that Redis answers) in this process,
then execs Celery or Flower with the repository on PYTHONPATH; extra arguments pass through.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from ela import config as config_module
from ela.cli.common import ENV_OPTION, fail, ready, user_errors


def _exec_celery(
    env: str | None, args: list[str], defaults: dict[str, str] | None = None
) -> NoReturn:
    with user_errors():
        ready(env, broker=True)
    argv = [sys.executable, "-m", "worker.main", *args]  # `celery -A worker`, lighter
    environ = {**(defaults or {}), **os.environ, "PYTHONPATH": _pythonpath()}
    os.execvpe(argv[0], argv, environ)


def _pythonpath() -> str:
    root = str(config_module.REPO_ROOT)
    current = os.environ.get("PYTHONPATH", "")
    return f"{root}{os.pathsep}{current}" if current else root


PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@click.command("worker", context_settings=PASSTHROUGH)
@ENV_OPTION
@click.option("-l", "--loglevel", default="info", show_default=True)
@click.pass_context
def worker(ctx: click.Context, env: str | None, loglevel: str) -> None:
    """A Celery worker for the env's queues (concurrency and limits from its config).

    SIGTERM stops it in bounded time: running tasks get the soft-shutdown grace
    (worker_soft_shutdown_timeout), then whatever is left, retries waiting on a countdown
    included, goes back to its queue. Extra arguments go to 'celery worker'.
    """
    # Celery (billiard) reads REMAP_SIGTERM from the environment at import, so it is set for the
    # process we exec: SIGTERM then starts a cold shutdown with the soft grace period instead of
    # a warm one that waits for every running task (up to the hard time limit).
    named = any(a in ("-n", "--hostname") or a.startswith("--hostname=") for a in ctx.args)
    # The env in the node name: a dev and a prd worker on one host are two nodes, in Flower,
    # `inspect` and the logs (`celery worker`'s default would name both celery@host).
    node = [] if named else ["-n", f"{config_module.load_env(env).env}@%h"]
    _exec_celery(env, ["worker", "-l", loglevel, *node, *ctx.args], {"REMAP_SIGTERM": "SIGQUIT"})


@click.command("beat", context_settings=PASSTHROUGH)
@ENV_OPTION
@click.option("-l", "--loglevel", default="info", show_default=True)
@click.pass_context
def beat(ctx: click.Context, env: str | None, loglevel: str) -> None:
    """Celery beat with the env's schedule. Extra arguments go to 'celery beat'.

    Every tick is sent once across beat restarts and leader changes; what was sent lives in
    Redis beside the env's leader lock, so beat keeps no file.
    """
    _exec_celery(env, ["beat", "-l", loglevel, *ctx.args])


@click.command("flower", context_settings=PASSTHROUGH)
@ENV_OPTION
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", default=5555, show_default=True)
@click.pass_context
def flower(ctx: click.Context, env: str | None, address: str, port: int) -> None:
    """Flower for the env, bound to loopback, behind FLOWER_BASIC_AUTH (user:password).

    Every page, API call and /metrics needs the credentials (worker/flower_app.py); only
    /healthcheck answers without them. Extra arguments go to Flower.
    """
    user, _, password = os.environ.get("FLOWER_BASIC_AUTH", "").partition(":")
    if not user or not password:
        said = " is not set" if not user else f"={user!r} has no password"
        fail(f"FLOWER_BASIC_AUTH{said}: Flower can send tasks, so it needs user:password")
    with user_errors():
        ready(env, broker=True)
    argv = [sys.executable, "-m", "worker.flower_app", f"--address={address}", f"--port={port}"]
    os.execvpe(argv[0], [*argv, *ctx.args], {**os.environ, "PYTHONPATH": _pythonpath()})
