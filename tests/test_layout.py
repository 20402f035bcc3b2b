"""Who may import whom (the rule in :mod:`ela.sandbox`), read off every module's imports.

* ``tests/`` and ``bench/`` may import ``ela.sandbox`` and the product, never each other.
* ``ela.sandbox`` imports neither harness.
* The product's runtime path never imports ``ela.sandbox``: only the ``ela demo`` command
  does, inside the function that runs it.
* Nothing but ``ela/cli`` imports ``ela.cli``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from ela.sandbox.processes import REPO

PRODUCT = ("ela", "worker", "tasks", "beat_schedules")


def modules(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def imports(path: Path) -> Iterator[tuple[str, bool]]:
    """Each module ``path`` imports, and whether the import is inside a function."""
    tree = ast.parse(path.read_text(), str(path))
    nested = {
        id(node)
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in nested
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module, id(node) in nested


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def offenders(folder: str, package: str) -> list[str]:
    return [
        f"{path.relative_to(REPO)} imports {name}"
        for path in modules(folder)
        for name, _ in imports(path)
        if within(name, package)
    ]


def test_the_tests_never_import_the_benchmark() -> None:
    assert offenders("tests", "bench") == []


def test_the_benchmark_never_imports_the_tests() -> None:
    assert offenders("bench", "tests") == []


def test_the_sandbox_imports_neither_harness() -> None:
    assert offenders("ela/sandbox", "tests") + offenders("ela/sandbox", "bench") == []


def test_the_product_imports_the_sandbox_only_to_run_the_demo() -> None:
    found = []
    for folder in PRODUCT:
        for path in modules(folder):
            where = path.relative_to(REPO)
            if where.parts[:2] == ("ela", "sandbox"):
                continue
            for name, in_function in imports(path):
                demo = str(where).startswith("ela/cli") and in_function
                if within(name, "ela.sandbox") and not demo:
                    found.append(f"{where} imports {name}")
    assert found == []


def test_only_the_command_line_imports_it() -> None:
    """``ela/cli`` is the edge: the worker, beat, tasks, the Flower plugin and the domain do
    not depend on it (what they share with it, e.g. :mod:`ela.text`, lives below it)."""
    found = [
        f"{path.relative_to(REPO)} imports {name}"
        for folder in PRODUCT
        for path in modules(folder)
        if path.relative_to(REPO).parts[:2] != ("ela", "cli")
        for name, _ in imports(path)
        if within(name, "ela.cli")
    ]
    assert found == []
