"""``ela auth``: a provider's interactive authorization, its tokens stored where workers read
them (the connector's own ``authorize``)."""

from __future__ import annotations

import os
from collections.abc import Callable

import click

from ela.cli.common import fail, user_errors


@click.command("auth")
@click.argument("provider", type=click.Choice(["spotify", "strava", "garmin"]))
def auth(provider: str) -> None:
    """Authorize PROVIDER interactively and store its tokens where workers read them."""
    import importlib

    from ela.tokens import TokenStore

    module = importlib.import_module(f"ela.connectors.{provider}")
    authorize: Callable[..., None] | None = getattr(module, "authorize", None)
    if authorize is None:
        fail(f"{provider}: interactive authorization is not implemented yet")
    store = TokenStore.from_env()

    def ask(prompt: str, secret: bool = False) -> str:
        return str(click.prompt(prompt, hide_input=secret))

    with user_errors():
        authorize(os.environ, store, ask, click.echo)
    click.echo(f"{provider}: tokens stored in {store.where}")
