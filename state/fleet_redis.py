"""Where the fleet's Redis is, decided in one place for every process that talks to it
(workers, beat and RedBeat, the result backend, fleet state, the metrics exporter, Flower,
the CLI).

Two shapes, chosen by the settings (docs/settings.md, "Redis"):

* one server: ``DRFLEET_BROKER_URL`` (``redis://`` or ``rediss://``), with
  ``DRFLEET_RESULT_URL`` and ``DRFLEET_STATE_URL`` defaulting to it;
* Redis Sentinel: ``DRFLEET_REDIS_SENTINELS`` (``host:port,...``) and ``DRFLEET_REDIS_MASTER``
  (the master's name), ``DRFLEET_REDIS_DB``; broker, results, RedBeat and state all follow
  the master the sentinels name, through kombu's ``sentinel://`` transport, Celery's sentinel
  result backend, RedBeat's ``redis-sentinel://`` mode and redis-py's ``Sentinel``.

Credentials come from ``state.redis_security`` (ACL user, password file; the sentinels'
own password from ``DRFLEET_REDIS_SENTINEL_PASSWORD_FILE``, else the same file). There is
no implicit default: with neither shape configured, ``FleetNotConfigured`` says how to name
one. Nothing here ever puts a password in an error or a log line.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from drfleet import settings
from drfleet.errors import DrfleetError
from drfleet.state.redis_security import (
    RedisAuthFailed,
    RedisConfigInvalid,
    RedisUnreachable,
    check_connection,
    is_redis_failure,
    masked,
    read_secret_file,
    tls_options,
    with_credentials,
)


class FleetNotConfigured(RedisConfigInvalid):
    hint = ("name the fleet's Redis: DRFLEET_BROKER_URL=redis://HOST:PORT/0, or DRFLEET_REDIS_SENTINELS="
            "h1:26379,h2:26379,h3:26379 with DRFLEET_REDIS_MASTER; or start a local fleet with `drfleet up`")


@dataclass(frozen=True)
class SentinelMaster:
    """The sentinels and the master they manage. Passwords are read when connecting."""

    nodes: tuple[tuple[str, int], ...]
    master: str
    db: int = 0

    def describe(self) -> str:
        """Safe to print: ``sentinel://h1:26379,h2:26379/MASTER/DB``."""
        return "sentinel://" + ",".join(f"{h}:{p}" for h, p in self.nodes) + f"/{self.master}/{self.db}"


@dataclass(frozen=True)
class FleetRedis:
    """The fleet's Redis: ``sentinel`` set in Sentinel mode, else the three URLs."""

    broker: str | None = None
    result: str | None = None
    state: str | None = None
    sentinel: SentinelMaster | None = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False, compare=False)

    def require_broker(self) -> "FleetRedis":
        """Itself; raises FleetNotConfigured when only a state URL names a server (enough
        for reading and writing fleet state, not for sending or running tasks)."""
        if self.sentinel is None and not self.broker:
            raise FleetNotConfigured("no broker is configured (DRFLEET_STATE_URL alone names only the state store)")
        return self

    @property
    def describe(self) -> str:
        """Where the broker is, without any password (for status lines and errors)."""
        if self.sentinel:
            return self.sentinel.describe()
        return masked(with_credentials(self.broker or self.state, self.env))


# A master that vanished without closing its connections (a partitioned or frozen host) is
# noticed by TCP keepalive within about 25 s; then clients ask the sentinels again.
KEEPALIVE = {"socket_keepalive": True, "socket_connect_timeout": 5.0,
             "socket_keepalive_options": {socket.TCP_KEEPIDLE: 10, socket.TCP_KEEPINTVL: 5, socket.TCP_KEEPCNT: 3}}


