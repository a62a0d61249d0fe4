"""Files datasets on a plan host, against a real sshd: full and incremental backups of the
remote tree (staged through rsync into the worker's mirror), host keys checked against
the plan's known_hosts, and an unreachable host or a connection reset mid-transfer ending
in a clear error with nothing committed."""

from __future__ import annotations

import os
import threading

import pytest

from drfleet.datapath import remote_trees
from drfleet.datapath.backup import run_backup
from drfleet.datapath.catalog import list_backups
from drfleet.datapath.remote_trees import RemoteTreeMissing, RemoteTreeUnavailable
from drfleet.datapath.restore import restore_backup
from drfleet.datapath.verify import verify_backup
from drfleet.plan.loader import load_plan
from drfleet.providers.datasources import files
from drfleet.providers.datasources.support import files_index
from drfleet.providers.ssh import HostKeyChanged, HostUnreachable, UnknownHostKey
from tests.datapath.test_incremental import RACY_WINDOW_NS, settle, snapshot
from tests.fixtures.fleet import write_plan
from tests.fixtures.sshd import SshServer
from tests.fixtures.util import wait_for


@pytest.fixture(autouse=True)
def isolated_worker(monkeypatch, tmp_path):
    """A worker home of its own (where mirrors live), a short racy window, no retry waits."""
    monkeypatch.setenv("DRFLEET_HOME", str(tmp_path / "worker-home"))
    monkeypatch.setattr(files_index, "RACY_WINDOW_NS", RACY_WINDOW_NS)
    monkeypatch.setattr(remote_trees, "RSYNC_ATTEMPTS", 1)


def remote_plan(root, server, remote_dir, *, known_hosts=None):
    from drfleet.backup_format.keyring import create_keyring

    datasets = (f"uploads:\n  kind: files\n  region: eu-central\n"
                f"  source: {{path: {remote_dir}, host: web1}}\n  key: content\n  rpo: 24h\n  rto: 30m\n"
                "  policies:\n"
                "    - {name: weekly-full, trigger: \"weekly on sunday at 03:00\", keep: 4 weeks, copies: [home-region]}\n"
                "    - {name: daily-incremental, trigger: \"daily at 02:00\", mode: incremental, keep: 30 days, "
                "copies: [home-region]}\n")
    hosts = (f"hosts:\n  web1: {{address: {server.host}, port: {server.port}, user: {server.user}, "
             f"key_file: {server.key_file}, known_hosts: {known_hosts or server.known_hosts_file}}}\n")
    path = write_plan(root, datasets=datasets, extra=hosts)
    (root / "keys").mkdir(mode=0o700, exist_ok=True)
    create_keyring(root / "keys" / "content.keyring", "content")
    create_keyring(root / "keys" / "offsite.keyring", "offsite")
    return load_plan(path)


@pytest.fixture
def remote_tree(tmp_path):
    """The tree as it lies on the remote host (the sshd is local, so a local path)."""
    tree = tmp_path / "remote" / "uploads"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "one.txt").write_text("one\n")
    (tree / "a" / "b" / "two.bin").write_bytes(os.urandom(200_000))
    (tree / "keep.conf").write_text("x = 1\n")
    os.chmod(tree / "keep.conf", 0o640)
    os.symlink("a/one.txt", tree / "link")
    return tree


def store_files(tmp_path) -> list:
    store = tmp_path / "plan" / "stores" / "eu-central"
    return sorted(p for p in store.rglob("*") if p.is_file()) if store.exists() else []


def test_a_remote_tree_is_backed_up_full_then_incrementally_and_restores_each_day(sshd_server, remote_tree, tmp_path):
    plan = remote_plan(tmp_path / "plan", sshd_server, remote_tree)
    settle()
    full = run_backup(plan, "uploads", "weekly-full", region="eu-central")
    sunday = snapshot(remote_tree)
    settle()
    (remote_tree / "a" / "one.txt").write_text("one, edited on the host\n")
    (remote_tree / "keep.conf").unlink()
    (remote_tree / "a" / "new.txt").write_text("new\n")
    monday = run_backup(plan, "uploads", "daily-incremental", region="eu-central")
    monday_tree = snapshot(remote_tree)
    assert monday["mode"] == "incremental" and monday["parents"] == [full["backup_id"]]
    assert monday["deleted_entries"] == 1 and monday["stored_entries"] < monday["entries"]
    for result, expected, name in [(full, sunday, "sun"), (monday, monday_tree, "mon")]:
        restore_backup(plan, f"uploads/{result['backup_id']}", str(tmp_path / name))
        assert snapshot(tmp_path / name) == expected
    record = list_backups(plan, "uploads").backups[-1]
    assert record.manifest.source_position["root"] == f"web1:{remote_tree}"
    assert record.manifest.fingerprint == files.fingerprint(str(remote_tree))
    assert verify_backup(plan, f"uploads/{monday['backup_id']}", depth="deep")["ok"]


