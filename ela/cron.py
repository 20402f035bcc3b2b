"""Five-field cron expressions: parsing with precise errors, and fire times in a timezone.

This is the single interpretation of a job's ``cron`` string. Validation, ``ela schedule``,
``ela status`` and beat itself (``beat_schedules.JobCrontab`` asks it for the next tick) all
use it, so what is shown is what fires.

Daylight-saving time, for a zone such as Europe/Paris (docs/configuration.md):

- a wall time that occurs twice (autumn, 02:00-02:59) fires once, on its first pass;
- a wall time the clocks skip (spring, 02:00-02:59) is skipped by a job whose hour field
  starts with ``*`` (``0 * * * *``, ``0 */2 * * *``): it keeps to its wall-clock marks, and its
  next tick comes within the step. A job at fixed hours (``30 2 * * *``) fires an hour later by
  the clock (03:30), at the instant the skipped time would have had: as Celery's own crontab
  does, and so a daily job does not lose its day.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message says which field and why."""


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, tuple(_MONTHS), 1),
    _Field("day-of-week", 0, 7, tuple(_DAYS), 0),
)


@dataclasses.dataclass(frozen=True)
class Cron:
    """A parsed cron expression; ``fields`` keeps the original text of each of the five fields."""

    expression: str
    fields: tuple[str, str, str, str, str]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday

    def matches_day(self, day: date) -> bool:
        return (
            day.month in self.months
            and day.day in self.days_of_month
            and (day.isoweekday() % 7) in self.days_of_week
        )

    @property
    def hour_steps(self) -> bool:
        """The hour field counts from ``*`` (``*``, ``*/N``): ticks follow the wall clock."""
        return self.fields[1].startswith("*")

    def day_runs(self, day: date, tz: ZoneInfo) -> tuple[datetime, ...]:
        """The day's fire times (``day`` in ``tz``) as aware UTC datetimes, in order."""
        return _day_runs(self, day, tz)

    def next_runs(self, tz: ZoneInfo, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` fire times strictly after ``after``, as aware UTC datetimes."""
        if count <= 0:
            return []
        runs: list[datetime] = []
        for run in self._iter_from(tz, after):
            runs.append(run)
            if len(runs) == count:
                break
        return runs

    def previous_run(self, tz: ZoneInfo, at: datetime) -> datetime:
        """The latest fire time at or before ``at`` (UTC), searching back at most ~14 months."""
        # A day's runs may spill into the next local day (a skipped wall time fires an hour
        # later), so the search starts a day ahead.
        day = at.astimezone(tz).date() + timedelta(days=1)
        for _ in range(430):
            runs = self.day_runs(day, tz)
            before = bisect.bisect_right(runs, at)
            if before:
                return runs[before - 1]
            day -= timedelta(days=1)
        raise CronError(f"{self.expression!r} has not fired in the last 14 months")

    def _iter_from(self, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
        day = after.astimezone(tz).date() - timedelta(days=1)
        for _ in range(366 * 5):  # every valid expression fires within 5 years (Feb 29)
            runs = self.day_runs(day, tz)
            yield from runs[bisect.bisect_right(runs, after) :]
            day += timedelta(days=1)

    def min_gap(self, tz: ZoneInfo, start: datetime, samples: int = 24) -> timedelta:
        """The shortest gap between consecutive fires over the next ``samples`` fires."""
        runs = self.next_runs(tz, start, samples)
        gaps = [b - a for a, b in itertools.pairwise(runs)]
        return min(gaps) if gaps else timedelta(days=366)


@functools.lru_cache(maxsize=64)
def _day_runs(cron: Cron, day: date, tz: ZoneInfo) -> tuple[datetime, ...]:
    """:meth:`Cron.day_runs`, kept: beat asks for the same days every few seconds, and an
    every-minute cron has 1,440 runs a day to compute (12 ms)."""
    if not cron.matches_day(day):
        return ()
    runs = {
        run
        for hour in cron.hours
        for minute in cron.minutes
        if (run := _to_utc(day, hour, minute, tz, skip_missing=cron.hour_steps)) is not None
    }
    return tuple(sorted(runs))


def _to_utc(
    day: date, hour: int, minute: int, tz: ZoneInfo, *, skip_missing: bool
) -> datetime | None:
    """Wall time in ``tz`` to UTC: a repeated wall time's first pass (``fold=0``); a skipped one
    at the offset before the jump (an hour later by the clock), or None with ``skip_missing``."""
    local = datetime.combine(day, time(hour, minute), tzinfo=tz)
    as_utc = local.astimezone(UTC)
    if skip_missing and as_utc.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return as_utc


def parse(expression: str) -> Cron:
    """Parse a five-field cron expression (minute hour day-of-month month day-of-week).

    Raises:
        CronError: naming the field and the problem, e.g. ``minute: 61 is outside 0-59``.
    """
    if not isinstance(expression, str):
        raise CronError(f"expected a cron string like '0 * * * *', got {expression!r}")
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(
            f"{expression!r} has {len(parts)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week), e.g. '0 */2 * * *'"
        )
    values = [_parse_field(text, spec) for text, spec in zip(parts, _FIELDS, strict=True)]
    dow = frozenset(d % 7 for d in values[4])
    if parts[2] != "*" and parts[4] != "*":
        # Cron fires when EITHER day field matches, Celery's crontab only when BOTH do.
        raise CronError(
            f"{expression!r} restricts both day-of-month and day-of-week, which cron and "
            "Celery read differently; restrict only one of them"
        )
    return Cron(
        expression=expression,
        fields=(parts[0], parts[1], parts[2], parts[3], parts[4]),
        minutes=frozenset(values[0]),
        hours=frozenset(values[1]),
        days_of_month=frozenset(values[2]),
        months=frozenset(values[3]),
        days_of_week=dow,
    )


def _parse_field(text: str, spec: _Field) -> set[int]:
    result: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{spec.name}: empty item in {text!r}")
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{spec.name}: step {step_text!r} must be a positive integer")
            step = int(step_text)
        if base == "*":
            low, high = spec.low, spec.high
        elif "-" in base:
            start_text, _, end_text = base.partition("-")
            low, high = _value(start_text, spec), _value(end_text, spec)
            if low > high:
                raise CronError(f"{spec.name}: range {base!r} runs backwards")
        else:
            low = high = _value(base, spec)
            if step_text:
                high = spec.high
        result.update(range(low, high + 1, step))
    return result


def _value(text: str, spec: _Field) -> int:
    lowered = text.lower()
    if lowered in spec.names:
        return spec.names.index(lowered) + spec.name_base
    if not text.isdigit():
        raise CronError(f"{spec.name}: {text!r} is not a number")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise CronError(f"{spec.name}: {value} is outside {spec.low}-{spec.high}")
    return value
