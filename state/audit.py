"""The append-only audit log: who or what started an operation, when, what it touched
and how it ended. A Redis stream (``drfleet:audit``): entries are only ever appended."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import redis

from drfleet.state.store import key, state_client

AUDIT_STREAM = key("audit")


def record(action: str, *, actor: str, outcome: str, client: redis.Redis | None = None,
           **details: Any) -> str:
    """Append one audit record; returns its id. ``details`` must hold names and ids only."""
    client = client or state_client()
    fields = {"action": action, "actor": actor, "outcome": outcome, "at": f"{time.time():.3f}",
              "details": json.dumps(details, sort_keys=True, default=str)}
    return client.xadd(AUDIT_STREAM, fields).decode()


def record_many(action: str, details: list[dict[str, Any]], *, actor: str, outcome: str,
                client: redis.Redis | None = None) -> list[str]:
    """Append one audit record per item of ``details`` in one round trip (a pipeline);
    returns their ids. For bulk operations (prune) that audit every item."""
    if not details:
        return []
    pipe = (client or state_client()).pipeline(transaction=False)
    at = f"{time.time():.3f}"
    for item in details:
        pipe.xadd(AUDIT_STREAM, {"action": action, "actor": actor, "outcome": outcome, "at": at,
                                 "details": json.dumps(item, sort_keys=True, default=str)})
    return [entry_id.decode() for entry_id in pipe.execute()]


def entries(*, action: str | None = None, since: float | None = None, limit: int = 1000,
            newest_first: bool = False, until: float | None = None, actor: str | None = None,
            client: redis.Redis | None = None, **match: str) -> Iterator[dict]:
    """Audit records at or after ``since`` (and before ``until``), oldest first (newest first
    with ``newest_first``), that match ``action``, ``actor`` and the detail values in
    ``match``; at most ``limit`` of them. The filters apply before the limit: the stream
    is read in pages until ``limit`` matching records are found or it ends."""
    client = client or state_client()
    low = f"{int(since * 1000)}-0" if since else "-"
    high = f"{int(until * 1000)}-0" if until else "+"
    filtered = bool(action or actor or match)
    found, page = 0, 5000 if filtered else max(100, min(limit, 1000))
    want_action, want_actor = (action.encode() if action else None), (actor.encode() if actor else None)
    cursor = high if newest_first else low
    while found < limit:
        if newest_first:
            batch = client.xrevrange(AUDIT_STREAM, max=cursor, min=low, count=page)
        else:
            batch = client.xrange(AUDIT_STREAM, min=cursor, max=high, count=page)
        for entry_id, fields in batch:
            if want_action and fields.get(b"action") != want_action:
                continue  # checked before anything is decoded: a long log is read fast
            if want_actor and fields.get(b"actor") != want_actor:
                continue
            rec = _decode(entry_id, fields)
            if any(str(rec["details"].get(k)) != v for k, v in match.items()):
                continue
            yield rec
            found += 1
            if found >= limit:
                return
        if len(batch) < page:
            return
        cursor = "(" + batch[-1][0].decode()   # exclusive: the next page starts after the last id


def _decode(entry_id: bytes, fields: dict) -> dict:
    rec = {k.decode(): v.decode() for k, v in fields.items()}
    rec["id"] = entry_id.decode()
    rec["details"] = json.loads(rec["details"])
    rec["at"] = float(rec["at"])
    return rec
