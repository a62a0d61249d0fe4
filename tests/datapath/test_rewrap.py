"""Re-wrapping old backups under a rotated key: manifests change, objects never do, and the
old key can then leave the keyring."""

import json
import os
import shutil
from pathlib import Path

import pytest

from drfleet.backup_format.keyring import Keyring, load_keyring, rotate_keyring
from drfleet.datapath.backup import run_backup
from drfleet.datapath.catalog import list_backups
from drfleet.datapath.key_checks import check_key_separation
from drfleet.datapath.restore import restore_backup
from drfleet.datapath.rewrap import RewrapFailed, find_old_wrappings, rewrap_category
from drfleet.datapath.verify import verify_backup


def keyring_path(plan, category):
    return plan.keys[category].file


def drop_all_but_active(path, category):
    """Rewrite the keyring with only its active key (what an operator does to retire old keys)."""
    ring = load_keyring(category, file=path)
    only = Keyring(category, [ring.active], ring.active.id)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as handle:
        json.dump(only.to_document(), handle)


def objects_of(root):
    return {p: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("*.dfe")}


def copy_backup(plan, backup_id, src_location, dst_location):
    """Put a copy of a backup in another location, byte for byte (what a copy task leaves)."""
    from drfleet.backup_format.layout import manifest_key, object_key
    from drfleet.datapath.backup import OBJECT_NAME

    src, dst = Path(plan.storage[src_location].path), Path(plan.storage[dst_location].path)
    for key in (manifest_key("site", backup_id), object_key("site", backup_id, OBJECT_NAME)):
        (dst / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / key, dst / key)


@pytest.fixture
def rotated(files_plan, tmp_path):
    """Two backups under the first key, a rotation, one backup under the new key."""
    plan, src = files_plan
    old = [run_backup(plan, "site", "hourly", region="eu-central")["backup_id"] for _ in range(2)]
    first_key = load_keyring("content", file=keyring_path(plan, "content")).active.id
    new_key = rotate_keyring(keyring_path(plan, "content"))
    new = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    return plan, src, old, new, first_key, new_key


def test_dry_run_lists_old_backups_and_changes_nothing(rotated, tmp_path):
    plan, _, old, new, first_key, new_key = rotated
    stores = tmp_path / "plan" / "stores"
    before = {p: p.read_bytes() for p in stores.rglob("*") if p.is_file()}
    report = rewrap_category(plan, "content", dry_run=True)
    assert sorted(i.backup_id for i in report.pending) == sorted(old)
    assert {i.old_key_ids for i in report.pending} == {(first_key,)}
    assert report.active_key_id == new_key and report.current == 1 and report.rewrapped == []
    assert {p: p.read_bytes() for p in stores.rglob("*") if p.is_file()} == before


def test_rewrap_moves_old_backups_to_the_new_key_without_touching_objects(rotated, tmp_path):
    plan, src, old, new, first_key, new_key = rotated
    copy_backup(plan, old[0], "eu-central-store", "us-east-store")  # a copy elsewhere is re-wrapped too
    stores = tmp_path / "plan" / "stores"
    objects_before = objects_of(stores)
    report = rewrap_category(plan, "content")
    assert sorted((i.location, i.backup_id) for i in report.rewrapped) == sorted(
        [("eu-central-store", old[0]), ("eu-central-store", old[1]), ("us-east-store", old[0])])
    assert report.pending == [] and report.problems == []
    assert objects_of(stores) == objects_before  # same bytes, same inode, same mtime: not rewritten
    for record in list_backups(plan, "site").backups:
        assert [(e["category"], e["key_id"]) for e in record.manifest.keys] == [("content", new_key)]
    # the old key can now leave the keyring: every backup still verifies and restores
    drop_all_but_active(keyring_path(plan, "content"), "content")
    for backup_id in old + [new]:
        assert verify_backup(plan, f"site/{backup_id}", depth="full")["ok"]
    restore_backup(plan, old[0], str(tmp_path / "restored"))
    assert (tmp_path / "restored" / "img" / "a.bin").read_bytes() == (src / "img" / "a.bin").read_bytes()
    again = rewrap_category(plan, "content")
    assert again.rewrapped == [] and again.pending == [] and again.current == 4  # idempotent


def test_without_rewrap_dropping_the_old_key_makes_old_backups_unreadable(rotated):
    plan, _, old, _, first_key, _ = rotated
    drop_all_but_active(keyring_path(plan, "content"), "content")
    report = verify_backup(plan, f"site/{old[0]}", depth="full")
    assert not report["ok"] and first_key in json.dumps(report)
    after = rewrap_category(plan, "content")  # the old key is gone: nothing can be re-wrapped
    assert len(after.pending) == 2 and after.rewrapped == []
    assert all(first_key in problem for problem in after.problems)


