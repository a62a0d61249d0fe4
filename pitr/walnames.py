"""PostgreSQL WAL file names and LSNs, as plain values (no I/O).

Segment ``TTTTTTTTXXXXXXXXYYYYYYYY``: timeline, then the segment number split into a
"log" part and a "seg" part, ``segno = log * segments_per_log + seg`` where
``segments_per_log = 2**32 // segment_size`` (256 for the default 16 MiB segments).
Other archived files: ``TTTTTTTT.history``, ``{segment}.{offset:08X}.backup`` and
``{segment}.partial``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drfleet.pitr.errors import InvalidRecoveryTarget, WalFileUnreadable

DEFAULT_SEGMENT_SIZE = 16 << 20

_SEGMENT = re.compile(r"([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\Z")
_WAL_FILE = re.compile(r"(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)\Z")
_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\Z")


def check_wal_name(name: str) -> str:
    """Return ``name`` if PostgreSQL could archive a file of that name; raise
    WalFileUnreadable otherwise (a path, a lowercase name, anything else)."""
    if not isinstance(name, str) or not _WAL_FILE.match(name):
        raise WalFileUnreadable(f"{name!r} is not the name of a PostgreSQL WAL file", wal_file=str(name))
    return name


def timeline_of(name: str) -> int:
    """The timeline a WAL file name belongs to (its first 8 hex digits)."""
    return int(check_wal_name(name)[:8], 16)


def is_segment(name: str) -> bool:
    return bool(_SEGMENT.match(name))


@dataclass(frozen=True, order=True)
class Segment:
    """A WAL segment: timeline and segment number (for a given segment size)."""

    timeline: int
    segno: int
    segment_size: int = DEFAULT_SEGMENT_SIZE

    @classmethod
    def parse(cls, name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> "Segment":
        found = _SEGMENT.match(name)
        if not found:
            raise WalFileUnreadable(f"{name!r} is not a WAL segment name", wal_file=name)
        tli, log, seg = (int(part, 16) for part in found.groups())
        return cls(tli, log * segments_per_log(segment_size) + seg, segment_size)

    @property
    def name(self) -> str:
        per = segments_per_log(self.segment_size)
        return f"{self.timeline:08X}{self.segno // per:08X}{self.segno % per:08X}"

    def next(self) -> "Segment":
        return Segment(self.timeline, self.segno + 1, self.segment_size)

    def start_lsn(self) -> int:
        return self.segno * self.segment_size


def segments_per_log(segment_size: int) -> int:
    return (1 << 32) // segment_size


def parse_lsn(text: str) -> int:
    """``'0/3000060'`` -> 50331744. Raises InvalidRecoveryTarget for anything else."""
    found = _LSN.match(text.strip()) if isinstance(text, str) else None
    if not found:
        raise InvalidRecoveryTarget(f"{text!r} is not an LSN (like 0/3000060)")
    return (int(found.group(1), 16) << 32) | int(found.group(2), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def segment_of_lsn(lsn: int, timeline: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Segment:
    return Segment(timeline, lsn // segment_size, segment_size)


def parse_history(text: str) -> list[tuple[int, int]]:
    """A timeline history file's entries: ``[(parent_timeline, switch_lsn), ...]``."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 2:
            entries.append((int(parts[0]), parse_lsn(parts[1])))
    return entries
