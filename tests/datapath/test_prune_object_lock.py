"""Prune on an S3 location with Object Lock (a real moto server): it never tries to delete
a backup whose retention has not ended, reports it as locked, and removes every version
of it once the retention ended; prune runs under the location's prune identity."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import redis

from drfleet.datapath.locations import store_for
from drfleet.datapath.prune import prune_location
from drfleet.plan.loader import PlanInvalid, load_plan
from drfleet.providers.storage import innermost
from tests.datapath.retention_builders import committed, put_backup, with_objects
from tests.fixtures.fleet import write_plan
from tests.fixtures.util import wait_for

T0 = datetime(2024, 3, 4, tzinfo=timezone.utc)


@pytest.fixture
def state(redis_url, monkeypatch):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    return redis.Redis.from_url(redis_url)


def _plan(tmp_path, s3_server, monkeypatch, bucket, *, keep="1 versions", retain="2 seconds"):
    monkeypatch.setenv("T_S3_KEY", s3_server.access_key_id)
    monkeypatch.setenv("T_S3_SECRET", s3_server.secret_access_key)
    monkeypatch.setenv("T_PRUNE_KEY", "prune-identity-key-id")
    monkeypatch.setenv("T_PRUNE_SECRET", "prune-identity-secret")
    storage = (f"vault: {{kind: s3, offsite: true, bucket: {bucket}, endpoint_url: '{s3_server.endpoint_url}', "
               f"s3_region: {s3_server.region}, object_lock: {{mode: COMPLIANCE, retain: {retain}}}, "
               "access_key: {env: T_S3_KEY}, secret_key: {env: T_S3_SECRET}}\n")
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    datasets = (f"site:\n  kind: files\n  region: eu-central\n  source: {{path: {src}}}\n  key: content\n"
                f"  rpo: 1h\n  rto: 1h\n  policies:\n"
                f"    - {{name: p, trigger: hourly, keep: {keep}, copies: [home-region, 'offsite:vault']}}\n")
    return write_plan(tmp_path / "plan", datasets=datasets, storage=storage)


def test_prune_skips_locked_backups_then_removes_every_version_once_the_lock_ended(tmp_path, s3_server,
                                                                                    monkeypatch, state):
    bucket = f"drfleet-prune-lock-{datetime.now().microsecond}"
    s3_server.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    plan = load_plan(_plan(tmp_path, s3_server, monkeypatch, bucket))
    vault = store_for(plan, "vault")
    old = put_backup([vault], "site", "p", T0)
    new = put_backup([vault], "site", "p", T0 + timedelta(hours=1))

    report = prune_location(plan, "vault", now=T0 + timedelta(hours=2), client=state)
    assert report.problems == [] and report.deleted == []
    assert [entry.split(" until ")[0] for entry in report.locked] == [f"site/{old}"]
    assert committed(vault) == {old, new}

    until = innermost(vault).retained_until(f"datasets/site/manifests/{old}.json")
    wait_for(lambda: datetime.now(timezone.utc) > until + timedelta(milliseconds=50), timeout=10,
             what="the retention to end")
    report = prune_location(plan, "vault", now=T0 + timedelta(hours=2), client=state)
    assert report.deleted == [f"site/{old}"] and report.locked == [] and report.problems == []
    assert committed(vault) == with_objects(vault) == {new}
    versions = s3_server.client().list_object_versions(Bucket=bucket, Prefix=f"datasets/site/backups/{old}")
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []


def test_prune_uses_the_locations_prune_identity(tmp_path, s3_server, monkeypatch):
    path = _plan(tmp_path, s3_server, monkeypatch, "any-bucket")
    text = path.read_text().replace(
        "secret_key: {env: T_S3_SECRET}}",
        "secret_key: {env: T_S3_SECRET}, prune_access_key: {env: T_PRUNE_KEY}, "
        "prune_secret_key: {env: T_PRUNE_SECRET}}")
    path.write_text(text)
    plan = load_plan(path)
    worker, pruner = innermost(store_for(plan, "vault")), innermost(store_for(plan, "vault", role="prune"))
    assert "prune-identity-secret" in pruner._secrets and "prune-identity-secret" not in worker._secrets
    assert worker.lock_mode == pruner.lock_mode == "COMPLIANCE"


def test_a_keep_shorter_than_the_lock_is_refused_naming_the_location(tmp_path, s3_server, monkeypatch):
    path = _plan(tmp_path, s3_server, monkeypatch, "b", keep="2 days", retain="30 days")
    with pytest.raises(PlanInvalid) as caught:
        load_plan(path)
    assert "vault" in str(caught.value) and "Object Lock" in str(caught.value)
    assert s3_server.secret_access_key not in str(caught.value)


def test_object_lock_is_only_for_s3_locations(tmp_path, monkeypatch):
    storage = ("vault: {kind: filesystem, offsite: true, path: /tmp/x, "
               "object_lock: {mode: GOVERNANCE, retain: 1 day}}\n")
    with pytest.raises(PlanInvalid, match="s3 locations"):
        load_plan(write_plan(tmp_path / "plan", storage=storage))


def test_a_lock_without_retain_lasts_as_long_as_the_shortest_keep_writing_there(tmp_path, s3_server, monkeypatch):
    from drfleet.datapath.locations import lock_seconds

    path = _plan(tmp_path, s3_server, monkeypatch, "b", keep="3 days")
    path.write_text(path.read_text().replace("object_lock: {mode: COMPLIANCE, retain: 2 seconds}",
                                             "object_lock: {mode: COMPLIANCE}"))
    plan = load_plan(path)
    assert lock_seconds(plan, "vault") == 3 * 86400
    assert innermost(store_for(plan, "vault")).lock_seconds == 3 * 86400


def test_a_lock_without_retain_needs_a_time_based_keep(tmp_path, s3_server, monkeypatch):
    path = _plan(tmp_path, s3_server, monkeypatch, "b", keep="5 versions")
    path.write_text(path.read_text().replace("object_lock: {mode: COMPLIANCE, retain: 2 seconds}",
                                             "object_lock: {mode: COMPLIANCE}"))
    with pytest.raises(PlanInvalid, match="give 'retain'") as caught:
        load_plan(path)
    assert "vault" in str(caught.value)
