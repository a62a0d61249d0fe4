"""Redis restarted under a running fleet, and the active beat SIGKILLed with a standby
waiting: every slot after beat's first is committed once or recorded missed, none twice."""

import time

import pytest

from tests.faults import scenarios


def test_redis_restarts_lose_no_slot_silently_and_run_none_twice(tmp_path):
    row = scenarios.redis_restarts(tmp_path, restarts=1)  # 5 restarts in `make faults`
    print(row)
    row.check()


@pytest.mark.slow  # tests/beat_schedule/test_beat.py has the one-failover version in `make test`
def test_the_standby_beat_takes_over_ten_times_without_running_a_slot_twice(tmp_path, redis_url):
    row = scenarios.beat_failovers(tmp_path, redis_url, failovers=10)
    print(row)
    row.check()


@pytest.mark.slow
def test_redis_stopped_for_over_a_minute(tmp_path):
    row = scenarios.redis_restarts(tmp_path, restarts=1, long_stop_seconds=70)
    print(row)
    row.check()


def test_a_broker_outage_when_slots_fall_due_loses_none_of_them(tmp_path, redis_url):
    """Beat's broker is down (its state Redis is not) while two slots fall due: the publish
    fails, the slot's marker stays where it was, and the message goes out when the broker is
    back. Every slot is committed once or recorded missed; the beat log shows the resend."""
    import redis

    from tests.faults import harness
    from tests.fixtures.redis_server import RedisServer
    from tests.fixtures.util import wait_for

    broker = RedisServer().start()
    state = redis.Redis.from_url(redis_url)
    try:
        plan = harness.write_fault_plan(tmp_path / "plan", datasets=2, every=2)
        fleet = harness.new_fleet(tmp_path, broker.url, plan, harness.fault_env())
        on_state = {"DRFLEET_STATE_URL": redis_url}
        try:
            fleet.worker("eu-central", concurrency=2, env=on_state)
            beat = fleet.beat(env=on_state)
            first = harness.first_slots(state, plan)
            broker.stop()
            time.sleep(4.5)
            broker.start()
            back = time.time()
            wait_for(lambda: "again after a failed publish" in beat.output(), timeout=30,
                     what="beat to send the slots it could not publish")
            wait_for(lambda: harness.backup_successes(state, since=back), timeout=90,
                     what="a backup to commit after the broker came back")
            beat.stop()
            harness.drain(redis.Redis.from_url(broker.url), reconcile_env={**fleet.env, **on_state}, state=state)
            ledger = harness.ledger(plan, state, first)
            assert (ledger.lost, ledger.duplicates, ledger.torn) == (0, 0, 0), ledger.problems()
            assert ledger.committed >= 4
        finally:
            fleet.stop()
    finally:
        broker.cleanup()


def test_redis_sigkilled_mid_backup_loses_nothing_with_fsync_always(tmp_path):
    """The hostile probe's finding: Redis SIGKILLed during a backup and restarted; the task
    was terminated and its message acknowledged. The slot still commits once (or is
    recorded missed), and no claim stays "running"."""
    row = scenarios.redis_killed_mid_backup(tmp_path, kills=1, appendfsync="always", down_seconds=3)
    print(row)
    row.check()


@pytest.mark.slow
@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_redis_sigkilled_mid_backup_many_times(tmp_path, appendfsync):
    row = scenarios.redis_killed_mid_backup(tmp_path, kills=5, appendfsync=appendfsync, down_seconds=15)
    print(row)
    row.check()
