"""Workers SIGKILLed at random moments during backups (real worker processes, real Redis):
every scheduled slot ends committed exactly once, no manifest names a missing object, and
what the killed writers left behind is only what the store reapers remove."""

import pytest

from tests.faults import scenarios


def test_random_worker_kills_lose_and_double_nothing(tmp_path, redis_url):
    row = scenarios.worker_kills(tmp_path, redis_url, kills=5)
    print(row)
    row.check()


@pytest.mark.slow
def test_fifty_worker_kills(tmp_path, redis_url):
    row = scenarios.worker_kills(tmp_path, redis_url, kills=50)
    print(row)
    row.check()
