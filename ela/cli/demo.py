"""``ela demo``: every job through a real worker against the local emulators (ela/sandbox/)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ela.cli.common import user_errors


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the sandbox running until Ctrl-C.")
@click.option("--folder", type=click.Path(file_okay=False), help="Where the local bucket goes.")
def demo(keep: bool, folder: str | None) -> None:
    """Run every job through a real worker against local emulators, into a local bucket."""
    from ela.sandbox.demo import run_demo

    with user_errors():
        code = run_demo(folder=Path(folder) if folder else None, keep=keep)
    sys.exit(code)
