"""Bad input and faults on the data path: each ends in a clear error naming what is
wrong, and no half-written backup is ever visible."""

import json
import os
import subprocess

import pytest

from drfleet.backup_format.errors import UnknownManifestVersion, WrongKey
from drfleet.backup_format.keyring import create_keyring
from drfleet.datapath.backup import OBJECT_NAME, run_backup
from drfleet.datapath.catalog import find_backup, list_backups
from drfleet.datapath.errors import BackupNotFound
from drfleet.datapath.restore import restore_backup
from drfleet.datapath.verify import verify_backup
from drfleet.plan.loader import load_plan
from drfleet.providers.storage import StoreFull, StoreUnavailable, innermost
from tests.fixtures.plans import dataset, policy
from tests.fixtures.util import wait_for


def stores(tmp_path):
    return tmp_path / "plan" / "stores" / "eu-central"


def object_path(tmp_path, backup_id):
    return stores(tmp_path) / "datasets" / "site" / "backups" / backup_id / OBJECT_NAME


def manifest_path(tmp_path, backup_id):
    return stores(tmp_path) / "datasets" / "site" / "manifests" / f"{backup_id}.json"


@pytest.fixture
def committed(files_plan):
    plan, src = files_plan
    return plan, run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]


def test_wrong_key_names_the_key_id_and_writes_nothing(committed, tmp_path):
    plan, backup_id = committed
    manifest = json.loads(manifest_path(tmp_path, backup_id).read_text())
    keyring = tmp_path / "plan" / "keys" / "content.keyring"
    keyring.unlink()
    create_keyring(keyring, "content")  # a different master key under the same category
    target = tmp_path / "restored"
    with pytest.raises(WrongKey) as info:
        restore_backup(plan, backup_id, str(target))
    assert manifest["keys"][0]["key_id"] in str(info.value)
    assert not target.exists()


@pytest.mark.parametrize("where", ["header", "middle", "tag"])
def test_a_corrupted_byte_fails_verify_and_restore_naming_the_object(committed, tmp_path, where):
    plan, backup_id = committed
    path = object_path(tmp_path, backup_id)
    data = bytearray(path.read_bytes())
    offset = {"header": 10, "middle": len(data) // 2, "tag": len(data) - 3}[where]
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))
    report = verify_backup(plan, backup_id)
    assert not report["ok"] and OBJECT_NAME in " ".join(report["problems"])
    with pytest.raises(Exception) as info:
        restore_backup(plan, backup_id, str(tmp_path / "restored"))
    assert OBJECT_NAME in str(info.value)


def test_a_truncated_object_fails_verify_and_restore(committed, tmp_path):
    plan, backup_id = committed
    path = object_path(tmp_path, backup_id)
    path.write_bytes(path.read_bytes()[:-20])
    report = verify_backup(plan, backup_id, depth="quick")
    assert not report["ok"] and "manifest says" in report["problems"][0]
    with pytest.raises(Exception) as info:
        restore_backup(plan, backup_id, str(tmp_path / "restored"))
    assert OBJECT_NAME in str(info.value)


def test_a_backup_without_manifest_does_not_exist(committed, tmp_path):
    plan, backup_id = committed
    manifest_path(tmp_path, backup_id).unlink()
    assert list_backups(plan, "site").backups == []
    with pytest.raises(BackupNotFound, match=backup_id):
        restore_backup(plan, backup_id, str(tmp_path / "restored"))


def test_an_unknown_manifest_version_is_refused(committed, tmp_path):
    plan, backup_id = committed
    path = manifest_path(tmp_path, backup_id)
    doc = json.loads(path.read_text())
    doc["version"] = 99
    path.write_text(json.dumps(doc))
    listing = list_backups(plan, "site")
    assert listing.backups == [] and "99" in listing.problems[0]
    with pytest.raises(UnknownManifestVersion):
        find_backup(plan, backup_id)


def test_disk_full_in_the_filesystem_store_leaves_no_backup(files_plan, tmp_path):
    plan, src = files_plan
    (src / "big.bin").write_bytes(os.urandom(3 << 20))
    root = stores(tmp_path)
    root.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        with pytest.raises(StoreFull):
            run_backup(plan, "site", "hourly", region="eu-central")
        assert [p for p in root.rglob("*") if p.is_file()] == []
    finally:
        subprocess.run(["umount", str(root)], check=False)
    assert list_backups(plan, "site").backups == []


def test_s3_store_unreachable_mid_upload_leaves_no_backup_and_no_multipart(tmp_path, s3_server, monkeypatch):
    from tests.fixtures.fleet import write_plan
    from tests.fixtures.s3_server import TcpRelay

    bucket = s3_server.new_bucket()
    relay = TcpRelay(s3_server.port).restore()
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(64 << 20))
    monkeypatch.setenv("T_S3_KEY", s3_server.access_key_id)
    monkeypatch.setenv("T_S3_SECRET", s3_server.secret_access_key)
    datasets = dataset("site", policy("hourly", "hourly", "24 hours", copies=["offsite:s3-off"]), source=src)
    storage = (f"s3-off: {{kind: s3, offsite: true, bucket: {bucket}, endpoint_url: '{relay.endpoint_url}', "
               f"s3_region: {s3_server.region}, access_key: {{env: T_S3_KEY}}, secret_key: {{env: T_S3_SECRET}}}}\n")
    path = write_plan(tmp_path / "plan", datasets=datasets, storage=storage)
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    plan = load_plan(path)
    import threading

    from drfleet.datapath.locations import store_for

    def cut_once_a_multipart_upload_is_under_way():
        def under_way():
            return s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads")
        wait_for(under_way, timeout=60, interval=0.01, what="a multipart upload to start")
        relay.cut()

    cutter = threading.Thread(target=cut_once_a_multipart_upload_is_under_way, daemon=True)
    cutter.start()
    with pytest.raises(StoreUnavailable):
        run_backup(plan, "site", "hourly", region="eu-central", location="s3-off")
    cutter.join()
    relay.restore()
    store = store_for(plan, "s3-off")
    assert list(store.list("")) == []
    # the writer's own abort could not reach the endpoint while it was cut; the orphan it
    # leaves is visible to the reaper once the endpoint is back, and the reaper removes it
    inner = innermost(store)
    inner.abort_incomplete_uploads()
    assert inner.list_incomplete_uploads() == []
    assert list_backups(plan, "site").backups == []
    relay.cut()
