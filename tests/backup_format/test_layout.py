from datetime import datetime, timedelta, timezone

import pytest

from drfleet.backup_format.errors import InvalidName, NaiveTimestamp, NotAManifestKey
from drfleet.backup_format.layout import (
    backup_time,
    check_backup_id,
    manifest_key,
    manifests_prefix,
    new_backup_id,
    object_key,
    parse_manifest_key,
)

MAY_FIRST = datetime(2024, 5, 1, 3, 15, 9, tzinfo=timezone.utc)


def test_backup_id_is_utc_start_time_then_eight_lowercase_hex():
    backup_id = new_backup_id(MAY_FIRST)
    stamp, suffix = backup_id.split("-")
    assert stamp == "20240501T031509Z"
    assert len(suffix) == 8 and suffix == suffix.lower() and int(suffix, 16) >= 0


def test_backup_id_converts_other_timezones_to_utc():
    in_berlin = MAY_FIRST.astimezone(timezone(timedelta(hours=2)))
    assert new_backup_id(in_berlin).startswith("20240501T031509Z-")


def test_two_backups_in_the_same_second_get_different_ids():
    assert new_backup_id(MAY_FIRST) != new_backup_id(MAY_FIRST)


def test_backup_ids_sort_by_time():
    times = [MAY_FIRST + timedelta(seconds=s) for s in (3600, 1, 86400 * 40, 0)]
    ids = [new_backup_id(t) for t in times]
    assert [backup_time(i) for i in sorted(ids)] == sorted(times)


def test_backup_id_without_a_time_uses_now_and_is_valid():
    assert check_backup_id(new_backup_id())


def test_naive_datetime_is_refused_rather_than_guessed():
    with pytest.raises(NaiveTimestamp):
        new_backup_id(datetime(2024, 5, 1, 3, 15))


def test_keys_follow_the_documented_layout():
    backup_id = "20240501T031500Z-9f2c01ab"
    assert manifests_prefix("orders") == "datasets/orders/manifests/"
    assert manifest_key("orders", backup_id) == "datasets/orders/manifests/20240501T031500Z-9f2c01ab.json"
    assert (object_key("orders", backup_id, "data-0000.zst.dfe")
            == "datasets/orders/backups/20240501T031500Z-9f2c01ab/data-0000.zst.dfe")


def test_manifest_key_parses_back_into_dataset_and_backup_id():
    backup_id = new_backup_id(MAY_FIRST)
    assert parse_manifest_key(manifest_key("orders-eu.v2", backup_id)) == ("orders-eu.v2", backup_id)


@pytest.mark.parametrize("key", [
    "datasets/orders/backups/20240501T031500Z-9f2c01ab/data-0000.zst.dfe",
    "datasets/orders/manifests/20240501T031500Z-9f2c01ab",
    "datasets/orders/manifests/20240501T031500Z-9F2C01AB.json",
    "datasets/../manifests/20240501T031500Z-9f2c01ab.json",
    "prefix/datasets/orders/manifests/20240501T031500Z-9f2c01ab.json",
    "datasets/orders/manifests/latest.json",
    "",
])
def test_anything_but_a_manifest_key_is_refused_with_the_key_named(key):
    with pytest.raises(NotAManifestKey) as caught:
        parse_manifest_key(key)
    assert caught.value.facts["key"] == key


@pytest.mark.parametrize("dataset", ["", "a/b", "..", ".hidden", "Orders", "with space", "x" * 129,
                                     "tab\there", "ümlaut", "-leading-dash"])
def test_unsafe_dataset_names_are_refused(dataset):
    with pytest.raises(InvalidName) as caught:
        manifests_prefix(dataset)
    assert repr(dataset) in str(caught.value)


@pytest.mark.parametrize("name", ["", "../escape", "a/b", "DATA.zst", ".", "x" * 201, "nul\x00"])
def test_unsafe_object_names_are_refused(name):
    with pytest.raises(InvalidName):
        object_key("orders", "20240501T031500Z-9f2c01ab", name)


@pytest.mark.parametrize("backup_id", ["20240230T000000Z-9f2c01ab", "20240501T031500-9f2c01ab",
                                       "20240501T031500Z-9f2c01a", "20240501T031500Z-9F2C01AB",
                                       "20240501T246000Z-9f2c01ab", "latest"])
def test_malformed_backup_ids_are_refused(backup_id):
    with pytest.raises(InvalidName):
        manifest_key("orders", backup_id)
