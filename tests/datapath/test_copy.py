"""Copies of a committed backup: to another region, offsite under its own key category, to
cold storage; sovereignty at run time; incrementals with their parents; and the faults
(a corrupt source, a destination that stores other bytes, a destination that goes away),
each ending in a clear error and no manifest at the destination."""

import json
import os
import threading

import pytest

from drfleet.datapath.backup import run_backup
from drfleet.datapath.catalog import find_backup, list_backups
from drfleet.datapath.copy import CopyHashMismatch, ParentMissing, SovereigntyViolation, UnknownLocation, copy_backup
from drfleet.datapath.errors import WrongRegion
from drfleet.datapath.locations import store_for
from drfleet.datapath.reading import data_key_for
from drfleet.datapath.restore import restore_backup
from drfleet.datapath.verify import verify_backup
from drfleet.providers.datasources import open_source
from drfleet.providers.storage import StoreUnavailable
from drfleet.providers.storage.wrappers import StoreWrapper
from tests.datapath.copy_plans import make_copy_plan, manifest_file, manifests_at, object_file, store_files
from tests.fixtures.util import wait_for


@pytest.fixture
def copy_plan(tmp_path):
    plan, src = make_copy_plan(tmp_path / "plan")
    return plan, src, tmp_path / "plan"


@pytest.fixture
def committed(copy_plan):
    plan, src, root = copy_plan
    return plan, src, root, run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]


def test_a_copy_to_another_region_restores_the_same_tree_from_there(committed, tmp_path):
    plan, src, root, backup_id = committed
    result = copy_backup(plan, f"site/{backup_id}", "us-east-store")
    objects = find_backup(plan, backup_id, dataset="site").manifest.objects
    assert (result.status, result.source, result.objects) == ("copied", "eu-central-store", len(objects))
    for obj in objects:  # byte for byte
        assert object_file(root, "us-east-store", backup_id).with_name(obj.name).read_bytes() == \
            object_file(root, "eu-central-store", backup_id).with_name(obj.name).read_bytes()
    assert sorted(r.location for r in list_backups(plan, "site").backups) == ["eu-central-store", "us-east-store"]
    assert verify_backup(plan, backup_id, depth="full", location="us-east-store")["ok"]
    restore_backup(plan, backup_id, str(tmp_path / "restored"), location="us-east-store")
    files = open_source("files")
    assert files.fingerprint(str(tmp_path / "restored")) == files.fingerprint(str(src))


def test_copying_twice_leaves_the_first_copy_alone(committed):
    plan, _, root, backup_id = committed
    copy_backup(plan, f"site/{backup_id}", "us-east-store")
    manifest = manifest_file(root, "us-east-store", backup_id)
    before = manifest.stat().st_mtime_ns
    again = copy_backup(plan, f"site/{backup_id}", "us-east-store")
    assert again.status == "present" and manifest.stat().st_mtime_ns == before


def test_an_offsite_copy_is_wrapped_under_the_offsite_key_only_and_opens_without_the_content_key(committed, tmp_path):
    plan, src, root, backup_id = committed
    result = copy_backup(plan, f"site/{backup_id}", "vault")
    assert result.key_category == "offsite"
    home = json.loads(manifest_file(root, "eu-central-store", backup_id).read_text())
    vault = json.loads(manifest_file(root, "vault", backup_id).read_text())
    assert [k["category"] for k in vault["keys"]] == ["offsite"]
    assert vault["mac"] == home["mac"] and vault["objects"] == home["objects"]  # same backup, other key
    (root / "keys" / "content.keyring").unlink()  # the content keyring is lost
    restore_backup(plan, backup_id, str(tmp_path / "restored"), location="vault")
    assert (tmp_path / "restored" / "index.html").read_text() == "hello\n"


def test_a_region_only_dataset_is_never_written_outside_its_region(copy_plan):
    plan, _, root = copy_plan
    backup_id = run_backup(plan, "secret", "hourly", region="eu-central")["backup_id"]
    for outside in ("us-east-store", "offsite", "vault"):
        with pytest.raises(SovereigntyViolation) as info:
            copy_backup(plan, f"secret/{backup_id}", outside)
        assert outside in str(info.value) and "eu-central" in str(info.value)
        assert store_files(root, outside) == []
    inside = copy_backup(plan, f"secret/{backup_id}", "eu-vault")  # offsite under eu-central law
    assert inside.status == "copied" and manifests_at(root, "eu-vault", "secret") == [backup_id]


def test_a_copy_asked_of_another_region_is_refused_before_writing(committed):
    plan, _, root, backup_id = committed
    with pytest.raises(WrongRegion):
        copy_backup(plan, f"site/{backup_id}", "us-east-store", region="us-east")
    assert store_files(root, "us-east-store") == []


