"""Immutable backups on S3 (a real moto server): versioning and Object Lock retention on
every object at write time, deletes that never try early and clean every version once the
retention ended, and bad settings refused before anything is written."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest

from drfleet.providers.storage.errors import InvalidStoreSettings, ObjectLocked
from drfleet.providers.storage.s3 import S3Store, prepare_bucket
from tests.fixtures.util import wait_for

MiB = 1 << 20


def _locked_bucket(s3_server) -> str:
    name = f"drfleet-lock-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def _store(s3_server, bucket, **settings) -> S3Store:
    return S3Store(**s3_server.store_settings(bucket), name="immutable-offsite", **settings)


@pytest.mark.parametrize("mode", ["GOVERNANCE", "COMPLIANCE"])
def test_every_object_is_locked_at_write_time(s3_server, mode):
    bucket = _locked_bucket(s3_server)
    store = _store(s3_server, bucket, lock_mode=mode, lock_seconds=3600, part_size=5 * MiB)
    before = datetime.now(timezone.utc)
    store.put_bytes("datasets/db/objects/small", b"x" * 100)
    with store.writer("datasets/db/objects/big") as writer:  # a multipart upload
        writer.write(b"y" * (5 * MiB + 1))
        writer.commit()
    client = s3_server.client()
    for key in ("datasets/db/objects/small", "datasets/db/objects/big"):
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == mode
        assert head["ObjectLockRetainUntilDate"] >= before.replace(microsecond=0)
        assert store.retained_until(key) == head["ObjectLockRetainUntilDate"]


def test_hold_markers_stay_unlocked_so_they_can_be_released(s3_server):
    bucket = _locked_bucket(s3_server)
    store = _store(s3_server, bucket, lock_mode="GOVERNANCE", lock_seconds=3600)
    store.put_bytes("datasets/db/holds/b1.json", b"{}")
    assert "ObjectLockMode" not in s3_server.client().head_object(Bucket=bucket, Key="datasets/db/holds/b1.json")
    store.delete("datasets/db/holds/b1.json")
    assert not store.exists("datasets/db/holds/b1.json")


def test_delete_refuses_while_locked_and_removes_every_version_once_the_retention_ended(s3_server):
    bucket = _locked_bucket(s3_server)
    store = _store(s3_server, bucket, lock_mode="COMPLIANCE", lock_seconds=2)
    store.put_bytes("k", b"v1")
    store.put_bytes("k", b"v2")
    with pytest.raises(ObjectLocked) as caught:
        store.delete("k")
    assert caught.value.facts["store"] == "immutable-offsite"
    assert store.get_bytes("k") == b"v2"
    versions = s3_server.client().list_object_versions(Bucket=bucket, Prefix="k")["Versions"]
    assert len(versions) == 2  # nothing was deleted, not even the older version
    until = store.retained_until("k")
    wait_for(lambda: datetime.now(timezone.utc) > until, timeout=10, what="the retention to end")
    time.sleep(0.05)
    store.delete("k")
    listed = s3_server.client().list_object_versions(Bucket=bucket, Prefix="k")
    assert listed.get("Versions", []) == [] and listed.get("DeleteMarkers", []) == []


def test_a_worker_delete_without_version_leaves_the_data_recoverable(s3_server):
    """What an attacker's plain DeleteObject does on a versioned bucket: a delete marker."""
    bucket = _locked_bucket(s3_server)
    store = _store(s3_server, bucket, lock_mode="GOVERNANCE", lock_seconds=3600)
    store.put_bytes("manifest", b"precious")
    client = s3_server.client()
    client.delete_object(Bucket=bucket, Key="manifest")
    assert not store.exists("manifest")
    version = client.list_object_versions(Bucket=bucket, Prefix="manifest")["Versions"][0]
    assert client.get_object(Bucket=bucket, Key="manifest", VersionId=version["VersionId"])["Body"].read() == b"precious"
    with pytest.raises(Exception, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key="manifest", VersionId=version["VersionId"])


def test_a_bucket_without_object_lock_is_refused_before_anything_is_written(s3_server, s3_bucket):
    s3_server.client().put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    store = _store(s3_server, s3_bucket, lock_mode="COMPLIANCE", lock_seconds=60, part_size=5 * MiB)
    with pytest.raises(InvalidStoreSettings, match="does not support Object Lock") as caught:
        store.put_bytes("k", b"v")
    assert "immutable-offsite" in str(caught.value) and s3_bucket in str(caught.value)
    assert s3_server.secret_access_key not in str(caught.value)
    with pytest.raises(InvalidStoreSettings), store.writer("big") as writer:
        writer.write(b"z" * (6 * MiB))
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
    assert store.list_incomplete_uploads() == []


def test_a_bucket_without_versioning_is_refused(s3_server, s3_bucket):
    store = _store(s3_server, s3_bucket, versioning=True)
    with pytest.raises(InvalidStoreSettings, match="versioning is not enabled"):
        store.put_bytes("k", b"v")
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


def test_prepare_bucket_turns_versioning_on(s3_server, s3_bucket):
    store = _store(s3_server, s3_bucket, versioning=True)
    assert prepare_bucket(store) == ["versioning enabled"]
    assert prepare_bucket(store) == []
    store.put_bytes("k", b"1")
    store.delete("k")
    assert s3_server.client().list_object_versions(Bucket=s3_bucket).get("Versions", []) == []


@pytest.mark.parametrize("settings", [{"lock_mode": "FOREVER", "lock_seconds": 5},
                                      {"lock_mode": "GOVERNANCE"}, {"lock_seconds": 5},
                                      {"lock_mode": "COMPLIANCE", "lock_seconds": 0}])
def test_impossible_lock_settings_are_refused(settings):
    with pytest.raises(InvalidStoreSettings):
        S3Store("b", **settings)
