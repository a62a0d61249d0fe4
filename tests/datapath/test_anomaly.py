"""Size anomaly detection: a backup far smaller or larger than the recent backups of the
same dataset and policy is flagged; too little history is not judged."""

import shutil
from datetime import timedelta

import pytest

from drfleet.datapath.anomaly import check_size, size_check_for
from drfleet.datapath.backup import run_backup
from drfleet.datapath.catalog import list_backups


@pytest.fixture
def history(files_plan):
    """One real manifest of ``site`` and a helper making earlier/later variants of it."""
    plan, _ = files_plan
    run_backup(plan, "site", "hourly", region="eu-central")
    base = list_backups(plan, "site").backups[0].manifest

    def variant(i: int, size: int, policy: str = "hourly"):
        return base.model_copy(update={"backup_id": f"20261101T0{i}0000Z-0000000{i}", "plaintext_size": size,
                                       "policy": policy, "created_at": base.created_at + timedelta(hours=i)})
    return plan, variant


def test_a_29_byte_dump_after_megabyte_backups_is_flagged_smaller(history):
    plan, variant = history
    earlier = [variant(i, 1_000_000 + i) for i in range(1, 6)]
    check = check_size(plan, variant(7, 29), earlier)
    assert check.flagged and check.direction == "smaller"
    assert check.baseline == 1_000_003 and check.history == 5
    assert "far smaller" in check.describe() and "29 B" in check.describe()


def test_a_backup_more_than_twice_the_median_is_flagged_larger(history):
    plan, variant = history
    earlier = [variant(i, 1000) for i in range(1, 4)]
    assert check_size(plan, variant(5, 2001), earlier).direction == "larger"
    assert not check_size(plan, variant(5, 1999), earlier).flagged
    assert not check_size(plan, variant(5, 501), earlier).flagged


def test_too_little_history_is_not_judged(history):
    plan, variant = history
    check = check_size(plan, variant(5, 1), [variant(1, 10**9), variant(2, 10**9)])
    assert not check.flagged and check.baseline is None
    assert "not judged" in check.describe()


def test_other_policies_and_later_backups_do_not_count(history):
    plan, variant = history
    earlier = [variant(i, 10**6, policy="daily") for i in range(1, 5)] + [variant(8, 10**6), variant(9, 10**6)]
    check = check_size(plan, variant(6, 10), earlier)
    assert check.history == 0 and not check.flagged


def test_a_real_backup_of_a_shrunken_tree_is_flagged_against_its_store(files_plan):
    plan, src = files_plan
    for _ in range(3):
        run_backup(plan, "site", "hourly", region="eu-central")
    shutil.rmtree(src / "img")
    (src / "link").unlink()
    tiny = run_backup(plan, "site", "hourly", region="eu-central")
    check = size_check_for(plan, "site", tiny["backup_id"], "eu-central-store")
    assert check.flagged and check.direction == "smaller" and check.history == 3
