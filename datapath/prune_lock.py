"""The per-location prune lock: a Redis lock with a random token and a TTL.

``drfleet:lock:prune:{location}`` is set with SET NX PX to a token naming the holder
(``host:pid:random``); only the holder's token can extend or release it (redis-py's Lua
scripts compare the token first). A holder that stalls past the TTL loses the lock and
finds out at its next ``check``, before it deletes anything more.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

import redis
from redis.exceptions import LockError

from drfleet.datapath.errors import DataPathError
from drfleet.state.store import key, state_client

logger = logging.getLogger("drfleet.prune")

LOCK_TTL_SECONDS = 60
EXTEND_EVERY_SECONDS = 5


class PruneBusy(DataPathError):
    hint = "another prune of this location is running; it does the same job, or retry when it ends"


class PruneLockLost(DataPathError):
    hint = "this prune stalled longer than its lock's TTL and stopped; run it again"


class PruneLock:
    """One location's prune lock. ``acquire`` raises PruneBusy (naming the holder) after
    ``wait_seconds``; ``check`` extends the TTL and raises PruneLockLost if another
    process owns the lock now."""

    def __init__(self, location: str, *, client: redis.Redis | None = None, ttl: float = LOCK_TTL_SECONDS):
        self.location, self.ttl = location, ttl
        self.client = client or state_client()
        self.name = key("lock", "prune", location)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._lock = self.client.lock(self.name, timeout=ttl, thread_local=False)
        self._extended = 0.0

    def acquire(self, wait_seconds: float = 0.0) -> "PruneLock":
        if not self._lock.acquire(blocking=wait_seconds > 0, blocking_timeout=wait_seconds or None,
                                  token=self.token):
            holder = self.client.get(self.name)
            raise PruneBusy(f"location {self.location} is being pruned by another process",
                            location=self.location, holder=holder.decode() if holder else "unknown",
                            waited_seconds=wait_seconds)
        self._extended = time.monotonic()
        return self

    def check(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._extended < min(EXTEND_EVERY_SECONDS, self.ttl / 3):
            return
        try:
            self._lock.extend(self.ttl, replace_ttl=True)
        except LockError as exc:
            raise PruneLockLost(f"lost the prune lock of {self.location}", location=self.location,
                                ttl_seconds=self.ttl) from exc
        self._extended = time.monotonic()

    def release(self) -> None:
        try:
            self._lock.release()
        except LockError:
            logger.warning("prune lock of %s had already expired at release", self.location)
