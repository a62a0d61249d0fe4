"""The filesystem store running out of space (a small tmpfs, as root): a backup that finds
no room for its object, or none for its manifest, fails with StoreFull and leaves nothing;
once space is freed the same slot is backed up whole."""

import pytest

from tests.faults import scenarios


def test_a_full_store_fails_clearly_leaves_nothing_and_the_rerun_commits(tmp_path):
    row = scenarios.disk_full(tmp_path)
    if "skipped" in row.notes:
        pytest.skip(row.notes["skipped"])
    print(row)
    row.check()
    assert row.notes["failed_clearly"] == row.repetitions == len(scenarios.DISK_FAULTS)
    assert row.notes["full_at"] == list(scenarios.DISK_FAULTS), "the store filled up elsewhere than intended"
    assert row.committed == row.repetitions
