"""What every ``ela`` command module shares: the env option, one-line errors, output helpers."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from ela import config as config_module
from ela.errors import ConfigError, IngestError

ENV_OPTION = click.option(
    "--env",
    type=click.Choice(config_module.ENVS),
    default=None,
    help="Environment (default: $ELA_ENV, then dev).",
)


def plural(count: int, noun: str) -> str:
    """``1 record``, ``2 records``, ``1,000 records``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def fail(message: str) -> NoReturn:
    click.echo(f"ela: {message}", err=True)
    sys.exit(1)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected failures into one-line messages and exit 1."""
    try:
        yield
    except ConfigError as exc:
        click.echo("\n".join(exc.problems), err=True)
        sys.exit(1)
    except (IngestError, KeyError, ValueError) as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))


def load(env: str | None) -> config_module.IngestionConfig:
    if env:
        os.environ["ELA_ENV"] = env  # so worker/app.py, imported later, agrees
    return config_module.load_env(env)


def ready(env: str | None, *, broker: bool = False) -> config_module.IngestionConfig:
    """The env's config, once the process environment checks out (ela.settings): every problem
    is one line and the command exits 1 before starting anything. ``broker``: also connect to
    Redis, for commands that cannot work without it."""
    from ela import settings

    config = load(env)
    found = settings.problems(config, os.environ)
    if broker and not found:
        problem = settings.redis_problem(os.environ.get("REDIS_URL") or settings.DEFAULT_BROKER)
        found = [problem] if problem else []
    if found:
        for line in found:
            click.echo(f"ela: {line}", err=True)
        sys.exit(1)
    return config


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
