"""Will BigQuery load this JSONL with schema auto-detection? The documented rules, checked.

The downstream loads each landing object into BigQuery as newline-delimited JSON with
``autodetect``. What BigQuery documents for that (cloud.google.com/bigquery/docs:
``loading-data-cloud-storage-json``, ``schemas``, ``nested-repeated``, ``data-types``):

- **each line is one JSON object** (a row);
- **no arrays of arrays**: an array becomes a REPEATED column, and BigQuery has no
  ``ARRAY<ARRAY<...>>``;
- **no null array elements**: a REPEATED column cannot hold NULL;
- **column names** (at every level): letters, digits and underscores, starting with a letter or
  underscore, at most 300 characters, none of the reserved prefixes (``_TABLE_``, ``_FILE_``,
  ``_PARTITION``, ``_ROW_TIMESTAMP``, ``__ROOT__``, ``_COLON_``), and no two names in one
  object that differ only in case (column names are case-insensitive);
- **at most 15 levels of nested RECORD** (STRUCT) columns;
- **one type per field within a file**: auto-detection gives each column one type; an integer
  and a float in one field are both FLOAT64, a null goes with anything, anything else that
  differs (a string and a number, an object and a string, an array and a scalar) fails the
  load.

Findings read ``line N: path: problem``; ``path`` is the field (``heartRateValues[]`` for the
elements of an array).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from typing import Any

MAX_NESTING = 15  # levels of nested RECORD columns
MAX_NAME = 300  # characters in a column name
RESERVED_PREFIXES = ("_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLON_")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One rule a file breaks, where it first breaks it."""

    line: int
    path: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.path or '(row)'}: {self.problem}"


class _File:
    """The column types seen so far in one file, and what broke the rules."""

    def __init__(self) -> None:
        self.types: dict[str, tuple[str, int]] = {}  # path → (type, first line)
        self.findings: list[Finding] = []
        self._reported: set[tuple[str, str]] = set()

    def report(self, line: int, path: str, problem: str) -> None:
        rule = problem.split(":")[0]
        if (path, rule) not in self._reported:  # each rule once per field: the first line
            self._reported.add((path, rule))
            self.findings.append(Finding(line, path, problem))

    def row(self, line: int, value: Any) -> None:
        if not isinstance(value, dict):
            self.report(line, "", f"a JSON {_kind(value)}, not an object: a row must be one")
            return
        self._object(line, "", value, 0)

    def _object(self, line: int, path: str, value: dict[str, Any], depth: int) -> None:
        if depth > MAX_NESTING:
            self.report(line, path, f"more than {MAX_NESTING} levels of nested RECORD columns")
            return
        seen: dict[str, str] = {}
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            self._name(line, child, key)
            if key.lower() in seen:
                self.report(
                    line,
                    child,
                    f"duplicate column: {key!r} and {seen[key.lower()]!r} differ only in case",
                )
            seen[key.lower()] = key
            self._value(line, child, item, depth)

    def _value(self, line: int, path: str, value: Any, depth: int) -> None:
        if value is None:
            return
        if isinstance(value, list):
            self._type(line, path, "ARRAY")
            for item in value:
                if item is None:
                    self.report(line, f"{path}[]", "null element: an array cannot hold null")
                elif isinstance(item, list):
                    self.report(
                        line, f"{path}[]", "array of arrays: BigQuery has no ARRAY<ARRAY<...>>"
                    )
                else:
                    self._value(line, f"{path}[]", item, depth)
            return
        self._type(line, path, _kind(value))
        if isinstance(value, dict):
            self._object(line, path, value, depth + 1)

    def _name(self, line: int, path: str, name: str) -> None:
        if not _NAME.match(name):
            self.report(
                line,
                path,
                f"column name: {name!r} is not letters, digits and underscores starting with "
                "a letter or underscore",
            )
        elif len(name) > MAX_NAME:
            self.report(line, path, f"column name: longer than {MAX_NAME} characters")
        elif name.upper().startswith(RESERVED_PREFIXES):
            self.report(line, path, f"column name: {name!r} starts with a reserved prefix")

    def _type(self, line: int, path: str, kind: str) -> None:
        known = self.types.get(path)
        if known is None:
            self.types[path] = (kind, line)
            return
        first, first_line = known
        if first == kind:
            return
        if {first, kind} == {"INTEGER", "FLOAT"}:
            self.types[path] = ("FLOAT", first_line)
            return
        self.report(
            line,
            path,
            f"mixed types: {kind} here, {first} on line {first_line}; a column has one type",
        )


# JSON value → the column type auto-detection gives it. bool before int: True is an int too.
_KINDS = (
    (bool, "BOOLEAN"),
    (int, "INTEGER"),
    (float, "FLOAT"),
    (str, "STRING"),
    (dict, "RECORD"),
    (list, "ARRAY"),
)


def _kind(value: Any) -> str:
    return next((name for kind, name in _KINDS if isinstance(value, kind)), type(value).__name__)


def check_records(records: Iterable[Any]) -> list[Finding]:
    """The findings for one file's records (the first line is 1)."""
    state = _File()
    for line, record in enumerate(records, 1):
        state.row(line, record)
    return state.findings


def check_jsonl(data: bytes) -> list[Finding]:
    """The findings for one JSONL file's bytes; a line that is not JSON is a finding too."""
    state = _File()
    for line, text in enumerate(data.splitlines(), 1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            state.report(line, "", f"not JSON: {exc}")
            continue
        state.row(line, record)
    return state.findings
