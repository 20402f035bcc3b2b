"""Two configs side by side: globals, schedules, parameters, groups and services.

Both sides are validated configs, so the comparison is of meaning (``limit: 20`` is the same
whether quoted or commented), not of text. Each row says whether the two sides differ; a job or
group that exists on one side only shows ``None`` on the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ela.config import IngestionConfig, Job

V = TypeVar("V")

SECTIONS = ("global", "schedules", "parameters", "groups", "services")


@dataclasses.dataclass(frozen=True)
class Row:
    section: str
    key: str
    left: Any
    right: Any

    @property
    def differs(self) -> bool:
        return bool(self.left != self.right)

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "left": self.left, "right": self.right, "differs": self.differs}


def _job_parameters(job: Job) -> dict[str, Any]:
    """Everything about a job except its schedule (which has its own section)."""
    return {
        "service": job.service,
        "data_type": job.data_type,
        **job.params(),
        "enabled": job.enabled,
    }


def _section(
    name: str, left: Mapping[str, V], right: Mapping[str, V], value: Callable[[V], Any]
) -> list[Row]:
    """One row per key of either side (the left's order, then the right's extras); a key that
    one side lacks shows None there."""
    keys = dict.fromkeys([*left, *right])
    return [
        Row(
            name,
            key,
            value(left[key]) if key in left else None,
            value(right[key]) if key in right else None,
        )
        for key in keys
    ]


def compare(left: IngestionConfig, right: IngestionConfig) -> list[Row]:
    """Every compared value as a row, in file order, grouped by section."""
    return [
        *_section("global", left.global_.model_dump(), right.global_.model_dump(), lambda v: v),
        *_section("schedules", left.jobs, right.jobs, lambda job: job.schedule),
        *_section("parameters", left.jobs, right.jobs, _job_parameters),
        *_section("groups", left.job_groups, right.job_groups, lambda group: group.jobs),
        *_section(
            "services",
            left.services,
            right.services,
            lambda service: service.model_dump(exclude_defaults=True),
        ),
    ]


def as_json(left: IngestionConfig, right: IngestionConfig, rows: list[Row]) -> dict[str, Any]:
    return {
        "left": {"env": left.env, "path": left.path},
        "right": {"env": right.env, "path": right.path},
        "differences": sum(row.differs for row in rows),
        "sections": {
            section: [row.as_json() for row in rows if row.section == section]
            for section in SECTIONS
        },
    }


def render_cells(row: Row) -> tuple[str, str]:
    """The row's two cells for the side-by-side table.

    Parameters leave out what would only repeat itself (the task when both sides run the same
    one, ``enabled`` unless false), so the table stays narrow enough to read.
    """
    if row.section != "parameters":
        return render_value(row.left), render_value(row.right)
    left, right = dict(row.left or {}), dict(row.right or {})
    same_task = bool(left and right) and (left["service"], left["data_type"]) == (
        right["service"],
        right["data_type"],
    )
    for side in (left, right):
        if side and not same_task:
            side["task"] = f"{side['service']}.{side['data_type']}"
        side.pop("service", None)
        side.pop("data_type", None)
        if side.get("enabled") is True:
            del side["enabled"]
    cells = []
    for raw, shown in ((row.left, left), (row.right, right)):
        cells.append("-" if raw is None else render_value(shown) if shown else "(defaults)")
    return cells[0], cells[1]


def render_value(value: Any) -> str:
    """A cell of the side-by-side table: ``-`` for absent, ``k=v`` pairs, comma lists."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={render_value(v)}" for k, v in value.items()) or "{}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
