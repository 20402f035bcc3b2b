"""``python -m ela.cli``: the ``ela`` command, for when the console script is not on PATH."""

from ela.cli import main

main()
