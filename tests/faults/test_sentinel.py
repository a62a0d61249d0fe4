"""Redis Sentinel under a running fleet: the master SIGKILLed during backups, workers in three
regions and two beats following the promoted replica; counted from the stores, every slot is
committed once or recorded missed."""

import pytest

from tests.faults import scenarios


def test_the_master_killed_mid_backup_loses_nothing(tmp_path):
    row = scenarios.sentinel_failovers(tmp_path, kills=1)
    print(row)
    row.check()
    assert row.notes["cli_broker"].startswith("sentinel://")


@pytest.mark.slow
def test_the_master_killed_ten_times(tmp_path):
    row = scenarios.sentinel_failovers(tmp_path, kills=10)
    print(row)
    row.check()
