"""Legal holds: markers next to the backup in every store that has it, honoured by prune
in every location, independent of Redis, invisible to the catalog."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
import redis

from drfleet.backup_format.keyring import create_keyring, load_keyring
from drfleet.datapath.catalog import list_backups
from drfleet.datapath.errors import BackupNotFound
from drfleet.datapath.holds import held_backup_ids, hold_key, list_holds, place_hold, release_hold
from drfleet.datapath.locations import store_for
from drfleet.datapath.prune import prune_location
from tests.datapath.retention_builders import committed, plan_with, put_backup

T0 = datetime(2024, 3, 4, tzinfo=timezone.utc)
DAY = timedelta(days=1)
POLICIES = "- {name: daily, trigger: daily, keep: 2 days, copies: [home-region, offsite]}\n"


@pytest.fixture
def plan(tmp_path):
    plan = plan_with(tmp_path / "plan", POLICIES)
    os.makedirs(os.path.dirname(plan.keys["content"].file), exist_ok=True)
    create_keyring(plan.keys["content"].file, "content")  # hold markers are signed with it
    return plan


@pytest.fixture
def no_redis(monkeypatch):
    """Fleet state pointing at a port nothing listens on: holds must not need it."""
    from tests.fixtures.util import free_port
    monkeypatch.setenv("DRFLEET_STATE_URL", f"redis://127.0.0.1:{free_port()}/0")


def test_a_hold_is_a_marker_next_to_the_backup_in_every_store_that_has_it(plan, no_redis):
    home, offsite, other = (store_for(plan, n) for n in ("eu-central-store", "offsite", "us-east-store"))
    backup_id = put_backup([home, offsite], "site", "daily", T0)
    hold = place_hold(plan, backup_id, by="alice", reason="litigation 2024-17", now=T0 + DAY)
    assert hold.locations == ("eu-central-store", "offsite")
    marker = json.loads(home.get_bytes(f"datasets/site/holds/{backup_id}.json"))
    key_id = load_keyring("content", file=plan.keys["content"].file).active.id
    assert marker.pop("mac") and marker == {
        "format": "drfleet-hold", "version": 2, "dataset": "site", "backup_id": backup_id, "by": "alice",
        "at": "2024-03-05T00:00:00Z", "reason": "litigation 2024-17", "key_id": key_id}
    assert offsite.exists(hold_key("site", backup_id)) and not other.exists(hold_key("site", backup_id))
    [listed] = list_holds(plan)
    assert (listed.backup_id, listed.by, listed.locations) == (backup_id, "alice", ("eu-central-store", "offsite"))
    assert held_backup_ids(plan, "site") == {backup_id}


def test_the_catalog_does_not_see_hold_markers(plan, no_redis):
    home = store_for(plan, "eu-central-store")
    backup_id = put_backup([home], "site", "daily", T0)
    place_hold(plan, f"site/{backup_id}", by="alice")
    listing = list_backups(plan, "site")
    assert [r.backup_id for r in listing.backups] == [backup_id] and listing.problems == []


def test_holding_a_backup_that_does_not_exist_is_a_clear_error(plan, no_redis):
    with pytest.raises(BackupNotFound) as err:
        place_hold(plan, "20240101T000000Z-0badc0de", by="alice")
    assert "20240101T000000Z-0badc0de" in str(err.value) and "drfleet backups list" in str(err.value)


def test_a_held_backup_survives_prune_everywhere_until_released(plan, redis_url, monkeypatch):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    state = redis.Redis.from_url(redis_url)
    home, offsite = store_for(plan, "eu-central-store"), store_for(plan, "offsite")
    held = put_backup([home, offsite], "site", "daily", T0)
    free = put_backup([home, offsite], "site", "daily", T0 + DAY)
    newest = put_backup([home, offsite], "site", "daily", T0 + 30 * DAY)
    place_hold(plan, held, by="alice", reason="audit")
    for location in ("eu-central-store", "offsite"):
        report = prune_location(plan, location, now=T0 + 30 * DAY, client=state)
        assert report.deleted == [f"site/{free}"]
        assert report.decisions["site"].kept[0].reasons[0] == "on legal hold"
    assert committed(home) == committed(offsite) == {held, newest}

    state.flushall()  # Redis lost: the hold lives in the stores
    assert held_backup_ids(plan, "site") == {held}
    assert prune_location(plan, "eu-central-store", now=T0 + 30 * DAY, client=state).deleted == []

    assert release_hold(plan, held) == ["eu-central-store", "offsite"]
    assert release_hold(plan, held) == []  # not on hold any more: nothing to release
    prune_location(plan, "eu-central-store", now=T0 + 30 * DAY, client=state)
    assert committed(home) == {newest}


def test_a_hold_in_one_store_protects_the_copies_in_the_others(plan, redis_url, monkeypatch):
    """A copy made after the hold has no marker of its own; the marker at home covers it."""
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    home, offsite = store_for(plan, "eu-central-store"), store_for(plan, "offsite")
    held = put_backup([home], "site", "daily", T0)
    place_hold(plan, held, by="alice")
    offsite.put_bytes(f"datasets/site/manifests/{held}.json", home.get_bytes(f"datasets/site/manifests/{held}.json"))
    put_backup([offsite], "site", "daily", T0 + 30 * DAY)
    prune_location(plan, "offsite", now=T0 + 30 * DAY, client=redis.Redis.from_url(redis_url))
    assert held in committed(offsite)


def test_release_with_a_dataset_prefix_and_unrelated_files_in_the_holds_directory(plan, no_redis):
    home = store_for(plan, "eu-central-store")
    backup_id = put_backup([home], "site", "daily", T0)
    place_hold(plan, backup_id, by="alice")
    home.put_bytes("datasets/site/holds/README.txt", b"not a hold")
    assert held_backup_ids(plan, "site") == {backup_id}
    assert release_hold(plan, f"site/{backup_id}") == ["eu-central-store"]
    assert held_backup_ids(plan, "site") == set()


# -- authenticated markers -------------------------------------------------------------------

def _forge(store, backup_id: str, marker: dict) -> None:
    store.put_bytes(hold_key("site", backup_id), json.dumps(marker).encode())


def test_a_forged_marker_holds_nothing_and_prune_reports_it(plan, redis_url, monkeypatch):
    """Credentials that can write to the store but lack the keyring cannot keep a backup."""
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    home = store_for(plan, "eu-central-store")
    old = put_backup([home], "site", "daily", T0)
    newest = put_backup([home], "site", "daily", T0 + 30 * DAY)
    _forge(home, old, {"format": "drfleet-hold", "version": 1, "dataset": "site", "backup_id": old,
                       "by": "mallory", "at": "2024-03-05T00:00:00Z", "reason": "keep forever"})
    refused: list[str] = []
    assert held_backup_ids(plan, "site", refused=refused) == set()
    assert "not signed" in refused[0] and "eu-central-store" in refused[0]
    report = prune_location(plan, "eu-central-store", now=T0 + 30 * DAY, client=redis.Redis.from_url(redis_url))
    assert report.deleted == [f"site/{old}"] and committed(home) == {newest}
    assert any("refused" in p and old in p for p in report.problems)
    [listed] = list_holds(plan)
    assert not listed.valid and "refused" in listed.reason


def test_a_marker_with_a_made_up_mac_or_key_is_refused(plan, no_redis, tmp_path):
    home = store_for(plan, "eu-central-store")
    backup_id = put_backup([home], "site", "daily", T0)
    place_hold(plan, backup_id, by="alice")
    genuine = json.loads(home.get_bytes(hold_key("site", backup_id)))
    for change, why in [({"reason": "edited after signing"}, "does not match"),
                        ({"mac": "0" * 64}, "does not match"),
                        ({"key_id": "content-20240101-deadbeef"}, "does not have")]:
        _forge(home, backup_id, {**genuine, **change})
        refused: list[str] = []
        assert held_backup_ids(plan, "site", refused=refused) == set()
        assert why in refused[0]
    create_keyring(tmp_path / "other.keyring", "content")  # signed, but not with the plan's key
    other = load_keyring("content", file=tmp_path / "other.keyring")
    from drfleet.datapath.holds import sign_marker
    fields = {k: v for k, v in genuine.items() if k not in ("mac", "key_id")}
    home.put_bytes(hold_key("site", backup_id), sign_marker(fields, other))
    refused = []
    assert held_backup_ids(plan, "site", refused=refused) == set() and refused


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"pad": "' + b"a" * (1 << 17) + b'"}'])
def test_a_marker_bomb_holds_nothing_and_is_reported_not_a_crash(plan, no_redis, body):
    home = store_for(plan, "eu-central-store")
    backup_id = put_backup([home], "site", "daily", T0)
    home.put_bytes(hold_key("site", backup_id), body)
    refused: list[str] = []
    assert held_backup_ids(plan, "site", refused=refused) == set()
    assert "not a hold" in refused[0]


def test_a_genuine_marker_copied_to_another_backup_is_refused(plan, no_redis):
    home = store_for(plan, "eu-central-store")
    held = put_backup([home], "site", "daily", T0)
    other = put_backup([home], "site", "daily", T0 + DAY)
    place_hold(plan, held, by="alice")
    home.put_bytes(hold_key("site", other), home.get_bytes(hold_key("site", held)))
    refused: list[str] = []
    assert held_backup_ids(plan, "site", refused=refused) == {held}
    assert "another backup" in refused[0]


def test_holds_survive_a_key_rotation(plan, no_redis):
    from drfleet.backup_format.keyring import rotate_keyring
    home = store_for(plan, "eu-central-store")
    backup_id = put_backup([home], "site", "daily", T0)
    place_hold(plan, backup_id, by="alice")
    rotate_keyring(plan.keys["content"].file)
    assert held_backup_ids(plan, "site") == {backup_id}
