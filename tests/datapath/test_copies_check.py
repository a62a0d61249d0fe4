"""``copies check``: every copy of every backup against its manifest; a missing or damaged
copy re-seeded from a good one, and only what now checks out counted as repaired."""

from datetime import timedelta

import pytest

from drfleet.datapath.backup import run_backup
from drfleet.datapath.catalog import find_backup, list_backups
from drfleet.datapath.copies_check import check_copies
from drfleet.datapath.copy import copy_to_policy_locations
from drfleet.datapath.locations import store_for
from drfleet.datapath.reading import data_key_for
from drfleet.datapath.verify import verify_backup
from tests.datapath.copy_plans import make_copy_plan, manifest_file, manifests_at, object_file

LOCATIONS = ["eu-central-store", "us-east-store", "vault"]


@pytest.fixture
def copied(tmp_path):
    """A backup of ``site`` committed at home and copied to us-east and the vault."""
    root = tmp_path / "plan"
    plan, _ = make_copy_plan(root)
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    copy_to_policy_locations(plan, f"site/{backup_id}")
    return plan, root, backup_id


def states(report, backup_id):
    backup = next(b for b in report.backups if b.backup_id == backup_id)
    return {c.location: c for c in backup.copies}


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x20
    path.write_bytes(bytes(data))


def committed_count(plan):
    return len(list_backups(plan, "site").backups)


def test_copies_that_match_their_manifests_are_all_ok_and_nothing_is_touched(copied):
    plan, root, backup_id = copied
    before = {loc: object_file(root, loc, backup_id).stat().st_mtime_ns for loc in LOCATIONS}
    report = check_copies(plan, "site")
    assert report.ok and report.repaired == []
    assert {loc: s.status for loc, s in states(report, backup_id).items()} == dict.fromkeys(LOCATIONS, "ok")
    assert before == {loc: object_file(root, loc, backup_id).stat().st_mtime_ns for loc in LOCATIONS}


def test_a_missing_copy_is_reseeded_from_home(copied):
    plan, root, backup_id = copied
    manifest_file(root, "us-east-store", backup_id).unlink()
    object_file(root, "us-east-store", backup_id).unlink()
    report = check_copies(plan, "site")
    assert report.repaired == [f"site/{backup_id}@us-east-store"]
    state = states(report, backup_id)["us-east-store"]
    assert state.status == "missing" and "re-seeded from eu-central-store" in state.problems
    assert report.as_dict()["repaired"] == [f"site/{backup_id}@us-east-store"]
    assert verify_backup(plan, backup_id, depth="full", location="us-east-store")["ok"]
    assert check_copies(plan, "site").ok


def test_a_corrupt_offsite_object_is_reseeded_and_keeps_the_offsite_key(copied):
    plan, root, backup_id = copied
    flip_a_byte(object_file(root, "vault", backup_id))
    count = committed_count(plan)
    report = check_copies(plan, "site")
    vault = states(report, backup_id)["vault"]
    assert vault.status == "damaged" and vault.repaired
    assert "data-0000.zst.dfe" in vault.problems[0] and "sha256" in vault.problems[0]
    assert object_file(root, "vault", backup_id).read_bytes() == object_file(root, "eu-central-store", backup_id).read_bytes()
    keys = find_backup(plan, backup_id, dataset="site", location="vault").manifest.keys
    assert [k["category"] for k in keys] == ["offsite"]
    assert committed_count(plan) == count  # a repair never removes a committed backup


def test_a_damaged_home_copy_is_reseeded_from_another_region(copied):
    plan, root, backup_id = copied
    object_file(root, "eu-central-store", backup_id).write_bytes(b"truncated")
    report = check_copies(plan, "site")
    home = states(report, backup_id)["eu-central-store"]
    assert home.status == "damaged" and home.repaired and home.problems[-1].startswith("re-seeded from ")
    assert verify_backup(plan, backup_id, depth="full", location="eu-central-store")["ok"]


def test_an_unreadable_manifest_is_replaced(copied):
    plan, root, backup_id = copied
    manifest_file(root, "us-east-store", backup_id).write_text("{not json")
    report = check_copies(plan, "site")
    state = states(report, backup_id)["us-east-store"]
    assert state.status == "damaged" and state.repaired and "manifest" in state.problems[0]
    assert find_backup(plan, backup_id, dataset="site", location="us-east-store").manifest.backup_id == backup_id


def test_no_repair_reports_and_changes_nothing(copied):
    plan, root, backup_id = copied
    manifest_file(root, "vault", backup_id).unlink()
    report = check_copies(plan, "site", repair=False)
    assert not report.ok and report.repaired == []
    assert states(report, backup_id)["vault"].status == "missing"
    assert manifests_at(root, "vault") == []


def test_a_backup_without_any_good_copy_is_reported_not_repaired(copied):
    plan, root, backup_id = copied
    for location in LOCATIONS:
        flip_a_byte(object_file(root, location, backup_id))
    report = check_copies(plan, "site")
    assert not report.ok and report.repaired == []
    assert all(s.repair_error == "no good copy to re-seed from" for s in states(report, backup_id).values())
    assert committed_count(plan) == 3  # damaged, but nothing was deleted


def test_missing_parents_come_back_with_their_incremental(copied):
    plan, root, parent = copied
    child = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    store = store_for(plan, "eu-central-store")
    m = find_backup(plan, child, dataset="site").manifest
    store.put_bytes(f"datasets/site/manifests/{child}.json",
                    m.replace(parents=[parent]).sign(data_key_for(plan, m)).to_bytes())
    manifest_file(root, "us-east-store", parent).unlink()
    report = check_copies(plan, "site")
    assert f"site/{parent}@us-east-store" in report.repaired and f"site/{child}@us-east-store" in report.repaired
    assert manifests_at(root, "us-east-store") == sorted([parent, child])


def test_a_missing_copy_past_retention_is_not_reseeded(copied):
    plan, root, old = copied
    run_backup(plan, "site", "hourly", region="eu-central")  # a newer backup
    store = store_for(plan, "eu-central-store")
    m = find_backup(plan, old, dataset="site").manifest
    aged = m.replace(created_at=m.created_at - timedelta(days=2)).sign(data_key_for(plan, m))
    store.put_bytes(f"datasets/site/manifests/{old}.json", aged.to_bytes())
    manifest_file(root, "vault", old).unlink()  # prune got there first
    report = check_copies(plan, "site")
    assert states(report, old)["vault"].status == "expired" and old not in manifests_at(root, "vault")


def test_a_missing_copy_past_retention_but_on_legal_hold_is_reseeded(copied):
    from drfleet.datapath.holds import place_hold

    plan, root, old = copied
    run_backup(plan, "site", "hourly", region="eu-central")
    store = store_for(plan, "eu-central-store")
    m = find_backup(plan, old, dataset="site").manifest
    aged = m.replace(created_at=m.created_at - timedelta(days=2)).sign(data_key_for(plan, m))
    store.put_bytes(f"datasets/site/manifests/{old}.json", aged.to_bytes())
    place_hold(plan, f"site/{old}", by="legal", reason="case 42")
    manifest_file(root, "vault", old).unlink()
    report = check_copies(plan, "site")
    assert f"site/{old}@vault" in report.repaired and old in manifests_at(root, "vault")
