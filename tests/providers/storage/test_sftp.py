"""The SFTP store's own promises (the shared ones are in test_conformance.py): host keys
checked against known_hosts, never accepted; dropped connections are transient and
reconnected; temp files are reaped; nothing half-written is visible."""

from __future__ import annotations

import os

import pytest

from drfleet.providers.storage import open_store
from drfleet.providers.storage.errors import InvalidStoreSettings, StoreAccessDenied, StoreUnavailable
from drfleet.providers.storage.sftp import SftpStore
from tests.fixtures.sshd import SshServer


def _store(server, root, **overrides) -> SftpStore:
    settings = {"port": server.port, "user": server.user, "key_file": str(server.key_file),
                    "known_hosts_file": str(server.known_hosts_file), "name": "offsite-sftp"}
    return SftpStore(server.host, str(root), **{**settings, **overrides})


def test_changed_host_key_is_refused_naming_the_location_and_nothing_is_written(tmp_path):
    with SshServer() as server:
        server.regenerate_host_key()
        store = _store(server, tmp_path / "root")
        with pytest.raises(StoreAccessDenied) as caught:
            store.put_bytes("k", b"secret backup")
        message = str(caught.value)
        assert "offsite-sftp" in message and "host key" in message
        assert caught.value.facts["presented_fingerprint"] == server.host_key_fingerprint
        assert not (tmp_path / "root").exists()
        assert "PRIVATE KEY" not in message


def test_unknown_host_is_refused(sshd_server, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    store = _store(sshd_server, tmp_path / "root", known_hosts_file=str(empty))
    with pytest.raises(StoreAccessDenied, match="host key"):
        list(store.list())
    assert empty.read_text() == ""  # nothing is ever added


def test_known_hosts_is_required():
    with pytest.raises(InvalidStoreSettings, match="known_hosts"):
        SftpStore("127.0.0.1", "/srv", user="u", key_file="/k", known_hosts_file="")


def test_relative_root_is_refused():
    with pytest.raises(InvalidStoreSettings, match="absolute"):
        SftpStore("127.0.0.1", "srv", user="u", key_file="/k", known_hosts_file="/kh")


def test_unreachable_host_is_transient(tmp_path):
    server = SshServer()  # never started
    store = _store(server, tmp_path / "root", connect_timeout=2)
    with pytest.raises(StoreUnavailable):
        store.exists("k")
    server.cleanup()


def test_reconnects_after_the_connection_drops(tmp_path):
    with SshServer() as server:
        store = _store(server, tmp_path / "root")
        store.put_bytes("a", b"1")
        server.drop_connections()
        try:  # a loss noticed mid-call is transient; one noticed before it reconnects
            store.put_bytes("b", b"2")
        except StoreUnavailable:
            pass
        assert store.get_bytes("a") == b"1"
        store.put_bytes("b", b"2")
        assert [info.key for info in store.list()] == ["a", "b"]


def test_a_killed_writer_leaves_only_a_partial_that_is_reaped(sshd_server, tmp_path):
    store = _store(sshd_server, tmp_path / "root")
    writer = store.writer("big")
    writer.write(b"x" * 100_000)
    writer._file.flush()
    store.close()  # the worker dies mid-write: the writer never commits
    assert not store.exists("big") and list(store.list()) == []
    assert len(store.partials()) == 1
    assert store.reap_partials(3600) == 0
    assert store.reap_partials(-1) == 1
    assert store.partials() == []


def test_open_store_builds_a_retrying_sftp_store(sshd_server, tmp_path):
    store = open_store("sftp", {"host": sshd_server.host, "port": sshd_server.port,
                                "root": str(tmp_path / "r"), "user": sshd_server.user,
                                "key_file": str(sshd_server.key_file),
                                "known_hosts_file": str(sshd_server.known_hosts_file)})
    store.put_bytes("d/k", b"v")
    assert os.stat(tmp_path / "r" / "d" / "k").st_size == 1
    assert store.get_bytes("d/k") == b"v"
