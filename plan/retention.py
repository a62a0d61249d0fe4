"""Retention as operators write it: a time window, a number of versions, or forever."""

from __future__ import annotations

import re
from dataclasses import dataclass

from drfleet.plan.durations import parse_duration


@dataclass(frozen=True)
class Retention:
    """``keep_seconds`` and ``keep_versions``; both None means keep forever."""

    text: str
    keep_seconds: int | None = None
    keep_versions: int | None = None

    @property
    def forever(self) -> bool:
        return self.keep_seconds is None and self.keep_versions is None


def parse_retention(text: str | int) -> Retention:
    """Parse ``24 hours``, ``7 days``, ``4 weeks``, ``10 versions``, ``all versions``,
    ``forever`` or ``indefinite``. Raises ValueError for anything else, including zero
    or negative amounts."""
    raw = str(text).strip()
    low = raw.lower()
    if low in ("forever", "indefinite", "indefinitely", "all", "all versions", "permanent"):
        return Retention(raw)
    m = re.fullmatch(r"(-?\d+)\s*(versions?|copies|backups)", low)
    if m:
        count = int(m.group(1))
        if count <= 0:
            raise ValueError(f"retention {raw!r}: the number of versions must be at least 1")
        return Retention(raw, keep_versions=count)
    try:
        return Retention(raw, keep_seconds=parse_duration(raw))
    except ValueError as exc:
        raise ValueError(f"retention {raw!r} is not understood ({exc}); write a duration "
                         "('24 hours', '30 days'), 'N versions' or 'forever'") from None
