"""At-most-once execution per logical job, on top of at-least-once delivery.

A logical job (dataset, policy, scheduled slot) is claimed by the first task id that
reaches it. A redelivery of the same message (same task id, after a worker died or a
visibility timeout) may proceed; any other task id for the same job is a duplicate (two
beats, a beat lock held twice, a hand-sent copy) and is skipped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from state.store import key, state_client

CLAIM_TTL_SECONDS = 14 * 86400


@dataclass(frozen=True)
class Claim:
    """The outcome of ``claim``: ``granted`` or the holder that won the job."""

    granted: bool
    holder_task_id: str
    holder_state: str


def job_key(task_name: str, parts: tuple[str, ...]) -> str:
    return key("idem", task_name, *parts)


def claim(job: str, task_id: str, *, client: redis.Redis | None = None) -> Claim:
    """Claim ``job`` for ``task_id`` in one round trip (SET NX GET)."""
    client = client or state_client()
    value = json.dumps({"task_id": task_id, "state": "running", "at": time.time()})
    previous = client.set(job, value, nx=True, get=True, ex=CLAIM_TTL_SECONDS)
    if previous is None:
        return Claim(True, task_id, "running")
    holder = json.loads(previous)
    if holder["task_id"] == task_id:
        return Claim(True, task_id, holder["state"])
    return Claim(False, holder["task_id"], holder["state"])


def finish(job: str, task_id: str, state: str, *, client: redis.Redis | None = None) -> None:
    """Record how the claimed job ended (``succeeded``/``failed``); the claim stays so
    later duplicates of the same slot are still skipped."""
    client = client or state_client()
    client.set(job, json.dumps({"task_id": task_id, "state": state, "at": time.time()}),
               ex=CLAIM_TTL_SECONDS)


def release(job: str, task_id: str, *, client: redis.Redis | None = None) -> None:
    """Drop a claim held by ``task_id`` so the job can be sent again (used on retry-able
    failures that should not block the slot)."""
    client = client or state_client()
    current = client.get(job)
    if current and json.loads(current)["task_id"] == task_id:
        client.delete(job)
