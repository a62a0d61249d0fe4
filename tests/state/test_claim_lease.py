"""The lease that tells "the first delivery is still running" from "it died", against a
real redis-server: one holder at a time, renewed while held, gone when the holder stops
renewing (a killed worker) or releases it."""

import time

import redis

from drfleet.state import idempotency
from tests.fixtures.util import wait_for


def test_a_lease_has_one_holder_until_it_is_released(redis_url):
    client = redis.Redis.from_url(redis_url)
    job = idempotency.job_key("drfleet.backup", ("site", "hourly", "2026-01-01T00:00:00+00:00"))
    first, second = idempotency.Lease(job, client=client, ttl=3), idempotency.Lease(job, client=client, ttl=3)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder() == first.token
    first.release()
    assert second.acquire()
    second.release()
    assert client.get(second.name) is None


def test_a_held_lease_is_renewed_past_its_ttl(redis_url):
    client = redis.Redis.from_url(redis_url)
    lease = idempotency.Lease(idempotency.job_key("t", ("a",)), client=client, ttl=1)
    assert lease.acquire()
    time.sleep(2.5)  # more than twice the TTL: only renewal keeps it
    assert not idempotency.Lease(idempotency.job_key("t", ("a",)), client=client, ttl=1).acquire()
    lease.release()


def test_a_lease_nobody_renews_expires(redis_url):
    """A SIGKILLed worker renews nothing: its lease expires and a redelivery may run."""
    client = redis.Redis.from_url(redis_url)
    job = idempotency.job_key("t", ("b",))
    client.set(idempotency.Lease(job, client=client).name, "dead-worker", px=800)
    assert not idempotency.Lease(job, client=client, ttl=1).acquire()
    successor = idempotency.Lease(job, client=client, ttl=1)
    wait_for(successor.acquire, timeout=5, what="the dead holder's lease to expire")
    successor.release()  # stops its renewing thread


def test_release_never_drops_another_holders_lease(redis_url):
    client = redis.Redis.from_url(redis_url)
    job = idempotency.job_key("t", ("c",))
    stale = idempotency.Lease(job, client=client, ttl=1)
    assert stale.acquire()
    stale._stop.set()
    client.delete(stale.name)  # expired while paused
    current = idempotency.Lease(job, client=client, ttl=5)
    assert current.acquire()
    stale.release()
    assert current.holder() == current.token
    current.release()
