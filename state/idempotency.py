"""At-most-once execution per logical job, on top of at-least-once delivery.

A logical job (dataset, policy, scheduled slot) is claimed by the first task id that
reaches it. A redelivery of the same message (same task id, after a worker died or a
visibility timeout) may proceed once no live process holds the job's ``Lease``; any other
task id for the same job is a duplicate (two beats, a beat lock held twice, a hand-sent
copy) and is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import redis

from drfleet import settings
from drfleet.state.store import key, state_client

logger = logging.getLogger("drfleet.idempotency")

CLAIM_TTL_SECONDS = 14 * 86400


@dataclass(frozen=True)
class Claim:
    """The outcome of ``claim``: ``granted`` or the holder that won the job."""

    granted: bool
    holder_task_id: str
    holder_state: str
    redelivered: bool = False  # granted to a task id that had claimed the job before


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
        return Claim(True, task_id, holder["state"], redelivered=True)
    return Claim(False, holder["task_id"], holder["state"])


def finish(job: str, task_id: str, state: str, *, client: redis.Redis | None = None,
           forget_inflight: bool = False) -> None:
    """Record how the claimed job ended (``succeeded``/``failed``); the claim stays so
    later duplicates of the same slot are still skipped. ``forget_inflight``: in the same
    round trip, drop the message's in-flight record (``state.inflight``). In Sentinel mode
    the write is confirmed by a replica before this returns (``durable``)."""
    client = client or state_client()
    pipe = client.pipeline(transaction=False)
    pipe.set(job, json.dumps({"task_id": task_id, "state": state, "at": time.time()}), ex=CLAIM_TTL_SECONDS)
    if forget_inflight:
        pipe.hdel(key("inflight"), task_id)
    pipe.execute()
    durable(client)


def durable(client: redis.Redis) -> None:
    """Wait (briefly) until a replica has every write made so far on this connection, when
    the fleet runs on Redis Sentinel: the writes that say how a job ended must survive a
    failover (``WAIT``; DRFLEET_REDIS_WAIT_REPLICAS, DRFLEET_REDIS_WAIT_MS). A replica too
    slow to answer does not fail the task: the write stands on the master, as Redis without
    replicas would have it."""
    replicas = settings.REDIS_WAIT_REPLICAS.get()
    if replicas and settings.REDIS_SENTINELS.is_set():
        try:
            client.wait(replicas, settings.REDIS_WAIT_MS.get())
        except redis.ResponseError:
            pass


def release(job: str, task_id: str, *, client: redis.Redis | None = None) -> None:
    """Drop a claim held by ``task_id`` so the job can be sent again (used on retry-able
    failures that should not block the slot)."""
    client = client or state_client()
    current = client.get(job)
    if current and json.loads(current)["task_id"] == task_id:
        client.delete(job)


# -- leases: "a process is working on this job right now" ---------------------------------
#
# A claim says which task id owns a job; it outlives the process. When the same message
# is delivered again (the worker died, or the broker's visibility timeout passed while the
# first delivery was still running), the claim alone cannot tell those apart. The lease
# can: the process running the job holds ``drfleet:lease:...`` with a short TTL and
# renews it while it works, so a live lease means "still running elsewhere" and an
# expired one means "the previous attempt died".


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_DROP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_seconds() -> float:
    """The lease TTL: DRFLEET_CLAIM_LEASE_SECONDS, default 60."""
    return settings.CLAIM_LEASE_SECONDS.get()


class Lease:
    """The running process's hold on a job. ``acquire`` is SET NX with a TTL (False when
    another live process holds it); while held, a daemon thread renews it every third of
    the TTL; ``release`` stops renewing and deletes it if it is still ours. Redis errors
    while renewing are logged and retried on the next beat, never raised into the task."""

    def __init__(self, job: str, *, client: redis.Redis | None = None, ttl: float | None = None) -> None:
        self.name = job.replace(key("idem"), key("lease"), 1)
        self.ttl = ttl or lease_seconds()
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self.client = client or state_client()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        if not self.client.set(self.name, self.token, nx=True, px=int(self.ttl * 1000)):
            return False
        self._thread = threading.Thread(target=self._renew, name="drfleet-lease", daemon=True)
        self._thread.start()
        return True

    def holder(self) -> str | None:
        value = self.client.get(self.name)
        return value.decode() if value else None

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.client.eval(_RENEW, 1, self.name, self.token, int(self.ttl * 1000))
            except redis.RedisError as exc:
                logger.warning("could not renew lease %s: %s", self.name, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.client.eval(_DROP, 1, self.name, self.token)
        except redis.RedisError as exc:  # it expires by itself
            logger.warning("could not release lease %s: %s", self.name, exc)
