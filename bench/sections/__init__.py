"""The benchmark's sections, by the number ``--only`` names them with (see :mod:`bench`).

Each module's ``rows(ctx)`` runs its measurements and returns its rows of the table.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.harness import Context
from bench.report import Row
from bench.sections import (
    completeness,
    data_types,
    ingest,
    jobs_page,
    memory,
    orchestration,
    peer,
    startup,
)

# Section 4 (API calls per run, bench/sections/api_calls.py) has no entry: its rows come from
# section 2's runs, so `--only 2` prints them too.
SECTIONS: dict[str, Callable[[Context], list[Row]]] = {
    "1": orchestration.rows,
    "2": ingest.rows,
    "3": memory.rows,
    "5": startup.rows,
    "6": completeness.rows,
    "7": jobs_page.rows,
    "8": peer.rows,  # only with --peer dlt
    "9": data_types.rows,
}
