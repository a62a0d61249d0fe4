"""Many small datasets in three regions on a compressed clock, real workers and beat:
every slot is accounted for, worker memory and open files stay flat, the queues empty."""

import pytest

from tests.faults import scenarios


def check_flat(row):
    notes = row.notes
    assert notes["queued_after"] == 0, notes
    assert notes["rss_mb_end"] <= notes["rss_mb_start"] * 1.5 + 20, notes
    assert notes["fds_end"] <= notes["fds_start"] + 20, notes


def test_a_short_soak_accounts_for_every_slot(tmp_path, redis_url):
    row = scenarios.soak(tmp_path, redis_url, datasets=30, every=5, seconds=15, sample_every=3)
    print(row)
    row.check()
    check_flat(row)


@pytest.mark.slow
def test_500_datasets_for_three_minutes(tmp_path, redis_url):
    row = scenarios.soak(tmp_path, redis_url, datasets=500, every=60, seconds=180)
    print(row)
    row.check()
    check_flat(row)
