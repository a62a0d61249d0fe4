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


def test_a_whole_region_lost_leaves_the_other_regions_running(tmp_path):
    """eu-central holds the master at the start: its loss is a failover as well."""
    row = scenarios.region_lost(tmp_path, lose="eu-central", watch_seconds=6)
    print(row)
    row.check()
    assert row.notes["lost_region_held_the_master"] is True


@pytest.mark.slow
@pytest.mark.parametrize("region", scenarios.REGIONS)
def test_each_region_lost_in_turn(tmp_path, region):
    row = scenarios.region_lost(tmp_path, lose=region, watch_seconds=60)
    print(row)
    row.check()
