"""The broker transport drfleet configures: kombu's Redis transports, except that a channel
closed after its connection was released fails as a connection error (which kombu's close
ignores) instead of an AttributeError that stops the worker for good."""

from __future__ import annotations

import pytest
import redis
from kombu import Connection

from drfleet.state.fleet_redis import BROKER_TRANSPORT, SENTINEL_BROKER_TRANSPORT, FleetRedis, celery_redis_settings


def test_celery_is_pointed_at_the_guarded_transports(redis_url):
    single = celery_redis_settings(FleetRedis(broker=redis_url, result=redis_url, state=redis_url, env={}), {})
    assert single["broker_transport"] == BROKER_TRANSPORT
    from drfleet.workers import broker_transport
    assert Connection(redis_url, transport=BROKER_TRANSPORT).transport_cls is not None
    assert broker_transport.Transport.Channel is broker_transport.Channel
    assert SENTINEL_BROKER_TRANSPORT.endswith(":SentinelTransport")
    assert broker_transport.SentinelTransport.Channel is broker_transport.SentinelChannel


def test_a_channel_closed_after_its_connection_is_a_connection_error_not_a_crash(redis_url):
    conn = Connection(redis_url, transport=BROKER_TRANSPORT)
    channel = conn.default_channel
    channel.client.ping()  # a working channel on a real Redis
    channel._pool = None
    channel.connection.client = None  # what kombu leaves when the connection was released first

    with pytest.raises(redis.exceptions.ConnectionError):
        channel._get_pool()
    assert redis.exceptions.ConnectionError in conn.connection_errors  # so the close ignores it
    channel.close()  # restoring the unacked messages fails quietly, nothing raised