def test_an_unknown_location_is_a_clear_error(committed):
    plan, _, _, backup_id = committed
    with pytest.raises(UnknownLocation) as info:
        copy_backup(plan, f"site/{backup_id}", "mars")
    assert "mars" in str(info.value) and "us-east-store" in str(info.value)


def test_a_corrupt_source_object_is_refused_naming_object_and_location(committed):
    plan, _, root, backup_id = committed
    path = object_file(root, "eu-central-store", backup_id)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CopyHashMismatch) as info:
        copy_backup(plan, f"site/{backup_id}", "us-east-store")
    message = str(info.value)
    assert f"datasets/site/backups/{backup_id}/data-0000.zst.dfe" in message and "eu-central-store" in message
    assert store_files(root, "us-east-store") == []  # not committed: no object, no manifest
    assert [r.location for r in list_backups(plan, "site").backups] == ["eu-central-store"]


class BitFlippingStore(StoreWrapper):
    """A destination that stores something other than what it was given."""

    def writer(self, key, *, storage_class=None):
        inner = self.inner.writer(key, storage_class=storage_class)
        original = inner.write

        def flipped(data):
            data = bytearray(data)
            data[0] ^= 0xFF
            original(data)

        inner.write = flipped
        return inner


def test_a_destination_that_stores_other_bytes_is_refused_and_nothing_is_committed(committed, monkeypatch):
    plan, _, root, backup_id = committed
    import drfleet.datapath.copy as copy_module

    real = copy_module.store_for
    monkeypatch.setattr(copy_module, "store_for",
                        lambda p, loc: BitFlippingStore(real(p, loc)) if loc == "us-east-store" else real(p, loc))
    with pytest.raises(CopyHashMismatch) as info:
        copy_backup(plan, f"site/{backup_id}", "us-east-store")
    assert "us-east-store" in str(info.value) and "data-0000.zst.dfe" in str(info.value)
    assert "destination" in str(info.value)
    assert store_files(root, "us-east-store") == []


def _make_incremental(plan, parent_id, child_id):
    """Turn ``child_id`` into an incremental of ``parent_id`` by hand (re-signed)."""
    store = store_for(plan, "eu-central-store")
    m = find_backup(plan, child_id, dataset="site").manifest
    key = f"datasets/site/manifests/{child_id}.json"
    store.put_bytes(key, m.replace(parents=[parent_id]).sign(data_key_for(plan, m)).to_bytes())


def test_an_incremental_brings_its_missing_parents_along_first(committed):
    plan, _, root, parent = committed
    child = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    _make_incremental(plan, parent, child)
    result = copy_backup(plan, f"site/{child}", "us-east-store")
    assert result.parents_copied == [parent]
    assert manifests_at(root, "us-east-store") == sorted([parent, child])


def test_an_incremental_whose_parent_is_nowhere_is_refused_before_writing(committed):
    plan, _, root, parent = committed
    child = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    _make_incremental(plan, parent, child)
    manifest_file(root, "eu-central-store", parent).unlink()
    with pytest.raises(ParentMissing) as info:
        copy_backup(plan, f"site/{child}", "us-east-store")
    assert parent in str(info.value) and child in str(info.value)
    assert store_files(root, "us-east-store") == []


# --- S3 destinations: cold storage class, an endpoint that goes away ---------------------

def _s3_plan(tmp_path, s3_server, monkeypatch, endpoint, *, copies, big=0):
    bucket = s3_server.new_bucket()
    monkeypatch.setenv("T_S3_KEY", s3_server.access_key_id)
    monkeypatch.setenv("T_S3_SECRET", s3_server.secret_access_key)
    storage = (f"cold: {{kind: s3, offsite: true, bucket: {bucket}, endpoint_url: '{endpoint}', "
               f"s3_region: {s3_server.region}, cold_storage_class: GLACIER, "
               f"access_key: {{env: T_S3_KEY}}, secret_key: {{env: T_S3_SECRET}}}}\n")
    plan, src = make_copy_plan(tmp_path / "plan", copies=copies, storage=storage)
    if big:
        (src / "big.bin").write_bytes(os.urandom(big))
    return plan, bucket


