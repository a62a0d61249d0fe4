"""Redis restarted under a running fleet, and the active beat SIGKILLed with a standby
waiting: every slot after beat's first is committed once or recorded missed, none twice."""

import pytest

from tests.faults import scenarios


def test_redis_restarts_lose_no_slot_silently_and_run_none_twice(tmp_path):
    row = scenarios.redis_restarts(tmp_path, restarts=2)
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
