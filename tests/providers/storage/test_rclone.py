"""The rclone store's own promises (the shared ones are in test_conformance.py): bad
settings are refused before anything is written, naming the location and never a secret;
secrets never reach a command line; a dead daemon is restarted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drfleet.providers.storage import open_store
from drfleet.providers.storage.errors import InvalidStoreSettings
from drfleet.providers.storage.rclone import RcloneStore
from tests.fixtures.rclone import local_config, require_rclone, write_config


def test_a_remote_the_config_does_not_define_is_refused_naming_the_location(tmp_path):
    config = local_config(tmp_path)
    with pytest.raises(InvalidStoreSettings) as caught:
        RcloneStore("gcs-prod:bucket/dir", str(config), name="offsite-gcs")
    message = str(caught.value)
    assert "offsite-gcs" in message and "gcs-prod" in message and "local-test" in message


def test_a_config_file_others_can_read_is_refused_and_nothing_is_written(tmp_path):
    config = local_config(tmp_path)
    os.chmod(config, 0o644)
    with pytest.raises(InvalidStoreSettings, match="chmod 600") as caught:
        open_store("rclone", {"remote": f"local-test:{tmp_path / 'root'}",
                              "config_file": str(config), "name": "offsite-b2"})
    assert "offsite-b2" in str(caught.value)
    assert not (tmp_path / "root").exists()


def test_a_missing_config_file_is_refused(tmp_path):
    with pytest.raises(InvalidStoreSettings, match="does not exist"):
        RcloneStore("x:y", str(tmp_path / "absent.conf"))


def test_the_config_files_secrets_are_never_echoed(tmp_path):
    config = write_config(tmp_path / "rclone.conf",
                          "[b2]\ntype = b2\naccount = acct-id-123\nkey = very-secret-b2-key\n")
    with pytest.raises(InvalidStoreSettings) as caught:
        RcloneStore("nope:bucket", str(config))
    assert "very-secret-b2-key" not in str(caught.value)


def test_no_secret_on_the_daemons_command_line(rclone_served):
    store = RcloneStore(rclone_served.remote(), str(rclone_served.config_file))
    store.put_bytes("k", b"v")
    cmdline = Path(f"/proc/{store.daemon.proc.pid}/cmdline").read_bytes().decode()
    assert rclone_served.password not in cmdline
    assert store.daemon._auth.split()[1] not in cmdline and "rc-pass" not in cmdline
    assert str(rclone_served.config_file) in cmdline


def test_a_dead_daemon_is_restarted(tmp_path):
    require_rclone()
    store = RcloneStore(f"local-test:{tmp_path / 'root'}", str(local_config(tmp_path)))
    store.put_bytes("a", b"1")
    store.daemon.proc.kill()
    store.daemon.proc.wait()
    assert store.get_bytes("a") == b"1"
    store.put_bytes("b", b"2")
    assert [info.key for info in store.list()] == ["a", "b"]
    store.daemon.stop()


def test_the_served_remote_holds_objects_where_rclone_puts_them(rclone_served):
    remote = rclone_served.remote()
    store = RcloneStore(remote, str(rclone_served.config_file))
    store.put_bytes("d/e/obj", b"payload")
    on_disk = rclone_served.data / remote.split(":", 1)[1] / "d" / "e" / "obj"
    assert on_disk.read_bytes() == b"payload"
    assert store.partials() == []


def test_temp_objects_of_killed_writers_are_reaped_after_the_grace(tmp_path):
    require_rclone()
    store = RcloneStore(f"local-test:{tmp_path / 'root'}", str(local_config(tmp_path)))
    writer = store.writer("big")
    writer.write(b"x" * 100_000)
    writer._queue.put(None)  # the upload ends without a commit: a writer killed mid-object
    writer._thread.join()
    assert store.partials() and not store.exists("big") and list(store.list()) == []
    assert store.reap_partials(3600) == 0
    assert store.reap_partials(-1) == 1
    assert store.partials() == []
    store.daemon.stop()
