"""The connector registry: every service and its data types.

Importing this is cheap: provider libraries are imported only when a client is opened, so a
worker serving one provider never pays for the others.
"""

from __future__ import annotations

from ela.connectors.base import DataType, FetchContext, Record, Service
from ela.connectors.garmin import garmin
from ela.connectors.spotify import spotify
from ela.connectors.strava import strava
from ela.connectors.todoist import todoist

SERVICES: dict[str, Service[object]] = {
    s.name: s  # type: ignore[misc]
    for s in (spotify, strava, garmin, todoist)
}


def data_type(service: str, name: str) -> DataType:
    """The registered data type; KeyError if unknown (config validation reports it first)."""
    return SERVICES[service].data_types[name]


def all_data_types() -> list[DataType]:
    return [dt for s in SERVICES.values() for dt in s.data_types.values()]


__all__ = ["SERVICES", "DataType", "FetchContext", "Record", "Service", "all_data_types"]
