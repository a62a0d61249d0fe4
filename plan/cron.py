"""A small five-field cron evaluator (UTC) used for validation, slots and simulations.

Celery beat fires the schedule; this module answers the questions beat does not: which
scheduled slot a run belongs to (for idempotency keys), which slots were missed while beat
was down, and what a schedule does over weeks of simulated time. Field semantics match
Celery's ``crontab`` (day-of-month and day-of-week are ANDed); a plan that restricts both is
rejected because classic cron ORs them and the two would disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

_NAMES = {
    4: {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
    3: {n: i + 1 for i, n in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul",
                                        "aug", "sep", "oct", "nov", "dec"])},
}
_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
_FIELD_NAMES = ["minute", "hour", "day-of-month", "month", "day-of-week"]


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message names the field."""


def _value(text: str, field: int) -> int:
    low = text.lower()
    if field in _NAMES and low in _NAMES[field]:
        return _NAMES[field][low]
    if not text.isdigit():
        raise CronError(f"{_FIELD_NAMES[field]} field: {text!r} is not a number")
    value = int(text)
    if field == 4 and value == 7:
        value = 0
    lo, hi = _RANGES[field]
    if not lo <= value <= hi:
        raise CronError(f"{_FIELD_NAMES[field]} field: {value} is outside {lo}-{hi}")
    return value


def _parse_field(text: str, field: int) -> frozenset[int]:
    lo, hi = _RANGES[field]
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{_FIELD_NAMES[field]} field: bad step {step_text!r}")
            step = int(step_text)
        if part == "*":
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, field), _value(b, field)
            if start > end:
                raise CronError(f"{_FIELD_NAMES[field]} field: range {part!r} runs backwards")
        else:
            start = _value(part, field)
            end = hi if step > 1 else start
        values.update(range(start, end + 1, step))
    if not values:
        raise CronError(f"{_FIELD_NAMES[field]} field: {text!r} matches nothing")
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression. ``prev_fire``/``next_fire`` work on aware UTC datetimes."""

    expr: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expr: str) -> "Cron":
        """Parse a 5-field expression; raises CronError naming the offending field."""
        fields = expr.split()
        if len(fields) != 5:
            raise CronError(f"cron {expr!r} has {len(fields)} fields; expected 5 "
                            "(minute hour day-of-month month day-of-week)")
        parsed = [_parse_field(f, i) for i, f in enumerate(fields)]
        if fields[2] != "*" and fields[4] != "*":
            raise CronError(f"cron {expr!r} restricts both day-of-month and day-of-week; "
                            "cron ORs them but Celery ANDs them, so restrict only one")
        return cls(" ".join(fields), *parsed)

    def _day_matches(self, day: datetime) -> bool:
        return (day.month in self.months and day.day in self.days
                and (day.isoweekday() % 7) in self.weekdays)

    def _times_on(self, day: datetime) -> list[datetime]:
        base = day.replace(hour=0, minute=0, second=0, microsecond=0)
        return [base.replace(hour=h, minute=m) for h in sorted(self.hours) for m in sorted(self.minutes)]

    def prev_fire(self, at: datetime) -> datetime | None:
        """The latest fire time <= ``at`` within the last 6 years, or None."""
        at = _utc(at)
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        for _ in range(366 * 6):
            if self._day_matches(day):
                candidates = [t for t in self._times_on(day) if t <= at]
                if candidates:
                    return candidates[-1]
            day -= timedelta(days=1)
        return None

    def next_fire(self, after: datetime) -> datetime | None:
        """The earliest fire time strictly after ``after`` within 6 years, or None."""
        after = _utc(after)
        day = after.replace(hour=0, minute=0, second=0, microsecond=0)
        for _ in range(366 * 6):
            if self._day_matches(day):
                for t in self._times_on(day):
                    if t > after:
                        return t
            day += timedelta(days=1)
        return None

    def fires_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Fire times t with start < t <= end, in order."""
        t = self.next_fire(start)
        end = _utc(end)
        while t is not None and t <= end:
            yield t
            t = self.next_fire(t)

    def typical_period(self) -> float:
        """Seconds between two consecutive fires, measured from 2026-01-01 (for bounds)."""
        first = self.next_fire(datetime(2026, 1, 1, tzinfo=timezone.utc))
        second = self.next_fire(first) if first else None
        if not first or not second:
            return 366 * 86400.0
        return (second - first).total_seconds()


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)
