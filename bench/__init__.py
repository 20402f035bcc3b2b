"""The benchmark: ``scripts/bench`` (``python -m bench``) prints one table of ratios.

Everything runs side by side in one invocation on one machine: our worker and pipeline against
bare Celery and against plain sequential scripts (``bench/baseline/``) that use the same client
libraries against the same emulators. Nothing here is imported by the product.

Layout:

* ``__main__.py`` — the command line: picks the sections (``--only``), prints the table.
* ``sections/`` — one module per section of the table, each with ``rows(ctx) -> list[Row]``;
  ``sections/__init__.py`` maps ``--only``'s numbers to them.
* ``harness.py`` — what the sections share: the Redis namespace, :class:`~bench.harness.Context`,
  benchmark configs, worker processes, running a job, running a baseline script.
* ``report.py`` — :class:`~bench.report.Row` and the table.
* ``baseline/`` — the plain scripts measured against the worker; ``peer_dlt.py`` — the dlt
  pipeline (run in its own virtual environment); ``plugin.py``, ``worker.py``, ``bare.py`` — the
  Celery apps section 1 and 5 start.

Adding a row (say, for a new data type): in the section's module, append a
``Row(metric, ours, baseline, unit, goal, met)`` to the list its ``rows()`` returns. ``metric``
starts with the section's number (``"2. Todoist tasks 10,000 → local folder"``): the table is
ordered by it. ``baseline`` is None where nothing compares, ``goal`` a short text, ``met`` None
where there is no goal; a False ``met`` makes the run exit 1. For section 2's throughput rows,
add the job to :data:`bench.sections.ingest.JOBS` with a script in ``bench/baseline/``.

Adding a section: a module in ``sections/`` with ``rows(ctx)``, an entry in
:data:`bench.sections.SECTIONS`, a line in ``__main__``'s docstring (it is ``--help``).

Imports: ``bench`` may import the product and :mod:`ela.sandbox` (emulators, processes, stores,
configs), never ``tests`` (see :mod:`ela.sandbox`).
"""
