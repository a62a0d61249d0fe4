"""Bandwidth limits as operators write them: ``10 MiB/s``, ``500 KB/s``, ``8 Mbit/s``."""

from __future__ import annotations

import re

_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3,
          "kbit": 1000 / 8, "mbit": 1000**2 / 8, "gbit": 1000**3 / 8}


def parse_rate(text: str | int) -> int:
    """Bytes per second of ``10 MiB/s``, ``500 KB/s``, ``8 Mbit/s``, ``1 GB/s`` (a bare
    integer is bytes per second). Raises ValueError for anything else or below 1 KiB/s."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raw = str(text).strip()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?i?b|[kmg]bit)(?:/s|ps)?", raw, re.IGNORECASE)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f"bandwidth {raw!r} is not understood; write e.g. '10 MiB/s', "
                             "'500 KB/s' or '8 Mbit/s'")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < 1024:
        raise ValueError(f"bandwidth {text!r} is below 1 KiB/s")
    return value
