"""Copies between stores of different kinds, every kind once as source and once as
destination (filesystem, S3 on moto, SFTP on a real sshd, rclone's local backend, rclone
serving WebDAV, Azure Blob on Azurite through rclone), and `copies check --repair` re-seeding missing and damaged copies across
kinds. Every pair of kinds runs under `-m slow`."""

from __future__ import annotations

import itertools

import pytest

from drfleet.backup_format.layout import manifest_key
from drfleet.datapath.backup import run_backup
from drfleet.datapath.copies_check import check_copies
from drfleet.datapath.copy import copy_backup
from drfleet.datapath.locations import store_for
from drfleet.datapath.verify import verify_backup
from tests.datapath.copy_plans import make_copy_plan

KINDS = {"filesystem": "offsite", "s3": "k-s3", "sftp": "k-sftp", "rclone-local": "k-rclone-local",
         "rclone-served": "k-rclone-served", "azure": "k-azure"}


@pytest.fixture
def across(tmp_path, s3_server, sshd_server, rclone_local_config, rclone_served, azurite, monkeypatch):
    """A plan whose ``site`` policy copies to one offsite location of every kind, and one
    committed backup of it at home (a filesystem store)."""
    monkeypatch.setenv("T_S3_KEY", s3_server.access_key_id)
    monkeypatch.setenv("T_S3_SECRET", s3_server.secret_access_key)
    root = tmp_path / "plan"
    bucket = s3_server.new_bucket()
    s = sshd_server
    storage = (
        f"k-s3: {{kind: s3, offsite: true, default: false, bucket: {bucket}, endpoint_url: '{s3_server.endpoint_url}', "
        f"s3_region: {s3_server.region}, access_key: {{env: T_S3_KEY}}, secret_key: {{env: T_S3_SECRET}}}}\n"
        f"k-sftp: {{kind: sftp, offsite: true, default: false, host: {s.host}, port: {s.port}, user: {s.user}, "
        f"key_file: {s.key_file}, known_hosts: {s.known_hosts_file}, path: {tmp_path}/sftp-root}}\n"
        f"k-rclone-local: {{kind: rclone, offsite: true, default: false, remote: 'local-test:{tmp_path}/rclone-root', "
        f"rclone_config: {rclone_local_config}}}\n"
        f"k-rclone-served: {{kind: rclone, offsite: true, default: false, remote: '{rclone_served.remote()}', "
        f"rclone_config: {rclone_served.config_file}}}\n"
        f"k-azure: {{kind: rclone, offsite: true, default: false, remote: '{azurite.remote()}', "
        f"rclone_config: {azurite.config_file}}}\n")
    targets = ", ".join(f'"offsite:{loc}"' for loc in KINDS.values() if loc != "offsite")
    plan, _ = make_copy_plan(root, copies=f'home-region, offsite, {targets}', storage=storage)
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    return plan, backup_id


def _copy_and_verify(plan, backup_id, source, destination):
    result = copy_backup(plan, f"site/{backup_id}", destination, source=source)
    assert result.status == "copied", (source, destination, result)
    verified = verify_backup(plan, f"site/{backup_id}", location=destination)
    assert verified["ok"], (source, destination, verified["problems"])


def test_a_ring_of_copies_uses_every_kind_as_source_and_destination(across):
    plan, backup_id = across
    ring = ["eu-central-store", "k-s3", "k-sftp", "k-rclone-local", "k-rclone-served", "k-azure", "offsite"]
    for source, destination in itertools.pairwise(ring):
        _copy_and_verify(plan, backup_id, source, destination)


def test_copies_check_repairs_missing_and_damaged_copies_across_kinds(across):
    plan, backup_id = across
    for location in KINDS.values():
        copy_backup(plan, f"site/{backup_id}", location)
    assert check_copies(plan, "site").ok
    sftp, s3, azure = (store_for(plan, loc) for loc in ("k-sftp", "k-s3", "k-azure"))
    sftp.delete(manifest_key("site", backup_id))                      # a missing copy
    damaged = next(info.key for info in s3.list(f"datasets/site/backups/{backup_id}/"))
    s3.put_bytes(damaged, b"not what the manifest says")              # a damaged copy
    for info in azure.list("datasets/site/"):                         # gone altogether
        azure.delete(info.key)
    report = check_copies(plan, "site")
    assert sorted(report.repaired) == sorted(f"site/{backup_id}@{loc}" for loc in ("k-sftp", "k-s3", "k-azure"))
    assert report.healthy
    assert check_copies(plan, "site").ok
    for location in ("k-sftp", "k-s3", "k-azure"):
        assert verify_backup(plan, f"site/{backup_id}", location=location)["ok"]


@pytest.mark.slow
@pytest.mark.parametrize("source,destination", list(itertools.permutations(KINDS, 2)))
def test_every_pair_of_kinds(across, source, destination):
    plan, backup_id = across
    if source != "filesystem":
        copy_backup(plan, f"site/{backup_id}", KINDS[source])
    _copy_and_verify(plan, backup_id, KINDS[source] if source != "filesystem" else "eu-central-store",
                     KINDS[destination])
