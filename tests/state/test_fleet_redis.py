"""state.fleet_redis: one server or a Sentinel-managed master, configured once, with clear
errors for every way the configuration can be wrong and nothing implicit."""

from __future__ import annotations

import pytest
import redis

from drfleet.state.fleet_redis import FleetNotConfigured, check_fleet_redis, connect_state, fleet_redis
from drfleet.state.redis_security import RedisAuthFailed, RedisConfigInvalid, RedisUnreachable
from tests.fixtures.sentinel import SentinelCluster
from tests.fixtures.util import wait_for


def test_nothing_configured_is_a_clear_error_not_a_default_server():
    with pytest.raises(FleetNotConfigured) as caught:
        fleet_redis({})
    assert "DRFLEET_BROKER_URL" in str(caught.value) and "drfleet up" in str(caught.value)


def test_a_state_url_alone_serves_state_but_not_tasks():
    target = fleet_redis({"DRFLEET_STATE_URL": "redis://127.0.0.1:1/0"})
    assert target.state == "redis://127.0.0.1:1/0"
    with pytest.raises(FleetNotConfigured, match="no broker"):
        target.require_broker()


@pytest.mark.parametrize("env, says", [
    ({"DRFLEET_REDIS_SENTINELS": "127.0.0.1:26379"}, "DRFLEET_REDIS_MASTER is not set"),
    ({"DRFLEET_REDIS_MASTER": "m"}, "DRFLEET_REDIS_SENTINELS is not"),
    ({"DRFLEET_REDIS_SENTINELS": "127.0.0.1", "DRFLEET_REDIS_MASTER": "m"}, "is not host:port"),
    ({"DRFLEET_REDIS_SENTINELS": " , ", "DRFLEET_REDIS_MASTER": "m"}, "names no sentinel"),
    ({"DRFLEET_REDIS_SENTINELS": "h:1", "DRFLEET_REDIS_MASTER": "m",
      "DRFLEET_BROKER_URL": "redis://:hunter2@h:6379/0"}, "mixed with Sentinel settings"),
    ({"DRFLEET_BROKER_URL": "sentinel://h:26379"}, "must be a redis:// or rediss:// URL"),
])
def test_bad_settings_are_refused_naming_the_setting(env, says):
    with pytest.raises(RedisConfigInvalid) as caught:
        fleet_redis(env)
    assert says in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_state_follows_the_master_the_sentinels_name_through_a_failover(sentinel_cluster):
    target = fleet_redis(sentinel_cluster.env())
    client = connect_state(target, socket_timeout=2)
    client.set("drfleet:test:before", "1")
    client.wait(2, 5000)  # on both replicas before the master dies
    old = sentinel_cluster.kill_master()
    sentinel_cluster.wait_for_failover(old.port)
    # the first command may meet the dead master's pooled connection once (every drfleet caller
    # tries again: the task base waits for the state store, beat ticks again)
    assert wait_for(lambda: client.get("drfleet:test:before"), timeout=30, what="a read after the failover") == b"1"
    client.set("drfleet:test:after", "2")
    assert sentinel_cluster.master().client().get("drfleet:test:after") == b"2"


def test_a_master_name_no_sentinel_knows_is_a_clear_error(sentinel_cluster):
    env = {**sentinel_cluster.env(), "DRFLEET_REDIS_MASTER": "no-such-master"}
    with pytest.raises(RedisUnreachable) as caught:
        check_fleet_redis(fleet_redis(env), role="worker")
    assert "no sentinel knows a master named 'no-such-master'" in str(caught.value)


def test_sentinels_that_nobody_runs_are_a_clear_error():
    env = {"DRFLEET_REDIS_SENTINELS": "127.0.0.1:1,127.0.0.1:2", "DRFLEET_REDIS_MASTER": "m"}
    with pytest.raises(RedisUnreachable, match="no sentinel answers"):
        check_fleet_redis(fleet_redis(env), role="worker", timeout=1)


@pytest.fixture
def guarded_cluster():
    cluster = SentinelCluster(password="s3ntinel-pw-7781").start()
    yield cluster
    cluster.stop()


def test_sentinels_that_want_a_password_say_so_without_echoing_any(guarded_cluster, tmp_path):
    with pytest.raises(RedisAuthFailed) as missing:
        check_fleet_redis(fleet_redis(guarded_cluster.env()), role="worker")
    assert "a sentinel refused the password" in str(missing.value)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-it-3310")
    with pytest.raises(RedisAuthFailed) as refused:
        check_fleet_redis(fleet_redis(guarded_cluster.env(wrong)), role="worker")
    assert "not-it-3310" not in str(refused.value) and "s3ntinel-pw-7781" not in str(refused.value)
    right = tmp_path / "right"
    right.write_text("s3ntinel-pw-7781")
    check_fleet_redis(fleet_redis(guarded_cluster.env(right)), role="worker")
    assert connect_state(fleet_redis(guarded_cluster.env(right))).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=guarded_cluster.master_port()).ping()
