"""kombu's Redis transports with one guard: a channel closed after its connection was
already released must fail as a *connection* error, not crash the worker.

When Redis dies, the worker's consumer closes its connection; closing the default channel
tries to restore the unacknowledged messages, which needs a new client, but the
connection's ``client`` is already gone, and kombu's ``_connparams`` raises AttributeError
("'NoneType' object has no attribute 'hostname'"). Celery treats that as unrecoverable and
the worker process exits, so a region's worker would not outlive a Redis restart. Raised
as ``redis.ConnectionError`` instead, it is one of the transport's connection errors: the
close ignores it, the unacknowledged messages stay in Redis's unacked set (the reconcile
pass or the visibility timeout brings them back), and the consumer reconnects.

Celery is pointed here by ``broker_transport`` (``state.fleet_redis.celery_redis_settings``).
"""

from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis


class _ClosedConnectionGuard:
    def _get_pool(self, asynchronous: bool = False):
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError(
                "the broker connection was closed while Redis was unreachable; reconnecting")
        return super()._get_pool(asynchronous)


class Channel(_ClosedConnectionGuard, kombu_redis.Channel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(_ClosedConnectionGuard, kombu_redis.SentinelChannel):
    pass


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
