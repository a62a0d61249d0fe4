"""The Redis connection for fleet state (one client per process and URL). Credentials and
TLS (``rediss://``) come from ``state.redis_security`` (DRFLEET_REDIS_*)."""

from __future__ import annotations

import os
import threading

import redis

from drfleet import settings
from drfleet.state.redis_security import connect

PREFIX = "drfleet:"
_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def state_url() -> str:
    """Where fleet state lives: DRFLEET_STATE_URL, else DRFLEET_BROKER_URL, else local Redis."""
    return (settings.STATE_URL.get() or settings.BROKER_URL.get()
            or "redis://127.0.0.1:6379/0")


def state_client(url: str | None = None) -> redis.Redis:
    """A shared client for ``url`` (default ``state_url()``); safe across threads and,
    because it is created lazily per process, across prefork children."""
    url = url or state_url()
    key = f"{os.getpid()}:{url}"
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = connect(url, health_check_interval=30, socket_keepalive=True)
            _clients[key] = client
        return client


def key(*parts: str) -> str:
    return PREFIX + ":".join(parts)
