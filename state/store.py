"""The Redis connection for fleet state, one client per process and configuration.
Where that Redis is (one server or a Sentinel-managed master), and its credentials and TLS,
come from ``state.fleet_redis``; there is no implicit default server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from drfleet.state.fleet_redis import FleetRedis, connect_broker, connect_state, fleet_redis

PREFIX = "drfleet:"
_clients: dict[tuple, redis.Redis] = {}
_lock = threading.Lock()
_private: redis.Redis | None = None  # break-glass: this process's state, in memory (``private_state``)


def _after_fork_in_child() -> None:
    """A prefork child must not inherit the lock held by a thread of its parent (the
    worker's heartbeat) at the moment of the fork: it would wait for it forever."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def state_client(url: str | None = None) -> redis.Redis:
    """A shared client for fleet state (or for the server at ``url``, a plain redis://
    URL, when a caller names one); safe across threads and, because it is created lazily per
    process, across prefork children. Raises FleetNotConfigured / RedisConfigInvalid
    (``state.fleet_redis``) when no fleet Redis is configured or the settings are wrong."""
    if _private is not None and url is None:
        return _private
    if url is not None:
        return _shared(("url", url), lambda: redis.Redis.from_url(url, health_check_interval=30,
                                                                   socket_keepalive=True))
    target = fleet_redis()
    return _shared(("state", target.state, target.sentinel),
                   lambda: connect_state(target, health_check_interval=30, socket_keepalive=True))


def broker_client(target: FleetRedis | None = None) -> redis.Redis:
    """A shared client for the broker's database (queue depths, unacked messages)."""
    target = target or fleet_redis()
    return _shared(("broker", target.broker, target.sentinel),
                   lambda: connect_broker(target, health_check_interval=30, socket_keepalive=True))


def _shared(identity: tuple, build) -> redis.Redis:
    cache_key = (os.getpid(), *identity)
    with _lock:
        client = _clients.get(cache_key)
        if client is None:
            client = build()
            _clients[cache_key] = client
        return client


def key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


@contextmanager
def private_state() -> Iterator[redis.Redis]:
    """Keep this process's fleet state (run records, approvals, audit, claims) in memory
    for the duration: ``state_client()`` returns an in-process Redis implementation
    (fakeredis) and no Redis server is contacted. For break-glass recovery with the fleet's
    Redis unreachable (``runbooks.breakglass``), which exports what was written."""
    global _private
    import fakeredis

    previous, _private = _private, fakeredis.FakeRedis()
    try:
        yield _private
    finally:
        _private = previous