def fleet_redis(env: Mapping[str, str] | None = None) -> FleetRedis:
    """The configured Redis. Raises FleetNotConfigured when nothing names one, and
    RedisConfigInvalid for a malformed sentinel list, a sentinel list without a master name
    (or the reverse), or single-server URLs mixed with sentinel settings, naming the settings."""
    env = os.environ if env is None else env
    urls = {s.name: s.get(env) for s in (settings.BROKER_URL, settings.RESULT_URL, settings.STATE_URL)}
    raw = settings.REDIS_SENTINELS.get(env)
    if raw is None:
        if settings.REDIS_MASTER.is_set(env):
            raise RedisConfigInvalid("DRFLEET_REDIS_MASTER is set but DRFLEET_REDIS_SENTINELS is not",
                                     hint="list the sentinels in DRFLEET_REDIS_SENTINELS, or unset DRFLEET_REDIS_MASTER")
        broker = urls["DRFLEET_BROKER_URL"]
        if not broker and not urls["DRFLEET_STATE_URL"]:
            raise FleetNotConfigured("no fleet Redis is configured")
        for name, url in urls.items():
            if url and not url.startswith(("redis://", "rediss://")):
                raise RedisConfigInvalid(f"{name} must be a redis:// or rediss:// URL (for Sentinel, use "
                                         "DRFLEET_REDIS_SENTINELS and DRFLEET_REDIS_MASTER)", setting=name)
        return FleetRedis(broker=broker, result=urls["DRFLEET_RESULT_URL"] or broker,
                          state=urls["DRFLEET_STATE_URL"] or broker, env=env)
    mixed = [name for name, url in urls.items() if url]
    if mixed:
        raise RedisConfigInvalid("single-server Redis URLs are mixed with Sentinel settings",
                                 settings=", ".join(mixed + ["DRFLEET_REDIS_SENTINELS"]),
                                 hint="with DRFLEET_REDIS_SENTINELS set, unset " + ", ".join(mixed))
    nodes = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RedisConfigInvalid(f"DRFLEET_REDIS_SENTINELS: {item!r} is not host:port",
                                     hint="write the sentinels as host:port,host:port,...")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise RedisConfigInvalid("DRFLEET_REDIS_SENTINELS names no sentinel",
                                 hint="write the sentinels as host:port,host:port,...")
    master = settings.REDIS_MASTER.get(env)
    if not master:
        raise RedisConfigInvalid("a sentinel list needs the master's name: DRFLEET_REDIS_MASTER is not set",
                                 hint="set DRFLEET_REDIS_MASTER to the name in the sentinels' `sentinel monitor` line")
    if settings.REDIS_CA_FILE.is_set(env):
        raise RedisConfigInvalid("TLS (DRFLEET_REDIS_CA_FILE) is not supported with Redis Sentinel in drfleet",
                                 hint="use Sentinel on a private network, or one rediss:// server")
    return FleetRedis(sentinel=SentinelMaster(tuple(nodes), master, settings.REDIS_DB.get(env)), env=env)


def _password(env) -> str | None:
    path = settings.REDIS_PASSWORD_FILE.get(env)
    return read_secret_file(path, "Redis password file (DRFLEET_REDIS_PASSWORD_FILE)") if path else None


def _sentinel_password(env) -> str | None:
    path = settings.REDIS_SENTINEL_PASSWORD_FILE.get(env)
    if path:
        return read_secret_file(path, "sentinel password file (DRFLEET_REDIS_SENTINEL_PASSWORD_FILE)")
    return _password(env)


def _sentinel(target: FleetRedis, *, once: bool = False, timeout: float = 5.0, **kwargs) -> Sentinel:
    """redis-py's Sentinel for ``target``; ``once``: no retries (a start-up check answers fast)."""
    sentinel_kwargs = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    sentinel_password = _sentinel_password(target.env)
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    if once:
        sentinel_kwargs["retry"] = kwargs["retry"] = Retry(NoBackoff(), 0)
    return Sentinel(list(target.sentinel.nodes), password=_password(target.env),
                    username=settings.REDIS_USERNAME.get(target.env), sentinel_kwargs=sentinel_kwargs, **kwargs)


def connect_state(target: FleetRedis | None = None, **kwargs) -> redis.Redis:
    """A client for fleet state (claims, audit, missed slots, runbook records): the state
    URL's server, or in Sentinel mode whichever server the sentinels name as master now
    (redis-py asks again after a failover). Raises what ``fleet_redis`` raises."""
    target = target or fleet_redis()
    if target.sentinel is None:
        return redis.Redis.from_url(with_credentials(target.state, target.env),
                                    **tls_options(target.state, target.env), **kwargs)
    return _sentinel(target).master_for(target.sentinel.master, db=target.sentinel.db, **{**KEEPALIVE, **kwargs})


def connect_broker(target: FleetRedis | None = None, **kwargs) -> redis.Redis:
    """A client for the broker's database (queue depths, unacked messages)."""
    target = (target or fleet_redis()).require_broker()
    if target.sentinel is None:
        return redis.Redis.from_url(with_credentials(target.broker, target.env),
                                    **tls_options(target.broker, target.env), **kwargs)
    return connect_state(target, **kwargs)


# kombu's Redis transports with a guard against a worker crash while Redis is away
# (workers/broker_transport.py); named, not imported: the workers floor is above this one
BROKER_TRANSPORT = "drfleet.workers.broker_transport:Transport"
SENTINEL_BROKER_TRANSPORT = "drfleet.workers.broker_transport:SentinelTransport"


