"""Scheduled slots that never ran (beat down, catch-up bound exceeded), where an operator
sees them: ``drfleet status`` and ``drfleet schedule --missed`` read this stream."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Iterator

import redis

from drfleet.state.store import key, state_client

MISSED_STREAM = key("missed-slots")


def record_missed(entry: str, slot: datetime, reason: str, *, client: redis.Redis | None = None) -> None:
    client = client or state_client()
    client.xadd(MISSED_STREAM, {"entry": entry, "slot": slot.isoformat(), "reason": reason,
                                "recorded_at": f"{time.time():.3f}"}, maxlen=100_000, approximate=True)


def missed_slots(*, client: redis.Redis | None = None, limit: int = 10_000) -> Iterator[dict]:
    client = client or state_client()
    for _, fields in client.xrange(MISSED_STREAM, count=limit):
        yield {k.decode(): v.decode() for k, v in fields.items()}