def test_a_remote_file_rewritten_within_the_same_second_is_still_seen(sshd_server, remote_tree, tmp_path):
    """rsync compares times to the second unless told otherwise: same size, same second,
    other content would stay stale in the mirror and so in every backup after."""
    plan = remote_plan(tmp_path / "plan", sshd_server, remote_tree)
    path = remote_tree / "a" / "one.txt"
    os.utime(path, ns=(1_700_000_000_100_000_000, 1_700_000_000_100_000_000))
    settle()
    run_backup(plan, "uploads", "weekly-full", region="eu-central")
    path.write_text("ONE\n")  # same size
    os.utime(path, ns=(1_700_000_000_900_000_000, 1_700_000_000_900_000_000))  # same second
    monday = run_backup(plan, "uploads", "daily-incremental", region="eu-central")
    restore_backup(plan, f"uploads/{monday['backup_id']}", str(tmp_path / "mon"))
    assert (tmp_path / "mon" / "a" / "one.txt").read_text() == "ONE\n"
    assert snapshot(tmp_path / "mon") == snapshot(remote_tree)


def test_an_unknown_host_key_is_refused_with_its_fingerprint(sshd_server, remote_tree, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    plan = remote_plan(tmp_path / "plan", sshd_server, remote_tree, known_hosts=empty)
    with pytest.raises(UnknownHostKey) as info:
        run_backup(plan, "uploads", "weekly-full", region="eu-central")
    assert sshd_server.host_key_fingerprint in str(info.value)
    assert store_files(tmp_path) == []


def test_a_changed_host_key_is_refused_and_nothing_is_transferred(remote_tree, tmp_path):
    with SshServer() as server:
        plan = remote_plan(tmp_path / "plan", server, remote_tree)
        server.regenerate_host_key()
        with pytest.raises(HostKeyChanged) as info:
            run_backup(plan, "uploads", "weekly-full", region="eu-central")
        assert server.host_key_fingerprint in str(info.value)
    assert store_files(tmp_path) == []
    assert not os.path.exists(os.path.join(remote_trees.mirror_path("uploads"), "keep.conf"))


def test_an_unreachable_host_fails_clearly_and_commits_nothing(remote_tree, tmp_path):
    server = SshServer()
    plan = remote_plan(tmp_path / "plan", server, remote_tree)  # never started
    try:
        with pytest.raises(HostUnreachable) as info:
            run_backup(plan, "uploads", "weekly-full", region="eu-central")
    finally:
        server.cleanup()
    assert str(server.port) in str(info.value)
    assert store_files(tmp_path) == [] and list_backups(plan, "uploads").backups == []


def test_a_missing_remote_directory_is_named(sshd_server, tmp_path):
    plan = remote_plan(tmp_path / "plan", sshd_server, tmp_path / "not-there")
    with pytest.raises(RemoteTreeMissing) as info:
        run_backup(plan, "uploads", "weekly-full", region="eu-central")
    assert "not-there" in str(info.value)
    assert store_files(tmp_path) == []


def test_a_connection_reset_mid_transfer_commits_nothing_and_the_next_run_completes(remote_tree, tmp_path, monkeypatch):
    (remote_tree / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    normal_options = list(remote_trees.RSYNC_OPTIONS)
    monkeypatch.setattr(remote_trees, "RSYNC_OPTIONS", [*normal_options, "--bwlimit=500"])
    with SshServer() as server:
        plan = remote_plan(tmp_path / "plan", server, remote_tree)
        mirror = remote_trees.mirror_path("uploads")

        def in_flight_bytes() -> int:
            return sum(os.path.getsize(os.path.join(mirror, n)) for n in os.listdir(mirror)
                       if n.startswith(".big.bin.")) if os.path.isdir(mirror) else 0

        def reset_mid_transfer() -> None:
            wait_for(lambda: in_flight_bytes() >= 256 * 1024, timeout=60, what="rsync progress")
            server.drop_connections()

        killer = threading.Thread(target=reset_mid_transfer)
        killer.start()
        try:
            with pytest.raises(RemoteTreeUnavailable) as info:
                run_backup(plan, "uploads", "weekly-full", region="eu-central")
        finally:
            killer.join()
        error = info.value
        assert error.transient and error.facts["dataset"] == "uploads" and error.facts["host"] == "web1"
        assert store_files(tmp_path) == [] and list_backups(plan, "uploads").backups == []

        monkeypatch.setattr(remote_trees, "RSYNC_OPTIONS", normal_options)
        result = run_backup(plan, "uploads", "weekly-full", region="eu-central")
    restore_backup(plan, f"uploads/{result['backup_id']}", str(tmp_path / "restored"))
    assert snapshot(tmp_path / "restored") == snapshot(remote_tree)
    assert not (tmp_path / "restored" / ".rsync-partial").exists()
