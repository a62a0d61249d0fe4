"""SshSession against a real sshd: commands, streams, atomic SFTP, lost connections."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import subprocess
import tarfile
import threading

import pytest

from drfleet.providers.ssh import (
    AuthenticationFailed,
    HostUnreachable,
    RemoteCommandFailed,
    RemoteCommandTimedOut,
    RemoteTransferFailed,
    SshSession,
    SshTarget,
)
from tests.fixtures.sshd import SSH_KEYGEN
from tests.fixtures.util import free_port, wait_for

AWKWARD_ARGS = ["plain", "two words", "it's", 'say "hi"', "$HOME", "`id`", "a;b|c&d",
                "*", "", "-n", "new\nline", "tab\there", "back\\slash", "ünïcödé"]
AWKWARD_NAME = "dir with 'single' \"double\" $x"


def _sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# -- SshTarget ----------------------------------------------------------------------------

def test_target_is_a_small_serialisable_description(ssh_target):
    data = json.loads(json.dumps(ssh_target.to_dict()))
    assert SshTarget.from_dict(data) == ssh_target
    assert data["key_file"] == str(ssh_target.key_file)
    assert str(ssh_target) == f"{ssh_target.user}@{ssh_target.host}:{ssh_target.port}"
    with pytest.raises(AttributeError):
        ssh_target.port = 1  # frozen


# -- commands -----------------------------------------------------------------------------

def test_argv_round_trips_exactly(ssh_target):
    with SshSession(ssh_target) as session:
        result = session.run(["printf", "%s\\0", *AWKWARD_ARGS])
    assert result.stdout.decode().split("\0")[:-1] == AWKWARD_ARGS
    assert result.exit_status == 0


def test_stdin_and_stdout_both_large_do_not_deadlock(ssh_target):
    payload = os.urandom(3 * 1024 * 1024)
    with SshSession(ssh_target) as session:
        assert session.run(["cat"], input=payload).stdout == payload
        assert session.run(["wc", "-c"], input="héllo").stdout.strip() == b"6"


def test_non_zero_exit_raises_with_command_status_and_stderr_tail(ssh_target):
    script = "for i in $(seq 1 100); do echo line-$i >&2; done; exit 3"
    with SshSession(ssh_target) as session:
        with pytest.raises(RemoteCommandFailed) as caught:
            session.run(["sh", "-c", script])
        unchecked = session.run(["sh", "-c", "exit 4"], check=False)
    error = caught.value
    assert error.exit_status == 3 and error.command.startswith("sh -c ")
    assert error.stderr_tail.splitlines()[-1] == "line-100"
    assert "line-1\n" not in error.stderr_tail + "\n", "only the tail is kept"
    assert "exit_status: 3" in str(error) and "line-100" in str(error)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    assert unchecked.exit_status == 4


def test_timeout_closes_the_channel_and_raises(ssh_target):
    # A command that dies of SIGPIPE once its channel is closed, so nothing outlives the test.
    endless = ["sh", "-c", "while :; do echo tick; sleep 0.05; done"]
    with SshSession(ssh_target) as session:
        with pytest.raises(RemoteCommandTimedOut):
            session.run(endless, timeout=0.3)
        assert session.run(["echo", "still usable"]).stdout == b"still usable\n"


def test_argv_must_be_a_list(ssh_target):
    with SshSession(ssh_target) as session:
        with pytest.raises(TypeError):
            session.run("ls -l")


# -- streams ------------------------------------------------------------------------------

def test_stream_of_a_remote_tar(ssh_target, tmp_path):
    tree = tmp_path / AWKWARD_NAME
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    (tree / "it's.txt").write_text("quoted name")
    with SshSession(ssh_target) as session:
        with session.stream_command(["tar", "-C", str(tree), "-cf", "-", "."]) as stream:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                archive.extractall(tmp_path / "out", filter="data")
        assert stream.exit_status == 0
    assert (tmp_path / "out" / "it's.txt").read_text() == "quoted name"
    assert _sha256(tmp_path / "out/sub/big.bin") == _sha256(tree / "sub/big.bin")


def test_stream_close_raises_when_the_remote_command_fails(ssh_target, tmp_path):
    with SshSession(ssh_target) as session:
        stream = session.stream_command(["tar", "-C", str(tmp_path / "missing"), "-cf", "-", "."])
        stream.read()
        with pytest.raises(RemoteCommandFailed) as caught:
            stream.close()
        assert caught.value.exit_status != 0
        assert "missing" in caught.value.stderr_tail
        with pytest.raises(RemoteCommandFailed) as caught:
            with session.stream_command(["sh", "-c", "printf data; echo boom >&2; exit 7"]) as s:
                assert s.read() == b"data"
        assert caught.value.exit_status == 7 and caught.value.stderr_tail == "boom"


def test_stream_cut_by_a_dropped_connection_is_not_mistaken_for_success(private_sshd):
    with SshSession(private_sshd.target()) as session:
        stream = session.stream_command(["sh", "-c", "head -c 1000000 /dev/zero; sleep 60"])
        assert len(stream.read(1)) == 1
        private_sshd.drop_connections()
        with pytest.raises(HostUnreachable):
            stream.read()  # either this read notices the loss...
            stream.close()  # ...or, having seen a premature EOF, close does
        stream.abort()


# -- SFTP ---------------------------------------------------------------------------------

def test_upload_and_download_round_trip_keeping_mode_and_mtime(ssh_target, tmp_path):
    source = tmp_path / "local it's.bin"
    source.write_bytes(os.urandom(300_000))
    os.chmod(source, 0o640)
    os.utime(source, (1_500_000_000, 1_500_000_000))
    remote_dir = tmp_path / AWKWARD_NAME
    remote_dir.mkdir()
    remote = remote_dir / "copy \"x\".bin"
    remote.write_bytes(b"old version")
    with SshSession(ssh_target) as session:
        session.upload(source, str(remote))
        session.download(str(remote), tmp_path / "back.bin")
    for copy in (remote, tmp_path / "back.bin"):
        assert _sha256(copy) == _sha256(source)
        assert copy.stat().st_mode & 0o7777 == 0o640
        assert copy.stat().st_mtime == 1_500_000_000
    assert sorted(os.listdir(remote_dir)) == ["copy \"x\".bin"], "no partial files left"
    assert ".partial-" not in " ".join(os.listdir(tmp_path))


def test_open_sftp_gives_a_plain_client(ssh_target, tmp_path):
    (tmp_path / "a").write_text("x")
    with SshSession(ssh_target) as session:
        sftp = session.open_sftp()
        try:
            assert sftp.listdir(str(tmp_path)) == ["a"]
        finally:
            sftp.close()


def test_upload_into_a_missing_directory_is_a_transfer_error(ssh_target, tmp_path):
    (tmp_path / "f").write_text("x")
    with SshSession(ssh_target) as session:
        with pytest.raises(RemoteTransferFailed) as caught:
            session.upload(tmp_path / "f", str(tmp_path / "no such dir" / "f"))
    assert caught.value.remote_path == str(tmp_path / "no such dir" / "f")


def test_upload_interrupted_by_a_dead_server_never_exposes_a_partial_file(private_sshd,
                                                                          tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(16 * 1024 * 1024))
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    (remote_dir / "big.bin").write_bytes(b"previous complete version")
    seen = []

    def kill_after_first_megabyte(done: int, total: int) -> None:
        seen.append(done)
        if done >= 1024 * 1024 and private_sshd.proc.poll() is None:
            private_sshd.kill()

    with SshSession(private_sshd.target()) as session:
        with pytest.raises(HostUnreachable) as caught:
            session.upload(source, str(remote_dir / "big.bin"),
                           progress=kill_after_first_megabyte)
    assert seen[-1] < source.stat().st_size, "the upload was really cut mid-way"
    assert (remote_dir / "big.bin").read_bytes() == b"previous complete version"
    assert all(".partial-" in name for name in os.listdir(remote_dir) if name != "big.bin")
    assert caught.value.transient and "upload" in str(caught.value)


def test_download_interrupted_leaves_nothing_locally(private_sshd, tmp_path):
    remote = tmp_path / "remote.bin"
    remote.write_bytes(os.urandom(16 * 1024 * 1024))
    local_dir = tmp_path / "local"
    local_dir.mkdir()

    def kill_after_first_megabyte(done: int, total: int) -> None:
        if done >= 1024 * 1024 and private_sshd.proc.poll() is None:
            private_sshd.kill()

    with SshSession(private_sshd.target()) as session:
        with pytest.raises(HostUnreachable):
            session.download(str(remote), local_dir / "copy.bin",
                             progress=kill_after_first_megabyte)
    assert os.listdir(local_dir) == []


# -- connection failures ------------------------------------------------------------------

def test_nothing_listening_is_host_unreachable(ssh_target):
    target = SshTarget(**{**ssh_target.to_dict(), "port": free_port()})
    with pytest.raises(HostUnreachable) as caught:
        SshSession(target).connect()
    assert caught.value.port == target.port and caught.value.transient
    assert "refused" in caught.value.reason.lower()


def test_a_server_that_never_speaks_is_host_unreachable(ssh_target):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        target = SshTarget(**{**ssh_target.to_dict(), "port": port, "connect_timeout": 0.5})
        with pytest.raises(HostUnreachable) as caught:
            SshSession(target).connect()
    assert "handshake" in caught.value.reason


def test_connection_dropped_while_a_command_runs(private_sshd, tmp_path):
    marker = tmp_path / "started"
    with SshSession(private_sshd.target()) as session:
        def drop_once_started():
            wait_for(marker.exists, timeout=20, what="remote command to start")
            private_sshd.drop_connections()

        dropper = threading.Thread(target=drop_once_started)
        dropper.start()
        try:
            with pytest.raises(HostUnreachable):
                session.run(["sh", "-c", f"touch '{marker}'; exec sleep 60"])
        finally:
            dropper.join()
        with pytest.raises(HostUnreachable):
            session.run(["true"])


def test_refused_key_is_authentication_failed_without_key_material(ssh_target, tmp_path):
    other_key = tmp_path / "other key"
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)],
                   check=True)
    with pytest.raises(AuthenticationFailed) as caught:
        SshSession(SshTarget(**{**ssh_target.to_dict(), "key_file": other_key})).connect()
    message = str(caught.value)
    assert str(other_key) in message and ssh_target.user in message
    assert "SHA256:" in message
    private_body = "".join(other_key.read_text().splitlines()[1:-1])
    assert private_body[:40] not in message


def test_passphrase_protected_key_is_reported_without_the_passphrase(ssh_target, tmp_path):
    locked = tmp_path / "locked"
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "s3cret-pass", "-f", str(locked)],
                   check=True)
    with pytest.raises(AuthenticationFailed) as caught:
        SshSession(SshTarget(**{**ssh_target.to_dict(), "key_file": locked})).connect()
    assert "passphrase" in str(caught.value) and "s3cret-pass" not in str(caught.value)
