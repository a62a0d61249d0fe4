"""Work that was sent and has not ended, and the workers alive to do it.

Three records, so that a message the broker lost (Redis died or failed over before it
persisted or replicated it, or a connection loss made a worker acknowledge and drop it)
or one stranded on a dead worker is found in seconds and sent again
(``workers.reconcile``), instead of waiting for a visibility timeout or being lost:

* ``drfleet:inflight`` (hash, task id -> JSON): every idempotent task message (backups,
  copies) from the moment before it is published until its task records how it ended.
  The record holds what is needed to publish it again: task name, kwargs, when sent,
  how often it was re-sent.
* ``drfleet:running:{task_id}`` -> the worker's name, while a task executes (any task).
* ``drfleet:worker:{name}`` -> a heartbeat a worker renews every few seconds.

A running record whose worker's heartbeat is gone means that worker died.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import redis

from drfleet.state.store import key, state_client

INFLIGHT = key("inflight")
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_TTL_SECONDS = 20
RUNNING_TTL_SECONDS = 8 * 86400  # outlives any hard time limit; deleted when the task ends


@dataclass
class Inflight:
    task_id: str
    task: str
    kwargs: dict[str, Any]
    sent_at: float
    resends: int = 0
    history: list[str] = field(default_factory=list)  # "resent at ...: why"

    def __post_init__(self) -> None:
        if not isinstance(self.history, list):  # Lua's cjson writes an empty list as {}
            self.history = list(self.history or [])

    @property
    def region(self) -> str | None:
        return self.kwargs.get("region")


# one round trip: a new record, or a fresh one that keeps the re-send count and reasons
_RECORD = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local new = cjson.decode(ARGV[2])
if old then
  local prev = cjson.decode(old)
  new['resends'] = prev['resends'] or 0
  new['history'] = prev['history'] or {}
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(new))
return 1
"""


def record_sent(task_id: str, task: str, kwargs: dict[str, Any], *, client: redis.Redis | None = None) -> Inflight:
    """Record a message about to be published (call before publishing it). Publishing the
    same task id again (a retry, a re-send) keeps its count of re-sends and their reasons."""
    client = client or state_client()
    entry = Inflight(task_id, task, dict(kwargs), time.time())
    client.eval(_RECORD, 1, INFLIGHT, task_id, json.dumps(asdict(entry)))
    return entry


def note_resend(entry: Inflight, why: str, *, client: redis.Redis | None = None) -> None:
    """Count a re-send of ``entry`` and say why (before publishing it again)."""
    entry.resends += 1
    entry.history = [*entry.history[-9:], f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {why}"]
    (client or state_client()).hset(INFLIGHT, entry.task_id, json.dumps(asdict(entry)))


def get(task_id: str, *, client: redis.Redis | None = None) -> Inflight | None:
    raw = (client or state_client()).hget(INFLIGHT, task_id)
    try:
        return Inflight(**json.loads(raw)) if raw else None
    except (ValueError, TypeError):
        return None


def forget(task_id: str, *, client: redis.Redis | None = None) -> None:
    """The task ended (succeeded, failed for good, skipped as a duplicate): drop its record."""
    (client or state_client()).hdel(INFLIGHT, task_id)


def entries(*, client: redis.Redis | None = None) -> Iterator[Inflight]:
    for task_id, raw in (client or state_client()).hgetall(INFLIGHT).items():
        try:
            yield Inflight(**json.loads(raw))
        except (ValueError, TypeError):
            continue  # not ours to interpret; reported by nothing, never fatal


def mark_running(task_id: str, worker: str, *, client: redis.Redis | None = None) -> None:
    (client or state_client()).set(key("running", task_id), worker, ex=RUNNING_TTL_SECONDS)


def clear_running(task_id: str, *, client: redis.Redis | None = None) -> None:
    (client or state_client()).delete(key("running", task_id))


def running_on(task_id: str, *, client: redis.Redis | None = None) -> str | None:
    """The worker running ``task_id`` now, or None."""
    value = (client or state_client()).get(key("running", task_id))
    return value.decode() if value else None


def heartbeat(worker: str, *, client: redis.Redis | None = None) -> None:
    (client or state_client()).set(key("worker", worker), str(time.time()), ex=HEARTBEAT_TTL_SECONDS)


def worker_gone(worker: str, *, client: redis.Redis | None = None) -> None:
    (client or state_client()).delete(key("worker", worker))


def worker_alive(worker: str, *, client: redis.Redis | None = None) -> bool:
    return bool((client or state_client()).exists(key("worker", worker)))


def live_workers(*, client: redis.Redis | None = None) -> list[str]:
    client = client or state_client()
    prefix = key("worker", "")
    return sorted(k.decode()[len(prefix):] for k in client.scan_iter(match=prefix + "*", count=1000))
