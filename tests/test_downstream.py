"""The record adaptations the downstream needs (ela/downstream.py), and the BigQuery checker
(ela/bqcheck.py), rule by rule. The same two run over every landed data type in
tests/test_landing.py."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from ela.bqcheck import check_jsonl, check_records
from ela.connectors import data_type
from ela.connectors.base import DayRecord
from ela.downstream import lines, objects_for_rows
from ela.errors import PayloadError
from ela.sinks import jsonl_line

SLEEP = data_type("garmin", "sleep")
DAY = date(2026, 3, 29)


def findings(*records: Any) -> list[str]:
    return [str(f) for f in check_records(records)]


# -- the checker --------------------------------------------------------------------------------


def test_a_loadable_file_has_no_findings() -> None:
    assert (
        findings(
            {"id": 1, "name": "a", "tags": ["x"], "map": {"lat": 1.5}, "empty": [], "none": None},
            {"id": 2.5, "name": None, "tags": [], "map": {"lat": 2}, "items": [{"k": 1}, {"k": 2}]},
        )
        == []
    )


@pytest.mark.parametrize(
    ("records", "finding"),
    [
        ([{"v": [[1, 2], [3, 4]]}],
         "line 1: v[]: array of arrays: BigQuery has no ARRAY<ARRAY<...>>"),
        ([{"v": [1, None]}], "line 1: v[]: null element: an array cannot hold null"),
        ([{"v": [{"a": [None]}]}], "line 1: v[].a[]: null element: an array cannot hold null"),
        ([{"9lives": 1}], "line 1: 9lives: column name: '9lives' is not letters, digits and "
                          "underscores starting with a letter or underscore"),
        ([{"a": {"b-c": 1}}], "line 1: a.b-c: column name: 'b-c' is not letters, digits and "
                              "underscores starting with a letter or underscore"),
        ([{"_PARTITIONTIME": 1}], "line 1: _PARTITIONTIME: column name: '_PARTITIONTIME' starts "
                                  "with a reserved prefix"),
        ([{"x" * 301: 1}], f"line 1: {'x' * 301}: column name: longer than 300 characters"),
        ([{"Name": 1, "name": 2}], "line 1: name: duplicate column: 'name' and 'Name' differ "
                                   "only in case"),
        ([{"id": 1}, {"id": "1"}], "line 2: id: mixed types: STRING here, INTEGER on line 1; "
                                   "a column has one type"),
        ([{"a": {"b": 1}}, {"a": "x"}], "line 2: a: mixed types: STRING here, RECORD on line 1; "
                                        "a column has one type"),
        ([{"a": [1]}, {"a": 1}], "line 2: a: mixed types: INTEGER here, ARRAY on line 1; "
                                 "a column has one type"),
        ([{"a": True}, {"a": 1}], "line 2: a: mixed types: INTEGER here, BOOLEAN on line 1; "
                                  "a column has one type"),
        ([[1, 2]], "line 1: (row): a JSON ARRAY, not an object: a row must be one"),
    ],
)  # fmt: skip
def test_each_rule(records: list[Any], finding: str) -> None:
    assert findings(*records) == [finding]


def test_the_nesting_limit_is_fifteen_records() -> None:
    def nested(depth: int) -> dict[str, Any]:
        value: dict[str, Any] = {"leaf": 1}
        for _ in range(depth - 1):
            value = {"n": value}
        return {"top": value}

    assert findings(nested(15)) == []
    path = "top" + ".n" * 15
    assert findings(nested(16)) == [f"line 1: {path}: more than 15 levels of nested RECORD columns"]


def test_each_rule_is_reported_once_per_field_at_its_first_line() -> None:
    assert findings({"v": [[1]]}, {"v": [[2]]}, {"id": 1}, {"id": "a"}, {"id": "b"}) == [
        "line 1: v[]: array of arrays: BigQuery has no ARRAY<ARRAY<...>>",
        "line 4: id: mixed types: STRING here, INTEGER on line 3; a column has one type",
    ]


def test_jsonl_bytes_and_a_line_that_is_not_json() -> None:
    assert [str(f) for f in check_jsonl(b'{"a": 1}\n\n{"a": \n')] == [
        "line 3: (row): not JSON: Expecting value: line 1 column 7 (char 6)"
    ]


# -- the adaptations ----------------------------------------------------------------------------


def test_heart_rate_pairs_become_timestamp_value_objects() -> None:
    record = {
        "calendarDate": "2026-03-29",
        "heartRateValueDescriptors": [
            {"key": "timestamp", "index": 0},
            {"key": "heartrate", "index": 1},
        ],
        "heartRateValues": [[1774738800000, 61], [1774738920000, None]],
    }
    adapted = objects_for_rows(record)
    assert adapted["heartRateValues"] == [
        {"timestamp": 1774738800000, "value": 61},
        {"timestamp": 1774738920000, "value": None},
    ]
    assert adapted["heartRateValueDescriptors"] == record["heartRateValueDescriptors"]
    assert isinstance(record["heartRateValues"][0], list)  # the provider's record is not changed


def test_wider_rows_take_the_names_garmin_s_descriptors_give_them() -> None:
    # The shape of Garmin's all-day stress payload (garminconnect's dailyStress): two series,
    # each with its own descriptor list, spelled {...DescriptorIndex, ...DescriptorKey}.
    record = {
        "stressValueDescriptorsDTOList": [
            {"key": "timestamp", "index": 0},
            {"key": "stressLevel", "index": 1},
        ],
        "stressValuesArray": [[1, 25], [2, -1]],
        "bodyBatteryValueDescriptorsDTOList": [
            {"bodyBatteryValueDescriptorIndex": i, "bodyBatteryValueDescriptorKey": key}
            for i, key in enumerate(
                ["timestamp", "bodyBatteryStatus", "bodyBatteryLevel", "bodyBatteryVersion"]
            )
        ],
        "bodyBatteryValuesArray": [[1, "MEASURED", 80, 2.0]],
    }  # fmt: skip
    adapted = objects_for_rows(record)
    assert adapted["stressValuesArray"] == [
        {"timestamp": 1, "value": 25},
        {"timestamp": 2, "value": -1},
    ]
    assert adapted["bodyBatteryValuesArray"] == [
        {
            "timestamp": 1,
            "bodyBatteryStatus": "MEASURED",
            "bodyBatteryLevel": 80,
            "bodyBatteryVersion": 2.0,
        }
    ]
    assert findings(adapted) == []


def test_rows_without_descriptors_and_rows_within_rows() -> None:
    record = {
        "a": {"series": [[1, 2, 3], None, [4, 5]]},
        "deep": [{"inner": [[1, 2]]}],
        "nested": [[1, [[2, 3]]], [4, [[5, 6]]]],  # rows of one width, holding rows
    }
    assert objects_for_rows(record) == {
        "a": {
            "series": [
                {"timestamp": 1, "field_1": 2, "field_2": 3},
                {"timestamp": 4, "value": 5},  # the null row left out
            ]
        },
        "deep": [{"inner": [{"timestamp": 1, "value": 2}]}],
        "nested": [
            {"timestamp": 1, "value": [{"timestamp": 2, "value": 3}]},
            {"timestamp": 4, "value": [{"timestamp": 5, "value": 6}]},
        ],
    }


def test_records_without_rows_pass_through_as_the_same_objects() -> None:
    record = {"id": 1, "tags": ["a", "b"], "start_latlng": [48.85, 2.35], "m": {"x": [1, None]}}
    assert objects_for_rows(record) is record
    mixed = {"v": [[1, 2], 3]}  # not all rows: not an array of arrays to convert
    assert objects_for_rows(mixed) is mixed


def test_a_per_day_record_gains_date_and_data_type_after_the_provider_s_keys() -> None:
    [line] = lines(SLEEP, [DayRecord({"dailySleepDTO": {"id": 1}, "b": 2}, DAY)])
    assert line == (
        b'{"dailySleepDTO":{"id":1},"b":2,"date":"2026-03-29","data_type":"sleep"}\n'
    )  # the provider's keys first, in order
    [plain] = lines(SLEEP, [{"id": 1}])  # not a per-day record: unchanged
    assert plain == b'{"id":1}\n'
    [same] = lines(SLEEP, [DayRecord({"date": "2026-03-29"}, DAY)])  # agrees: kept
    assert same == b'{"date":"2026-03-29","data_type":"sleep"}\n'


def test_a_provider_date_of_another_day_is_not_overwritten() -> None:
    with pytest.raises(PayloadError, match=r"already has a top-level 'date' \('2026-03-28'\)"):
        list(lines(SLEEP, [DayRecord({"date": "2026-03-28"}, DAY)]))


@pytest.mark.parametrize(
    "record",
    [
        {"v": [[1, 2]]},
        {"a": {"v": [None, [1, 2]]}},
        {"a": [{"b": [[1, 2], [3, 4]]}]},
        {"text": "[[not rows]]", "v": [[1, 2]]},
    ],
)
def test_any_record_with_rows_lands_them_as_objects(record: dict[str, Any]) -> None:
    [line] = lines(SLEEP, [record])
    assert line == jsonl_line(objects_for_rows(record)) != jsonl_line(record)
    assert findings(json.loads(line)) == []


def test_a_record_that_only_looks_like_it_has_rows_lands_as_sent() -> None:
    record = {"text": "a [[wiki link]] and [null, x]", "v": [1, [2]]}
    assert list(lines(SLEEP, [record])) == [jsonl_line(record)]
