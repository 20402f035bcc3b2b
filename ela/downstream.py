"""What the downstream loaders need of a landed record: the one place records are changed.

Records land as the provider sent them, except for three adaptations the origin's loaders and
dbt models depend on (docs/landing.md):

1. **Per-day records** (those a connector yields as :class:`DayRecord`: Garmin sleep, heart
   rate, and any per-day type to come) gain a top-level ``date`` (``YYYY-MM-DD``, the calendar
   day asked for) and ``data_type``. The origin's fetchers added ``date``; its dbt staging
   models filter ``WHERE date IS NOT NULL`` and deduplicate by it, and read ``data_type``.
2. **Arrays of arrays become arrays of objects**, because BigQuery has no ``ARRAY<ARRAY<>>``
   (:mod:`ela.bqcheck`). Each row ``[a, b, ...]`` becomes one object:

   - a two-field row whose first field is a time stamp becomes
     ``{"timestamp": a, "value": b}``: the shape the origin's loader gave Garmin heart rate's
     ``heartRateValues`` and its dbt models read (Garmin's descriptors call the second field
     ``heartrate``, ``stressLevel``, ...; the downstream reads ``value``);
   - any other row takes its field names from the payload's own descriptors, the sibling list
     Garmin sends beside each series (``heartRateValueDescriptors``,
     ``bodyBatteryValueDescriptorsDTOList``: ``{"key": "timestamp", "index": 0}`` or
     ``{"...DescriptorKey": ..., "...DescriptorIndex": ...}``), and ``field_{i}`` for a
     position no descriptor names;
   - without descriptors, the first field is taken to be the time stamp (every series of
     this kind Garmin sends starts with one);
   - a null row is left out: it holds neither time stamp nor value, and an array cannot hold
     null in BigQuery;
   - Strava's ``latlng`` stream (``{"latlng": {"data": [[lat, lng], ...]}}``, the only array of
     arrays Strava sends) becomes ``{"lat": ..., "lng": ...}`` objects: its rows hold no time
     stamp (the ``time`` stream beside it does, at the same index).

3. **Maps keyed by ids become arrays of entries**, in per-day records: an object whose keys
   are all ids, not column names (Garmin training status keeps its parts under the device id:
   ``"latestTrainingStatusData": {"3442975842": {...}}``) becomes
   ``[{"key": "3442975842", "value": {...}}, ...]``. BigQuery column names must start with a
   letter or underscore, and an id as a column would make one column per device; the
   key/value entries are how BigQuery itself loads a map (Avro and Parquet maps).

Nothing else is touched: key order, numbers and strings stay as sent.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from ela.connectors.base import DataType, DayRecord, Record
from ela.errors import PayloadError
from ela.sinks import jsonl_line

# Series whose rows are named by the key that holds them (``{key: {"data": rows}}``).
_NAMED_ROWS = {"latlng": {0: "lat", 1: "lng"}}
_NESTED = frozenset({list, dict})
_SUFFIXES = ("ValuesArray", "ValueArray", "Values", "Array", "s")
# In compact JSON (no spaces), where an array may hold an array: ``[[`` or ``[null,null,[``.
_ROWS = re.compile(rb"\[(?:null,)*\[")
_COLUMN = re.compile(r"^[A-Za-z_]")  # a key that can be a BigQuery column name starts so
# In compact JSON, a key (or a string in an array) that does not start as a column name does.
_ID_KEY = re.compile(rb'[{,]"(?![A-Za-z_])')


def lines(data_type: DataType, records: Iterable[Record]) -> Iterator[bytes]:
    """``records`` as the JSON Lines that land, with the downstream's adaptations applied.

    Walking every record for arrays of arrays would cost a landing as much CPU as writing it
    (measured: 50 µs a Spotify track against 8 µs to write it). The line is written first and
    searched instead (1 µs): compact JSON holds an array of arrays only where an array opens
    right inside another, after nulls at most (:data:`_ROWS`), and a key that cannot be a
    column only right after ``{`` or ``,`` (:data:`_ID_KEY`); only records with one are walked
    and rewritten. A per-day record is written again with its ``date`` and ``data_type``.
    """
    for record in records:
        line = jsonl_line(record)
        adapted = objects_for_rows(record) if _ROWS.search(line) else record
        if isinstance(record, DayRecord):
            if _ID_KEY.search(line):
                adapted = entries_for_id_maps(adapted)
            adapted = dict(adapted) if adapted is record else adapted  # stamped: not the caller's
            yield jsonl_line(stamp_day(adapted, record.day, data_type.name))
        else:
            yield line if adapted is record else jsonl_line(adapted)


def stamp_day(record: Record, day: date, data_type: str) -> Record:
    """Add the top-level ``date`` and ``data_type`` of a per-day record.

    Raises:
        PayloadError: the provider's record already has one of them with another value;
            overwriting it would lose what the provider sent.
    """
    for key, value in (("date", day.isoformat()), ("data_type", data_type)):
        if key in record and record[key] != value:
            raise PayloadError(
                f"{data_type} {day}: the record already has a top-level {key!r} "
                f"({record[key]!r}); it cannot also carry the {key} the downstream reads"
            )
        record[key] = value
    return record


def objects_for_rows(value: Any) -> Any:
    """``value`` with every array of arrays turned into an array of objects (see module doc).

    Returns the same object when nothing changes, so most records are not copied.
    """
    if isinstance(value, dict):
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            new: Any
            if isinstance(item, list) and _is_rows(item):
                new = _row_objects(item, _names(value, key))
            elif key in _NAMED_ROWS and isinstance(item, dict) and _named_rows(item):
                rows = [row for row in item["data"] if row]
                new = {**item, "data": _row_objects(rows, _NAMED_ROWS[key])}
            elif isinstance(item, (dict, list)):
                new = objects_for_rows(item)
            else:
                continue
            if new is not item:
                changed = changed if changed is not None else dict(value)
                changed[key] = new
        return value if changed is None else changed
    if isinstance(value, list):
        if _is_rows(value):
            return _row_objects(value, {})
        items = [objects_for_rows(item) for item in value]
        same = all(new is old for new, old in zip(items, value, strict=True))
        return value if same else items
    return value


def _named_rows(series: dict[str, Any]) -> bool:
    data = series.get("data")
    return isinstance(data, list) and _is_rows(data)


def entries_for_id_maps(value: Any) -> Any:
    """``value`` with every object keyed only by ids turned into key/value entries (see module
    doc). Returns the same object when nothing changes."""
    if isinstance(value, dict):
        if value and not any(_COLUMN.match(key) for key in value):
            return [{"key": key, "value": entries_for_id_maps(item)} for key, item in value.items()]
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                new = entries_for_id_maps(item)
                if new is not item:
                    changed = changed if changed is not None else dict(value)
                    changed[key] = new
        return value if changed is None else changed
    if isinstance(value, list):
        items = [entries_for_id_maps(item) for item in value]
        same = all(new is old for new, old in zip(items, value, strict=True))
        return value if same else items
    return value


def _is_rows(items: list[Any]) -> bool:
    """An array of arrays (null entries aside), with at least one array in it."""
    return any(isinstance(item, list) for item in items) and all(
        isinstance(item, list) or item is None for item in items
    )


def _row_objects(rows: list[Any], names: dict[int, str]) -> list[dict[str, Any]]:
    """Each row of a series as an object (null rows left out).

    A series is thousands of rows of the same width holding scalars (a time stamp, a level):
    those take one list of keys, zipped with each row. Anything else goes row by row.
    """
    rows = [row for row in rows if row is not None]
    widths = {len(row) for row in rows}
    # Every field's type, in C (map, not a generator): a year of stress is a million fields.
    nested = any(map(_NESTED.__contains__, map(type, itertools.chain.from_iterable(rows))))
    if len(widths) == 1 and not nested:
        keys = _keys(widths.pop(), names)
        return [dict(zip(keys, row, strict=True)) for row in rows]
    return [_row_object(row, names) for row in rows]


def _keys(width: int, names: dict[int, str]) -> list[str]:
    """A row's field names: a time stamp and a value, else the descriptors' by position."""
    if width == 2 and names.get(0, "timestamp") == "timestamp":
        return ["timestamp", "value"]
    names = names or {0: "timestamp"}
    return [names.get(i, f"field_{i}") for i in range(width)]


def _row_object(row: list[Any], names: dict[int, str]) -> dict[str, Any]:
    fields = [objects_for_rows(field) for field in row]
    return dict(zip(_keys(len(fields), names), fields, strict=True))


def _names(parent: dict[str, Any], key: str) -> dict[int, str]:
    """The field names Garmin's descriptors give the series ``parent[key]``, by position."""
    stem = next((key[: -len(s)] for s in _SUFFIXES if key.endswith(s) and len(key) > len(s)), key)
    for other, descriptors in parent.items():
        if other == key or "Descriptor" not in other or not other.startswith(stem):
            continue
        if isinstance(descriptors, list):
            names = dict(_descriptor(d) for d in descriptors if isinstance(d, dict))
            names.pop(-1, None)
            if names:
                return names
    return {}


def _descriptor(entry: dict[str, Any]) -> tuple[int, str]:
    """(index, key) of one descriptor, whichever of Garmin's two spellings it uses."""
    index = key = None
    for name, value in entry.items():
        lowered = name.lower()
        if lowered.endswith("index") and isinstance(value, int):
            index = value
        elif lowered.endswith("key") and isinstance(value, str):
            key = value
    return (index, key) if index is not None and key is not None else (-1, "")
