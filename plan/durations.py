"""Durations as operators write them: ``5m``, ``24 hours``, ``7 days``, ``< 1 hour``."""

from __future__ import annotations

import re

UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "y": 31536000, "year": 31536000, "years": 31536000,
}

_DURATION = re.compile(r"^\s*<?\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


def parse_duration(text: str | int | float) -> int:
    """Return the number of seconds ``text`` denotes.

    Accepts a bare number of seconds, or ``<number> <unit>`` with units from seconds to
    years (``5m``, ``24 hours``, ``< 1 hour``). Raises ValueError with a message an
    operator can act on for anything else, including negative or zero durations.
    """
    if isinstance(text, bool):
        raise ValueError("expected a duration such as '5m', '24 hours' or '7 days'")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(f"{text!r} is not a duration; write e.g. '5m', '24 hours', '7 days'")
        number, unit = match.groups()
        if unit.lower() not in UNITS:
            raise ValueError(f"unknown time unit {unit!r} in {text!r}; use s, m, h, d, w or y")
        seconds = float(number) * UNITS[unit.lower()]
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return int(seconds)


def format_duration(seconds: int | float | None) -> str:
    """Render seconds the short way operators read them (``90s`` -> ``1m30s``)."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + "".join(parts[:2])