def test_a_tampered_manifest_is_reported_and_left_as_it_is(rotated, tmp_path):
    plan, _, old, _, _, _ = rotated
    manifest = next((tmp_path / "plan" / "stores" / "eu-central").rglob(f"{old[0]}.json"))
    doc = json.loads(manifest.read_bytes())
    doc["plaintext_size"] += 1  # still canonical JSON, but the MAC no longer matches
    tampered = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    manifest.write_bytes(tampered)
    report = rewrap_category(plan, "content")
    assert [i.backup_id for i in report.rewrapped] == [old[1]]
    assert [i.backup_id for i in report.pending] == [old[0]]
    assert report.problems == [f"eu-central-store: site/{old[0]} ({report.pending[0].old_key_ids[0]}): "
                               "manifest failed verification: MAC does not match"]
    assert manifest.read_bytes() == tampered


def test_other_categories_wrappings_are_kept(rotated, tmp_path):
    """A manifest whose data key is also wrapped under an offsite category keeps that entry."""
    from drfleet.backup_format.datakey import unwrap_data_key, wrap_data_key
    from drfleet.backup_format.manifest import Manifest
    from drfleet.datapath.locations import keyring_for

    plan, _, old, _, _, new_key = rotated
    path = next((tmp_path / "plan" / "stores" / "eu-central").rglob(f"{old[0]}.json"))
    manifest = Manifest.from_bytes(path.read_bytes())
    data_key = unwrap_data_key(manifest.keys, keyring_for(plan, "content"))
    offsite_entry = wrap_data_key(data_key, keyring_for(plan, "offsite").active)
    path.write_bytes(manifest.replace(keys=[*manifest.keys, offsite_entry]).to_bytes())
    rewrap_category(plan, "content")
    keys = Manifest.from_bytes(path.read_bytes()).keys
    assert sorted((e["category"], e["key_id"]) for e in keys) == sorted(
        [("content", new_key), ("offsite", offsite_entry["key_id"])])
    assert offsite_entry in keys  # byte for byte


def test_an_unknown_category_is_a_clear_error(files_plan):
    plan, _ = files_plan
    with pytest.raises(RewrapFailed) as caught:
        find_old_wrappings(plan, "nope")
    assert "content" in str(caught.value) and "offsite" in str(caught.value)


def test_key_check_finds_shared_keyrings_copied_keys_and_open_permissions(files_plan, tmp_path):
    from drfleet.plan.loader import load_plan_text

    plan, _ = files_plan
    assert check_key_separation(plan).ok
    keys = tmp_path / "plan" / "keys"
    # a keyring whose material was copied from another category and relabelled
    content = load_keyring("content", file=keys / "content.keyring")
    from drfleet.backup_format.keyring import MasterKey, make_key_id
    twin = MasterKey(make_key_id("media", content.active.created, content.active.material), "media",
                     content.active.material, content.active.created)
    fd = os.open(keys / "media.keyring", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(Keyring("media", [twin], twin.id).to_document(), handle)
    (keys / "alias.keyring").symlink_to(keys / "content.keyring")  # same file under another name
    text = (tmp_path / "plan" / "plan.yaml").read_text().replace(
        "keys:\n", f"keys:\n  media: {{file: {keys}/media.keyring}}\n  shared: {{file: {keys}/alias.keyring}}\n")
    report = check_key_separation(load_plan_text(text))
    problems = "\n".join(report.problems)
    assert "categories content, shared share one keyring" in problems
    assert f"key {twin.id} of media has the same material as {content.active.id} of content" in problems
    assert content.active.material.hex() not in problems
    os.chmod(keys / "offsite.keyring", 0o640)
    report = check_key_separation(plan)
    assert report.categories["offsite"] == {"error": "keyring file is accessible to group or others; refusing to use it"}
    assert any("chmod 600" in p for p in report.problems)


def test_a_plan_giving_two_categories_one_keyring_does_not_load(files_plan, tmp_path):
    from drfleet.plan.loader import PlanInvalid, load_plan_text

    text = (tmp_path / "plan" / "plan.yaml").read_text().replace(
        "keys:\n", f"keys:\n  shared: {{file: {tmp_path}/plan/keys/content.keyring}}\n")
    with pytest.raises(PlanInvalid) as caught:
        load_plan_text(text)
    assert "key category 'shared' uses the same keyring as 'content'" in str(caught.value) or \
        "key category 'content' uses the same keyring as 'shared'" in str(caught.value)
