"""Workers SIGKILLed at random moments during backups (real worker processes, real Redis):
every scheduled slot ends committed exactly once, no manifest names a missing object, and
what the killed writers left behind is only what the store reapers remove."""

import pytest

from tests.faults import scenarios


def test_random_worker_kills_lose_and_double_nothing(tmp_path, redis_url):
    row = scenarios.worker_kills(tmp_path, redis_url, kills=3)  # 50 in `make faults`
    print(row)
    row.check()


@pytest.mark.slow
def test_fifty_worker_kills(tmp_path, redis_url):
    row = scenarios.worker_kills(tmp_path, redis_url, kills=50)
    print(row)
    row.check()


def test_a_whole_worker_sigkilled_mid_backup_has_its_message_back_in_seconds(tmp_path, redis_url):
    """The visibility timeout is an hour: the message comes back because the dead worker's
    heartbeat is gone, not because the broker timed it out."""
    row = scenarios.whole_worker_kills(tmp_path, redis_url, kills=1)
    print(row)
    row.check()
    assert row.notes["reconcile_restored"] >= 1  # its worker's heartbeat was gone


@pytest.mark.slow
def test_ten_whole_worker_kills(tmp_path, redis_url):
    row = scenarios.whole_worker_kills(tmp_path, redis_url, kills=10)
    print(row)
    row.check()
