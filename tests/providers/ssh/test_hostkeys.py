"""Strict host key checking: known_hosts parsing and refusals against a real sshd."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pickle
import subprocess

import pytest

from drfleet.providers.ssh import HostKeyChanged, HostKeyRejected, HostKeyRevoked, SshSession, UnknownHostKey
from drfleet.providers.ssh.hostkeys import fingerprint, lookup_known_keys, verify_host_key
from tests.fixtures.sshd import SshServer


def _ed25519_blob(public: bytes) -> bytes:
    """An SSH public key blob (RFC 8709) around 32 public key bytes."""
    return b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + public


KEY_A = _ed25519_blob(bytes(range(32)))
KEY_B = _ed25519_blob(bytes(range(32, 64)))


def _line(names: str, blob: bytes, marker: str = "") -> str:
    prefix = f"{marker} " if marker else ""
    return f"{prefix}{names} ssh-ed25519 {base64.b64encode(blob).decode()}\n"


def _hashed(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.fixture
def known_hosts(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text("")
    return path


def test_fingerprint_matches_ssh_keygen(sshd_server):
    blob = base64.b64decode(sshd_server.host_public_key_line.split()[1])
    assert fingerprint(blob) == sshd_server.host_key_fingerprint


def test_key_recorded_for_host_and_port_is_accepted(known_hosts):
    known_hosts.write_text("# comment\n\n" + _line("[db1]:2222,[db1.example]:2222", KEY_A))
    entry = verify_host_key(known_hosts, "db1", 2222, "ssh-ed25519", KEY_A)
    assert entry.fingerprint == fingerprint(KEY_A)


def test_port_22_uses_the_bare_host_name_and_other_ports_do_not(known_hosts):
    known_hosts.write_text(_line("db1", KEY_A))
    verify_host_key(known_hosts, "db1", 22, "ssh-ed25519", KEY_A)
    with pytest.raises(UnknownHostKey):
        verify_host_key(known_hosts, "db1", 2222, "ssh-ed25519", KEY_A)


def test_hashed_wildcard_and_negated_names(known_hosts):
    known_hosts.write_text(_line(_hashed("[db1]:2222"), KEY_A)
                           + _line("*.prod,!bad.prod", KEY_B))
    verify_host_key(known_hosts, "db1", 2222, "ssh-ed25519", KEY_A)
    verify_host_key(known_hosts, "web.prod", 22, "ssh-ed25519", KEY_B)
    with pytest.raises(UnknownHostKey):
        verify_host_key(known_hosts, "bad.prod", 22, "ssh-ed25519", KEY_B)


def test_malformed_lines_and_cert_authorities_are_ignored(known_hosts):
    known_hosts.write_text("garbage\n[db1]:2222 ssh-ed25519 !!notbase64!!\n"
                           + _line("[db1]:2222", KEY_B, "@cert-authority"))
    assert lookup_known_keys(known_hosts, "db1", 2222) == []


def test_unknown_host_names_fingerprint_and_how_to_add_it(known_hosts):
    with pytest.raises(UnknownHostKey) as caught:
        verify_host_key(known_hosts, "db1", 2222, "ssh-ed25519", KEY_A)
    error = caught.value
    assert error.fingerprint == fingerprint(KEY_A) and error.fingerprint in str(error)
    assert "ssh-keyscan -p 2222 -t ed25519 db1" in error.hint
    assert str(known_hosts) in error.hint
    assert error.transient is False


def test_missing_known_hosts_file_means_unknown(tmp_path):
    with pytest.raises(UnknownHostKey):
        verify_host_key(tmp_path / "absent", "db1", 22, "ssh-ed25519", KEY_A)


def test_unreadable_known_hosts_trusts_nothing(tmp_path):
    with pytest.raises(HostKeyRejected) as caught:
        verify_host_key(tmp_path, "db1", 22, "ssh-ed25519", KEY_A)  # a directory
    assert caught.value.facts["known_hosts_file"] == str(tmp_path)


def test_changed_key_names_both_fingerprints(known_hosts):
    known_hosts.write_text(_line("[db1]:2222", KEY_A))
    with pytest.raises(HostKeyChanged) as caught:
        verify_host_key(known_hosts, "db1", 2222, "ssh-ed25519", KEY_B)
    error = caught.value
    assert error.expected_fingerprint == fingerprint(KEY_A)
    assert error.presented_fingerprint == fingerprint(KEY_B)
    assert fingerprint(KEY_A) in str(error) and fingerprint(KEY_B) in str(error)
    assert "ssh-keygen -R '[db1]:2222'" in error.hint


def test_key_of_another_type_than_the_recorded_one_counts_as_changed(known_hosts):
    known_hosts.write_text(_line("[db1]:2222", KEY_A))
    with pytest.raises(HostKeyChanged):
        verify_host_key(known_hosts, "db1", 2222, "ecdsa-sha2-nistp256", KEY_B)


def test_revoked_key_is_refused_even_if_also_listed(known_hosts):
    known_hosts.write_text(_line("[db1]:2222", KEY_A) + _line("*", KEY_A, "@revoked"))
    with pytest.raises(HostKeyRevoked):
        verify_host_key(known_hosts, "db1", 2222, "ssh-ed25519", KEY_A)


def test_host_key_errors_survive_pickling(known_hosts):
    known_hosts.write_text(_line("[db1]:2222", KEY_A))
    with pytest.raises(HostKeyChanged) as caught:
        verify_host_key(known_hosts, "db1", 2222, "ssh-ed25519", KEY_B)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is HostKeyChanged and str(copy) == str(caught.value)
    assert copy.presented_fingerprint == fingerprint(KEY_B)


def test_session_refuses_an_unknown_host(sshd_server, known_hosts):
    target = sshd_server.target(known_hosts_file=known_hosts)
    with pytest.raises(UnknownHostKey) as caught:
        SshSession(target).connect()
    assert caught.value.fingerprint == sshd_server.host_key_fingerprint
    assert sshd_server.host_key_fingerprint in str(caught.value)
    assert known_hosts.read_text() == "", "nothing may be added to known_hosts"


def test_session_refuses_a_changed_host_key_before_authenticating():
    with SshServer() as server:
        old = server.host_key_fingerprint
        server.regenerate_host_key()
        accepted_before = server.log().count("Accepted publickey")
        with pytest.raises(HostKeyChanged) as caught:
            SshSession(server.target()).connect()
        assert caught.value.expected_fingerprint == old
        assert caught.value.presented_fingerprint == server.host_key_fingerprint != old
        assert server.log().count("Accepted publickey") == accepted_before
        # ...and once known_hosts is updated (after out-of-band verification) it works.
        server.write_known_hosts()
        with SshSession(server.target()) as session:
            assert session.run(["true"]).exit_status == 0


def test_keyscan_hint_produces_a_line_the_policy_accepts(sshd_server, known_hosts):
    with pytest.raises(UnknownHostKey) as caught:
        SshSession(sshd_server.target(known_hosts_file=known_hosts)).connect()
    keyscan = caught.value.hint.split("`")[3].split(" >> ")[0].split()
    scanned = subprocess.run(keyscan, capture_output=True, text=True, timeout=30).stdout
    known_hosts.write_text(scanned)
    with SshSession(sshd_server.target(known_hosts_file=known_hosts)) as session:
        assert session.run(["echo", "ok"]).stdout == b"ok\n"
