"""Policy triggers as operators write them, normalised to one of five kinds.

* ``cron``: a five-field UTC cron schedule, written as cron or as words: ``hourly``,
  ``daily``, ``daily at 02:00``, ``weekly``, ``weekly on sunday at 03:00``, ``monthly``,
  ``quarterly``, ``bi-annually``, ``yearly``, ``every 6 hours``, ``every 15 minutes``.
* ``interval``: ``every N seconds`` — sub-minute schedules for tests and compressed-clock
  soak runs; cron cannot express them.
* ``continuous``: real-time sync (``continuous``, ``real-time``).
* ``on-change``: a backup when the content changes (``on-change``, ``on change``).
* ``on-event``: a backup when something happens (``on-event``, ``on deployment``,
  ``on-event: deployment``), started by ``drfleet trigger`` or the trigger task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from drfleet import settings
from drfleet.plan.cron import Cron, CronError

TRIGGER_KINDS = ("cron", "interval", "continuous", "on-change", "on-event")

_WEEKDAYS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4,
             "friday": 5, "saturday": 6, "sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4,
             "fri": 5, "sat": 6}
_AT = r"(?:\s+(?:at\s+)?(?P<hh>\d{1,2})(?::(?P<mm>\d{2}))?\s*(?P<ampm>am|pm)?)?"
_ON = r"(?:\s+on\s+(?P<dow>[a-z]+))?"
_WORD_CRONS = {
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "nightly": "0 0 * * *",
    "weekly": "0 0 * * 0",
    "monthly": "0 0 1 * *",
    "quarterly": "0 0 1 1,4,7,10 *",
    "bi-annually": "0 0 1 1,7 *",
    "biannually": "0 0 1 1,7 *",
    "semi-annually": "0 0 1 1,7 *",
    "twice a year": "0 0 1 1,7 *",
    "yearly": "0 0 1 1 *",
    "annually": "0 0 1 1 *",
}


MAX_CATCHUP_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Trigger:
    """A normalised trigger. ``cron`` is set for kind ``cron``, ``interval_seconds`` for
    ``interval``, ``event`` for ``on-event``."""

    kind: str
    text: str
    cron: str | None = None
    interval_seconds: int | None = None
    event: str | None = None

    @property
    def scheduled(self) -> bool:
        """True when beat fires this trigger on a clock."""
        return self.kind in ("cron", "interval")

    def slot_for(self, when: datetime) -> datetime | None:
        """The scheduled slot a run sent at ``when`` belongs to (the latest fire <= when)."""
        when = when.astimezone(timezone.utc) if when.tzinfo else when.replace(tzinfo=timezone.utc)
        if self.kind == "cron":
            return Cron.parse(self.cron).prev_fire(when)
        if self.kind == "interval":
            step = self.interval_seconds
            return datetime.fromtimestamp((int(when.timestamp()) // step) * step, timezone.utc)
        return None

    def fires_between(self, start: datetime, end: datetime, limit: int = 100_000) -> list[datetime]:
        """Slots s with start < s <= end (at most ``limit``)."""
        out: list[datetime] = []
        if self.kind == "cron":
            for t in Cron.parse(self.cron).fires_between(start, end):
                out.append(t)
                if len(out) >= limit:
                    break
        elif self.kind == "interval":
            step = self.interval_seconds
            t = (int(start.timestamp()) // step + 1) * step
            while t <= end.timestamp() and len(out) < limit:
                out.append(datetime.fromtimestamp(t, timezone.utc))
                t += step
        return out

    def catchup_window(self) -> float:
        """How late a slot may still run after it was due: half a period, within [60 s, 6 h]
        (DRFLEET_CATCHUP_SECONDS overrides it)."""
        configured = settings.CATCHUP_SECONDS.get()
        if configured is not None:
            return configured
        period = self.period_seconds() or 3600.0
        return max(min(period / 2, MAX_CATCHUP_SECONDS), min(60.0, period))

    def period_seconds(self) -> float | None:
        if self.kind == "cron":
            return Cron.parse(self.cron).typical_period()
        if self.kind == "interval":
            return float(self.interval_seconds)
        return None


def _at(match: re.Match, default_hour: int = 0) -> tuple[int, int]:
    if not match.group("hh"):
        return default_hour, 0
    hour, minute = int(match.group("hh")), int(match.group("mm") or 0)
    ampm = match.group("ampm")
    if ampm == "pm" and hour < 12:
        hour += 12
    if ampm == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        raise ValueError(f"time {match.group('hh')}:{match.group('mm') or '00'} is not a time of day")
    return hour, minute


def parse_trigger(text: str) -> Trigger:
    """Parse a trigger phrase; raises ValueError saying which forms are accepted."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("trigger must be a phrase such as 'hourly', 'daily at 02:00', "
                         "'every 6 hours', a 5-field cron, 'continuous', 'on-change' or 'on-event'")
    raw = text.strip()
    low = re.sub(r"\s+", " ", raw.lower())
    low = re.sub(r"\s*\(([^)]*)\)", r" \1", low).strip()  # "weekly (sunday 3 am)" -> "weekly sunday 3 am"
    if low in ("continuous", "real-time", "realtime", "real time"):
        return Trigger("continuous", raw)
    if low in ("on-change", "on change", "on_change"):
        return Trigger("on-change", raw)
    m = re.fullmatch(r"on[- _]event(?::\s*(?P<ev>[\w.-]+))?|on (?P<ev2>[\w.-]+)", low)
    if m:
        return Trigger("on-event", raw, event=m.group("ev") or m.group("ev2") or "manual")
    m = re.fullmatch(r"every (?P<n>\d+) ?(?P<unit>s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)", low)
    if m:
        n, unit = int(m.group("n")), m.group("unit")[0]
        if n <= 0:
            raise ValueError(f"trigger {raw!r}: the interval must be positive")
        if unit == "s":
            return Trigger("interval", raw, interval_seconds=n)
        if unit == "m":
            if 60 % n:
                raise ValueError(f"trigger {raw!r}: minutes must divide 60 (1, 2, 5, 10, 15, 20, 30)")
            return Trigger("cron", raw, cron="* * * * *" if n == 1 else f"*/{n} * * * *")
        if 24 % n:
            raise ValueError(f"trigger {raw!r}: hours must divide 24 (1, 2, 3, 4, 6, 8, 12)")
        return Trigger("cron", raw, cron="0 * * * *" if n == 1 else f"0 */{n} * * *")
    m = re.fullmatch(r"(?P<word>hourly|daily|nightly|weekly|monthly|quarterly|bi-annually|biannually"
                     r"|semi-annually|twice a year|yearly|annually)" + _ON + r"(?:\s+(?P<dow2>(?!at\b)[a-z]+))?" + _AT, low)
    if m:
        word = m.group("word")
        fields = _WORD_CRONS[word].split()
        dow = m.group("dow") or m.group("dow2")
        if dow:
            if word != "weekly" or dow not in _WEEKDAYS:
                raise ValueError(f"trigger {raw!r}: 'on DAY' goes with weekly, e.g. 'weekly on sunday at 03:00'")
            fields[4] = str(_WEEKDAYS[dow])
        if m.group("hh"):
            if word == "hourly":
                raise ValueError(f"trigger {raw!r}: hourly takes no time of day; use a cron minute")
            hour, minute = _at(m)
            fields[0], fields[1] = str(minute), str(hour)
        return Trigger("cron", raw, cron=" ".join(fields))
    if re.fullmatch(r"[\d*/,\-a-z]+( [\d*/,\-a-z]+)*", low) and re.search(r"[\d*]", low):
        try:
            cron = Cron.parse(raw)
        except CronError as exc:
            raise ValueError(str(exc)) from None
        return Trigger("cron", raw, cron=cron.expr)
    raise ValueError(f"trigger {raw!r} is not understood; write 'hourly', 'daily at 02:00', "
                     "'weekly on sunday at 03:00', 'every 6 hours', a 5-field cron such as "
                     "'0 3 * * 0', 'continuous', 'on-change' or 'on-event: deployment'")
