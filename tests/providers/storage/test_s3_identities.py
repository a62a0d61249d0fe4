"""Separate identities, proven against moto's IAM policy evaluation (server mode, auth
enforced): the workers' credentials, under compose/s3-policies/worker.json, write and read
backups but cannot delete them, remove old versions, shorten a lock or loosen the bucket;
prune's credentials (prune.json) delete once the retention ended, and cannot write.

What this does NOT prove: that AWS or MinIO evaluate these documents the same way (moto's
evaluator is a reimplementation), nor anything about credentials beyond the bucket policy
(an account root user, a leaked administrator key, bucket policies granted elsewhere)."""

from __future__ import annotations

import json
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from drfleet.providers.storage.errors import ObjectLocked, StoreAccessDenied
from drfleet.providers.storage.s3 import S3Store
from tests.fixtures.s3_server import S3Server
from tests.fixtures.util import wait_for

POLICIES = Path(__file__).resolve().parents[3] / "compose" / "s3-policies"


@pytest.fixture(scope="module")
def enforcing():
    """A moto server of our own (auth is enforced server-wide) with a locked bucket and
    the two identities; yields (server, bucket, {role: (key id, secret)})."""
    server = S3Server().start()
    try:
        yield _set_up(server)
    finally:
        server.stop()


def _set_up(server):
    bucket = f"drfleet-iam-{uuid.uuid4().hex[:10]}"
    server.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    iam = boto3.session.Session().client(
        "iam", endpoint_url=server.endpoint_url, region_name=server.region,
        aws_access_key_id=server.access_key_id, aws_secret_access_key=server.secret_access_key)
    keys = {}
    for role in ("worker", "prune"):
        iam.create_user(UserName=f"drfleet-{role}")
        document = (POLICIES / f"{role}.json").read_text().replace("BUCKET", bucket)
        iam.put_user_policy(UserName=f"drfleet-{role}", PolicyName=role, PolicyDocument=document)
        key = iam.create_access_key(UserName=f"drfleet-{role}")["AccessKey"]
        keys[role] = (key["AccessKeyId"], key["SecretAccessKey"])
    request = urllib.request.Request(f"{server.endpoint_url}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=5).close()  # from now on every request is authorised
    return server, bucket, keys


def _client(server, keys):
    return boto3.session.Session().client(
        "s3", endpoint_url=server.endpoint_url, region_name=server.region,
        aws_access_key_id=keys[0], aws_secret_access_key=keys[1])


def _store(server, bucket, keys, **settings):
    return S3Store(bucket, endpoint_url=server.endpoint_url, region=server.region,
                   access_key_id=keys[0], secret_access_key=keys[1], name="vault",
                   lock_mode="COMPLIANCE", **settings)


def _denied(call, *args, **kwargs):
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response["Error"]["Code"]


def test_the_policy_documents_are_valid_json_for_one_bucket():
    for role in ("worker", "prune"):
        doc = json.loads((POLICIES / f"{role}.json").read_text())
        assert doc["Version"] == "2012-10-17" and doc["Statement"]


def test_a_workers_credentials_write_and_read_but_cannot_erase(enforcing):
    server, bucket, keys = enforcing
    worker = _store(server, bucket, keys["worker"], lock_seconds=3600)
    worker.put_bytes("datasets/db/manifests/b1.json", b"manifest")
    assert worker.get_bytes("datasets/db/manifests/b1.json") == b"manifest"
    assert [info.key for info in worker.list()] == ["datasets/db/manifests/b1.json"]

    raw = _client(server, keys["worker"])
    assert _denied(raw.delete_object, Bucket=bucket, Key="datasets/db/manifests/b1.json") == "AccessDenied"
    version = raw.list_object_versions(Bucket=bucket)["Versions"][0]["VersionId"]
    assert _denied(raw.delete_object, Bucket=bucket, Key="datasets/db/manifests/b1.json",
                   VersionId=version) == "AccessDenied"
    assert _denied(raw.put_bucket_versioning, Bucket=bucket,
                   VersioningConfiguration={"Status": "Suspended"}) == "AccessDenied"
    assert _denied(raw.put_bucket_lifecycle_configuration, Bucket=bucket, LifecycleConfiguration={
        "Rules": [{"ID": "wipe", "Status": "Enabled", "Filter": {"Prefix": ""},
                   "Expiration": {"Days": 1}}]}) == "AccessDenied"
    with pytest.raises(ObjectLocked):  # refused before any delete is sent
        worker.delete("datasets/db/manifests/b1.json")
    worker.put_bytes("datasets/db/holds/b1.json", b"{}")  # unlocked, but still not the worker's to delete
    with pytest.raises(StoreAccessDenied) as caught:
        worker.delete("datasets/db/holds/b1.json")
    assert keys["worker"][1] not in str(caught.value)
    assert worker.get_bytes("datasets/db/manifests/b1.json") == b"manifest"
    assert worker.get_bytes("datasets/db/holds/b1.json") == b"{}"


def test_prune_deletes_once_the_retention_ended_and_cannot_write(enforcing):
    server, bucket, keys = enforcing
    worker = _store(server, bucket, keys["worker"], lock_seconds=2)
    worker.put_bytes("datasets/db/backups/b2/data", b"old")
    prune = _store(server, bucket, keys["prune"], lock_seconds=2)
    until = prune.retained_until("datasets/db/backups/b2/data")
    assert until is not None and until > datetime.now(timezone.utc) - timedelta(seconds=1)
    wait_for(lambda: datetime.now(timezone.utc) > until + timedelta(milliseconds=50), timeout=10,
             what="the retention to end")
    prune.delete("datasets/db/backups/b2/data")
    assert not worker.exists("datasets/db/backups/b2/data")
    assert _denied(_client(server, keys["prune"]).put_object, Bucket=bucket, Key="x", Body=b"x") == "AccessDenied"