@pytest.mark.parametrize("size", [0, 20 << 20], ids=["one-put", "multipart"])
def test_a_cold_copy_is_stored_with_the_plans_storage_class(tmp_path, s3_server, monkeypatch, size):
    plan, bucket = _s3_plan(tmp_path, s3_server, monkeypatch, s3_server.endpoint_url,
                            copies='"offsite-cold:cold"', big=size)
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    result = copy_backup(plan, f"site/{backup_id}", "cold")
    assert result.storage_class == "GLACIER"
    client = s3_server.client()
    obj = client.head_object(Bucket=bucket, Key=f"datasets/site/backups/{backup_id}/data-0000.zst.dfe")
    assert obj.get("StorageClass") == "GLACIER"
    manifest = client.head_object(Bucket=bucket, Key=f"datasets/site/manifests/{backup_id}.json")
    assert manifest.get("StorageClass", "STANDARD") == "STANDARD"  # the catalog stays readable
    assert [r.location for r in list_backups(plan, "site", locations=["cold"]).backups] == ["cold"]
    # the store will not serve an archived object: checks fall back to its size
    from drfleet.datapath.copies_check import check_copies
    cold = next(c for c in check_copies(plan, "site", repair=False).backups[0].copies if c.location == "cold")
    assert cold.status == "ok"


def test_an_ordinary_copy_to_the_same_bucket_uses_its_ordinary_class(tmp_path, s3_server, monkeypatch):
    plan, bucket = _s3_plan(tmp_path, s3_server, monkeypatch, s3_server.endpoint_url, copies='"offsite:cold"')
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    assert copy_backup(plan, f"site/{backup_id}", "cold").storage_class is None
    obj = s3_server.client().head_object(Bucket=bucket, Key=f"datasets/site/backups/{backup_id}/data-0000.zst.dfe")
    assert obj.get("StorageClass", "STANDARD") == "STANDARD"


def test_a_destination_host_that_is_unreachable_is_a_clear_error_then_a_retry_succeeds(tmp_path, s3_server, monkeypatch):
    from tests.fixtures.s3_server import TcpRelay

    relay = TcpRelay(s3_server.port)  # not listening: connection refused
    plan, bucket = _s3_plan(tmp_path, s3_server, monkeypatch, relay.endpoint_url, copies='"offsite:cold"')
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    with pytest.raises(StoreUnavailable) as info:
        copy_backup(plan, f"site/{backup_id}", "cold")
    assert "cold" in str(info.value) and relay.endpoint_url in str(info.value)
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    with relay.restore():
        assert copy_backup(plan, f"site/{backup_id}", "cold").status == "copied"
        assert verify_backup(plan, backup_id, depth="full", location="cold")["ok"]


def test_a_destination_cut_mid_copy_leaves_no_manifest_and_the_source_intact(tmp_path, s3_server, monkeypatch):
    from tests.fixtures.s3_server import TcpRelay

    relay = TcpRelay(s3_server.port).restore()
    plan, bucket = _s3_plan(tmp_path, s3_server, monkeypatch, relay.endpoint_url,
                            copies='"offsite:cold"', big=48 << 20)
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    client = s3_server.client()

    def cut_once_a_multipart_upload_is_under_way():
        wait_for(lambda: client.list_multipart_uploads(Bucket=bucket).get("Uploads"),
                 timeout=60, interval=0.01, what="a multipart upload to start")
        relay.cut()

    cutter = threading.Thread(target=cut_once_a_multipart_upload_is_under_way, daemon=True)
    cutter.start()
    with pytest.raises(StoreUnavailable):
        copy_backup(plan, f"site/{backup_id}", "cold")
    cutter.join()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not any("/manifests/" in k for k in keys)  # no half copy is visible
    assert [r.location for r in list_backups(plan, "site").backups] == ["eu-central-store"]
    relay.restore()
    assert copy_backup(plan, f"site/{backup_id}", "cold").status == "copied"
    assert verify_backup(plan, backup_id, depth="full", location="cold")["ok"]
    relay.cut()


def test_a_real_incremental_chain_restores_from_an_offsite_copy_under_the_offsite_key(tmp_path):
    root = tmp_path / "plan"
    plan, src = make_copy_plan(root)
    path = root / "plan.yaml"
    path.write_text(path.read_text().replace("keep: 24 hours, copies: [all-regions",
                                             "keep: 24 hours, mode: incremental, copies: [all-regions", 1))
    from drfleet.plan.loader import load_plan
    plan = load_plan(path)
    full = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    (src / "new.txt").write_text("added after the full backup\n")
    child = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    assert find_backup(plan, child, dataset="site").manifest.parents == [full]
    result = copy_backup(plan, f"site/{child}", "vault")
    assert result.parents_copied == [full] and manifests_at(root, "vault") == sorted([full, child])
    (root / "keys" / "content.keyring").unlink()
    restore_backup(plan, child, str(tmp_path / "restored"), location="vault")
    files = open_source("files")
    assert files.fingerprint(str(tmp_path / "restored")) == files.fingerprint(str(src))