def celery_redis_settings(target: FleetRedis, transport: dict) -> dict:
    """Celery and RedBeat settings for ``target``: broker and result URLs with their
    transport options (``transport`` holds the shared ones, e.g. the visibility timeout),
    RedBeat's URL and options, and TLS options for rediss:// URLs."""
    env = target.require_broker().env
    if target.sentinel is None:
        out = {"broker_url": with_credentials(target.broker, env),
               "broker_transport": BROKER_TRANSPORT,
               "result_backend": with_credentials(target.result, env),
               "broker_transport_options": dict(transport),
               "result_backend_transport_options": dict(transport),
               "redbeat_redis_url": with_credentials(target.state, env)}
        for role, setting in (("broker", "broker_use_ssl"), ("result", "redis_backend_use_ssl"),
                              ("state", "redbeat_redis_use_ssl")):
            options = tls_options(getattr(target, role), env)
            if options:
                out[setting] = options
        return out
    master = target.sentinel
    password, user = _password(env), settings.REDIS_USERNAME.get(env)
    userinfo = (f"{quote(user or '', safe='')}:{quote(password, safe='')}@" if password else "")
    urls = ";".join(f"sentinel://{userinfo}{host}:{port}/{master.db}" for host, port in master.nodes)
    sentinel_password = _sentinel_password(env)
    sentinel_kwargs = {"password": sentinel_password} if sentinel_password else {}
    options = {**transport, **KEEPALIVE, "master_name": master.master, "sentinel_kwargs": sentinel_kwargs}
    redbeat = {"sentinels": list(master.nodes), "service_name": master.master, "db": master.db,
               "password": password, "sentinel_kwargs": sentinel_kwargs, "socket_timeout": 5.0, **KEEPALIVE}
    if user:
        redbeat["username"] = user
    host, port = master.nodes[0]
    return {"broker_url": urls, "broker_transport": SENTINEL_BROKER_TRANSPORT, "result_backend": urls,
            "broker_transport_options": options, "result_backend_transport_options": dict(options),
            "redbeat_redis_url": f"redis-sentinel://{host}:{port}/{master.db}",
            "redbeat_redis_options": redbeat}


def check_fleet_redis(target: FleetRedis, *, role: str, timeout: float = 5.0) -> None:
    """Reach the fleet's Redis once. Single server: PING each URL. Sentinel: ask the
    sentinels for the master, then PING it. Raises RedisAuthFailed (a password refused by a
    sentinel or the master), RedisUnreachable (no sentinel answers; no sentinel knows the
    master name; the master is down), never naming a password."""
    if target.sentinel is None:
        named = {}
        for what, url in (("broker", target.broker), ("result backend", target.result),
                          ("state (RedBeat, audit)", target.state)):
            if url:
                named.setdefault(url, what)
        for url, what in named.items():
            check_connection(url, target.env, role=f"{role} {what}".strip(), timeout=timeout)
        return
    master = target.sentinel
    sentinel = _sentinel(target, once=True, timeout=timeout, socket_timeout=timeout,
                         socket_connect_timeout=timeout)
    try:
        address = sentinel.discover_master(master.master)
    except MasterNotFoundError as exc:
        answered = _sentinels_answering(sentinel)
        if answered.get("auth"):
            raise RedisAuthFailed(f"{role}: a sentinel refused the password", sentinels=master.describe(),
                                  hint="check DRFLEET_REDIS_SENTINEL_PASSWORD_FILE (or DRFLEET_REDIS_PASSWORD_FILE) "
                                       "against the sentinels' requirepass") from None
        if not answered.get("ok"):
            raise RedisUnreachable(f"{role}: no sentinel answers", sentinels=master.describe()) from None
        raise RedisUnreachable(f"{role}: no sentinel knows a master named {master.master!r} ({exc})",
                               sentinels=master.describe(),
                               hint="set DRFLEET_REDIS_MASTER to the name in the sentinels' `sentinel monitor` line") from None
    client = sentinel.master_for(master.master, db=master.db, socket_timeout=timeout,
                                 socket_connect_timeout=timeout)
    try:
        client.ping()
    except redis.AuthenticationError:
        raise RedisAuthFailed(f"{role}: the master refused the credentials", master=f"{address[0]}:{address[1]}",
                              hint="check DRFLEET_REDIS_USERNAME and DRFLEET_REDIS_PASSWORD_FILE") from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnreachable(f"{role}: the master the sentinels name does not answer ({type(exc).__name__})",
                               master=f"{address[0]}:{address[1]}") from None
    finally:
        client.close()


def _sentinels_answering(sentinel: Sentinel) -> dict[str, bool]:
    seen = {"ok": False, "auth": False}
    for node in sentinel.sentinels:
        try:
            node.ping()
            seen["ok"] = True
        except redis.AuthenticationError:
            seen["auth"] = True
        except redis.ResponseError as exc:
            seen["auth"] |= "NOAUTH" in str(exc) or "WRONGPASS" in str(exc)
        except (redis.ConnectionError, redis.TimeoutError):
            pass
    return seen


def explain_failure(exc: BaseException, target: FleetRedis | None = None) -> DrfleetError | None:
    """For an exception raised while talking to Redis (directly, through kombu, or Celery's
    result backend giving up), the clear error: the configuration is wrong, the credentials
    are refused, or the server (or sentinel, or master) cannot be reached. None when ``exc`` is
    not a Redis failure or Redis answers now (the caller then re-raises the original)."""
    if not is_redis_failure(exc):
        return None
    try:
        check_fleet_redis(target or fleet_redis(), role="")
    except (RedisAuthFailed, RedisUnreachable, RedisConfigInvalid) as error:
        return error
    return None
