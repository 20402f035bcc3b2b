"""``python -m worker.main worker|beat [options]``: ``celery -A worker worker|beat``, lighter.

The ``celery`` command imports every subcommand it offers and every plugin installed for it
before it parses a word: Flower's (tornado, prometheus_client, humanize), and the ``shell`` and
``amqp`` ones (click-repl, prompt_toolkit, pygments). In a worker that is 13 MB of memory
that nothing uses, and every pool process is forked from it. This runs Celery's own ``worker``
and ``beat`` commands, with their options, defaults and behaviour, for this app, and imports
nothing else of the command line. ``ela worker`` and ``ela beat`` exec it.
"""

from __future__ import annotations

import os
import sys

import click
from celery.bin.base import CLIContext

from worker.app import app


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("worker", "beat"):
        sys.exit("usage: python -m worker.main worker|beat [celery worker|beat options]")
    name, *args = argv
    command: click.Command = _command(name)
    command.params.extend(app.user_options.get(name, []))  # as `celery` does
    context = CLIContext(app=app, no_color=bool(os.environ.get("NO_COLOR")), workdir=None)
    command.main(args=args, prog_name=f"celery {name}", obj=context)


def _command(name: str) -> click.Command:
    if name == "worker":
        from celery.bin.worker import worker

        return worker
    from celery.bin.beat import beat

    return beat


if __name__ == "__main__":
    main(sys.argv[1:])
