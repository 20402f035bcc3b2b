"""What every ``ela`` command module shares: the env option, one-line errors, output helpers."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
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


def terminal_width() -> int | None:
    """Columns to fit tables in: ``COLUMNS`` if set, the terminal's on one, else None (a
    script reading the output gets whole lines)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def table_lines(
    rows: list[list[str]], header: list[str], width: int | None = None, indent: int = 0
) -> list[list[str]]:
    """The header and each row as the text lines they take in ``width`` columns (``indent`` of
    them spent before each line): the widest columns are narrowed and their cells wrapped at
    spaces onto more lines, never inside a word (a table that cannot fit stays wider)."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    floors = [
        max(len(word) for row in cells for word in [*row[i].split(), ""])
        for i in range(len(header))
    ]
    if width is not None:
        while sum(widths) + 2 * (len(widths) - 1) + indent > width:
            i = max(range(len(widths)), key=lambda k: widths[k] - floors[k])
            if widths[i] <= floors[i]:
                break
            widths[i] -= 1
    rendered = []
    for row in cells:
        wrapped = [
            [cell] if len(cell) <= w else textwrap.wrap(cell, w, break_on_hyphens=False)
            for cell, w in zip(row, widths, strict=True)
        ]
        height = max(len(parts) for parts in wrapped)
        rendered.append(
            [
                "  ".join(
                    (parts[k] if k < len(parts) else "").ljust(w)
                    for parts, w in zip(wrapped, widths, strict=True)
                ).rstrip()
                for k in range(height)
            ]
        )
    return rendered


def say(text: str) -> None:
    """A line of prose, wrapped to the terminal (whole when not on one)."""
    width = terminal_width()
    lines = text.splitlines() or [""]
    for line in lines:
        if width is None or len(line) <= width:
            click.echo(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()))
        for part in textwrap.wrap(line, width, subsequent_indent=indent + "  "):
            click.echo(part)


def print_table(rows: list[list[str]], header: list[str]) -> None:
    for lines in table_lines(rows, header, terminal_width()):
        for line in lines:
            click.echo(line)
