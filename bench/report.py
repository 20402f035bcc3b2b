"""The benchmark's output: a :class:`Row` per measurement, and the table of them."""

from __future__ import annotations

import dataclasses

X = "\u00d7"  # the multiplication sign of ratios


@dataclasses.dataclass
class Row:
    """One line of the table; ``ratio`` is ours ÷ baseline."""

    metric: str
    ours: float
    baseline: float | None
    unit: str
    goal: str
    met: bool | None

    @property
    def ratio(self) -> float | None:
        return self.ours / self.baseline if self.baseline else None


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("s", "ms"):
        return f"{value:.3f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "objects":
        return f"{value:,.0f} object{'' if value == 1 else 's'}"
    return f"{value:,.0f} {unit}".strip()


def table(rows: list[Row]) -> str:
    head = ("metric", "ours", "baseline", "ratio", "goal", "met?")
    body = [
        (
            r.metric,
            fmt(r.ours, r.unit),
            fmt(r.baseline, r.unit),
            "—" if r.ratio is None else f"{r.ratio:.2f}{X}",
            r.goal,
            "—" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), rule, *(line(b) for b in body)])


def section_of(row: Row) -> int:
    """The section a row belongs to: the number its metric starts with (``"4. calls/run…"``)."""
    return int(row.metric.split(".", 1)[0])
