"""Drill records: what a drill did, step by step, and how it ended.

One JSON document per drill (``drfleet:drill:{drill_id}``) and a sorted set of drill ids
by start time (``drfleet:drills``), so the report reads a time range in one query. A
record holds names, ids, times and reasons only, never secrets.

Results: ``passed``, ``failed`` (with a reason), ``not-available`` (the drill kind cannot
run on this fleet yet, e.g. no failover runbook), ``running`` while it runs.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from drfleet.state.store import key, state_client
from drfleet.statuses import DrillResult

INDEX = key("drills")
RESULTS = tuple(DrillResult)


def _drill_key(drill_id: str) -> str:
    return key("drill", drill_id)


@dataclass
class DrillStep:
    """One step of a drill: ``ok`` is None while it runs."""

    name: str
    started_at: float
    ended_at: float | None = None
    ok: bool | None = None
    detail: str = ""


@dataclass
class DatasetOutcome:
    """What a drill achieved for one dataset: restored from where, how fast, how fresh."""

    dataset: str
    ok: bool
    reason: str = ""
    backup_id: str | None = None
    location: str | None = None
    rto_seconds: float | None = None
    rpo_seconds: float | None = None


@dataclass
class DrillRecord:
    kind: str
    region: str
    drill_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    scope: str | None = None
    scenario: str | None = None
    actor: str = "api"
    task_id: str | None = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    result: str = DrillResult.RUNNING
    reason: str = ""
    steps: list[DrillStep] = field(default_factory=list)
    datasets: list[DatasetOutcome] = field(default_factory=list)
    rto_seconds: float | None = None
    rpo_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DrillRecord":
        data = dict(data)
        data["steps"] = [DrillStep(**s) for s in data.get("steps", [])]
        data["datasets"] = [DatasetOutcome(**d) for d in data.get("datasets", [])]
        return cls(**data)

    @property
    def passed(self) -> bool:
        return self.result == DrillResult.PASSED


def save(record: DrillRecord, *, client: redis.Redis | None = None) -> DrillRecord:
    """Store (or overwrite) ``record``; returns it. Raises ValueError for an unknown result."""
    if record.result not in RESULTS:
        raise ValueError(f"unknown drill result {record.result!r}; results are {', '.join(RESULTS)}")
    client = client or state_client()
    pipe = client.pipeline()
    pipe.set(_drill_key(record.drill_id), json.dumps(record.to_json(), sort_keys=True))
    pipe.zadd(INDEX, {record.drill_id: record.started_at})
    pipe.execute()
    return record


def get(drill_id: str, *, client: redis.Redis | None = None) -> DrillRecord | None:
    raw = (client or state_client()).get(_drill_key(drill_id))
    return DrillRecord.from_json(json.loads(raw)) if raw else None


def history(*, since: float | None = None, until: float | None = None, kind: str | None = None,
            client: redis.Redis | None = None) -> list[DrillRecord]:
    """Drills started in [since, until), oldest first, optionally of one kind."""
    client = client or state_client()
    ids = client.zrangebyscore(INDEX, since if since is not None else "-inf",
                               f"({until}" if until is not None else "+inf")
    if not ids:
        return []
    out = []
    for raw in client.mget([_drill_key(i.decode()) for i in ids]):
        if raw:
            record = DrillRecord.from_json(json.loads(raw))
            if kind is None or record.kind == kind:
                out.append(record)
    return out


def latest(kind: str | None = None, *, client: redis.Redis | None = None) -> DrillRecord | None:
    """The most recently started finished drill (of ``kind``), or None."""
    for record in reversed(history(kind=kind, client=client)):
        if record.result != DrillResult.RUNNING:
            return record
    return None
