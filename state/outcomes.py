"""The latest outcome of each recurring job, kept in Redis so that metrics survive worker
restarts and every worker's exporter reports the same facts.

* ``drfleet:outcome:backup`` field ``{dataset}|{policy}``: the last backup run
  (``ok``, ``at``, ``last_success_at``, ``seconds``, ``bytes``, ``region``).
* ``drfleet:outcome:copy`` field ``{dataset}|{location}``: the last copy to a location.
* ``drfleet:outcome:size`` field ``{dataset}|{policy}``: the last size-anomaly check.

Written by the worker (task signals and the verify task); read by the metrics exporter
and the report. Names, numbers and times only.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from drfleet.state.store import key, state_client

BACKUP = key("outcome", "backup")
COPY = key("outcome", "copy")
SIZE = key("outcome", "size")


def record_backup(dataset: str, policy: str, region: str, *, ok: bool, seconds: float | None = None,
                  size: int | None = None, at: float | None = None,
                  client: redis.Redis | None = None) -> dict:
    """Store the outcome of one backup run; a failure keeps the last success time."""
    client = client or state_client()
    at = time.time() if at is None else at
    field = f"{dataset}|{policy}"
    previous = _load(client.hget(BACKUP, field))
    value = {"dataset": dataset, "policy": policy, "region": region, "ok": ok, "at": at,
             "seconds": seconds, "bytes": size if ok else previous.get("bytes"),
             "last_success_at": at if ok else previous.get("last_success_at")}
    client.hset(BACKUP, field, json.dumps(value))
    return value


def record_copy(dataset: str, location: str, *, ok: bool, at: float | None = None,
                reason: str = "", client: redis.Redis | None = None) -> dict:
    value = {"dataset": dataset, "location": location, "ok": ok,
             "at": time.time() if at is None else at, "reason": reason[:300]}
    (client or state_client()).hset(COPY, f"{dataset}|{location}", json.dumps(value))
    return value


def record_size_check(dataset: str, policy: str, *, flagged: bool, backup_id: str, size: int,
                      baseline: float | None, at: float | None = None,
                      client: redis.Redis | None = None) -> dict:
    value = {"dataset": dataset, "policy": policy, "flagged": flagged, "backup_id": backup_id,
             "size": size, "baseline": baseline, "at": time.time() if at is None else at}
    (client or state_client()).hset(SIZE, f"{dataset}|{policy}", json.dumps(value))
    return value


def backups(*, client: redis.Redis | None = None) -> list[dict]:
    return _all(BACKUP, client)


def copies(*, client: redis.Redis | None = None) -> list[dict]:
    return _all(COPY, client)


def size_checks(*, client: redis.Redis | None = None) -> list[dict]:
    return _all(SIZE, client)


def _all(name: str, client: redis.Redis | None) -> list[dict]:
    raw = (client or state_client()).hgetall(name)
    return [json.loads(v) for _, v in sorted(raw.items())]


def _load(raw: bytes | None) -> dict[str, Any]:
    return json.loads(raw) if raw else {}
