"""rsync over ssh against a real sshd: metadata, link-dest, refusals, drops and retries."""

from __future__ import annotations

import hashlib
import os
import shlex
import threading

import pytest

from drfleet.providers.ssh import RsyncFailed, SshTarget, rsync_pull, rsync_push, with_retries
from drfleet.providers.ssh.openssh import ssh_argv
from drfleet.providers.ssh.rsync import _failure, rsync_argv
from tests.fixtures.util import free_port, wait_for

MTIME = 1_400_000_000
AWKWARD = "src 'quoted' \"dq\" $HOME"


def _make_tree(root) -> None:
    """Regular files with distinct modes, nested dirs, a relative and a dangling symlink."""
    (root / "sub dir" / "deeper").mkdir(parents=True)
    (root / "plain.txt").write_text("plain")
    (root / "it's private.txt").write_text("secret-ish")
    (root / "sub dir" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "sub dir" / "deeper" / "data.bin").write_bytes(os.urandom(50_000))
    (root / "link to plain").symlink_to("plain.txt")
    (root / "dangling").symlink_to("does/not/exist")
    os.chmod(root / "it's private.txt", 0o600)
    os.chmod(root / "sub dir" / "run.sh", 0o755)
    os.chmod(root / "sub dir", 0o750)
    for path in [root / "plain.txt", root / "it's private.txt", root / "sub dir" / "run.sh",
                 root / "sub dir" / "deeper" / "data.bin"]:
        os.utime(path, (MTIME, MTIME))
    # Fixed directory times too: rsync leaves a directory's time alone when it already
    # matches to the second, so "now" would differ in the sub-second part.
    os.utime(root / "sub dir" / "deeper", (MTIME + 3, MTIME + 3))
    os.utime(root / "sub dir", (MTIME + 5, MTIME + 5))


def _snapshot(root) -> dict:
    """Relative path -> (kind, mode, mtime for non-links, content or link target)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel.startswith(".rsync-partial"):
                continue
            st = os.lstat(path)
            if os.path.islink(path):
                found[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[rel] = ("dir", st.st_mode & 0o7777, st.st_mtime)
            else:
                digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
                found[rel] = ("file", st.st_mode & 0o7777, st.st_mtime, digest)
    return found


def test_ssh_command_is_one_rsync_argument_that_splits_back_exactly(tmp_path):
    target = SshTarget(host="db1", port=2222, user="backup",
                       key_file=tmp_path / "my keys" / "id 'ed'",
                       known_hosts_file=tmp_path / "known hosts")
    argv = rsync_argv(target, "/src/", "/dst/", [])
    e_value = argv[argv.index("-e") + 1]
    assert shlex.split(e_value) == ssh_argv(target)
    assert "StrictHostKeyChecking=yes" in e_value and "BatchMode=yes" in e_value
    assert argv[-3:] == ["--", "/src/", "/dst/"]


def test_pull_preserves_modes_mtimes_and_symlinks(ssh_target, tmp_path):
    source, local = tmp_path / AWKWARD, tmp_path / "local copy"
    _make_tree(source)
    result = rsync_pull(ssh_target, str(source), local)
    assert _snapshot(local) == _snapshot(source)
    assert result.files_transferred == 4
    assert result.bytes_transferred == sum(
        p.stat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink())
    assert result.changed_items >= 7
    again = rsync_pull(ssh_target, str(source), local)
    assert again.files_transferred == 0 and again.bytes_transferred == 0


def test_pull_deletes_what_vanished_from_the_source_unless_told_not_to(ssh_target, tmp_path):
    source, local = tmp_path / "src", tmp_path / "local"
    _make_tree(source)
    rsync_pull(ssh_target, str(source), local)
    (source / "plain.txt").unlink()
    kept = rsync_pull(ssh_target, str(source), local, delete=False)
    assert (local / "plain.txt").exists() and kept.files_deleted == 0
    result = rsync_pull(ssh_target, str(source), local)
    assert not (local / "plain.txt").exists() and result.files_deleted == 1


def test_push_preserves_the_tree_into_a_remote_dir_with_awkward_name(ssh_target, tmp_path):
    source, remote = tmp_path / "local", tmp_path / AWKWARD
    _make_tree(source)
    result = rsync_push(source, ssh_target, str(remote))
    assert _snapshot(remote) == _snapshot(source)
    assert result.files_transferred == 4


def test_link_dest_hard_links_unchanged_files(ssh_target, tmp_path):
    source = tmp_path / "src"
    _make_tree(source)
    first, second = tmp_path / "snap-1", tmp_path / "snap-2"
    rsync_pull(ssh_target, str(source), first)
    (source / "plain.txt").write_text("changed")
    result = rsync_pull(ssh_target, str(source), second, link_dest=first)
    data = "sub dir/deeper/data.bin"
    assert os.stat(second / data).st_ino == os.stat(first / data).st_ino
    assert os.stat(second / "plain.txt").st_ino != os.stat(first / "plain.txt").st_ino
    assert (second / "plain.txt").read_text() == "changed"
    assert (first / "plain.txt").read_text() == "plain", "the old snapshot is untouched"
    assert result.files_transferred == 1


def test_push_with_remote_link_dest(ssh_target, tmp_path):
    source = tmp_path / "src"
    _make_tree(source)
    rsync_push(source, ssh_target, str(tmp_path / "remote-1"))
    rsync_push(source, ssh_target, str(tmp_path / "remote-2"),
               link_dest=str(tmp_path / "remote-1"))
    data = "sub dir/deeper/data.bin"
    assert (os.stat(tmp_path / "remote-2" / data).st_ino
            == os.stat(tmp_path / "remote-1" / data).st_ino)


def test_changed_host_key_is_refused_and_not_transient(private_sshd, tmp_path):
    source = tmp_path / "src"
    _make_tree(source)
    private_sshd.regenerate_host_key()
    with pytest.raises(RsyncFailed) as caught:
        rsync_pull(private_sshd.target(), str(source), tmp_path / "local")
    error = caught.value
    assert error.host_key_rejected and not error.transient
    assert error.facts["presented_fingerprint"] == private_sshd.host_key_fingerprint
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in error.stderr_tail
    assert not (tmp_path / "local" / "plain.txt").exists()


def test_unknown_host_is_refused(sshd_server, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "empty_known_hosts").write_text("")
    target = sshd_server.target(known_hosts_file=tmp_path / "empty_known_hosts")
    with pytest.raises(RsyncFailed) as caught:
        rsync_pull(target, str(tmp_path / "src"), tmp_path / "local")
    assert caught.value.host_key_rejected and not caught.value.transient
    assert (tmp_path / "empty_known_hosts").read_text() == ""


def test_unreachable_host_is_transient(ssh_target, tmp_path):
    target = SshTarget(**{**ssh_target.to_dict(), "port": free_port()})
    with pytest.raises(RsyncFailed) as caught:
        rsync_pull(target, str(tmp_path), tmp_path / "local")
    # 255 from ssh, or 12 when rsync notices the dead pipe first: both transient.
    assert caught.value.exit_code in (12, 255) and caught.value.transient
    assert "Connection refused" in caught.value.stderr_tail
    assert str(target.port) in str(caught.value)


def test_missing_remote_dir_is_a_permanent_failure(ssh_target, tmp_path):
    with pytest.raises(RsyncFailed) as caught:
        rsync_pull(ssh_target, str(tmp_path / "nope"), tmp_path / "local")
    assert caught.value.exit_code == 23 and not caught.value.transient
    assert "nope" in caught.value.stderr_tail


def test_connection_dropped_mid_transfer_is_transient_and_a_retry_completes(private_sshd,
                                                                             tmp_path):
    source, local = tmp_path / "src", tmp_path / "local"
    source.mkdir()
    (source / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    target = private_sshd.target()

    def in_flight_bytes() -> int:
        return sum(os.path.getsize(local / n) for n in os.listdir(local)
                   if n.startswith(".big.bin."))

    def kill_sshd_mid_transfer():
        wait_for(lambda: in_flight_bytes() >= 256 * 1024, timeout=30, what="rsync progress")
        private_sshd.kill()

    killer = threading.Thread(target=kill_sshd_mid_transfer)
    killer.start()
    try:
        with pytest.raises(RsyncFailed) as caught:
            rsync_pull(target, str(source), local, extra=["--bwlimit=500"])
    finally:
        killer.join()
    assert caught.value.transient, caught.value
    assert not (local / "big.bin").exists()
    assert (local / ".rsync-partial" / "big.bin").exists(), "kept for resuming"

    delays = []

    def restart_instead_of_sleeping(seconds: float) -> None:
        delays.append(seconds)
        private_sshd.start()

    calls = []

    def pull():
        calls.append(1)
        return rsync_pull(target, str(source), local)

    result = with_retries(pull, attempts=3, sleep=restart_instead_of_sleeping)
    assert len(calls) == 2 and len(delays) == 1
    assert result.files_transferred == 1
    assert (local / "big.bin").read_bytes() == (source / "big.bin").read_bytes()
    assert not (local / ".rsync-partial").exists()


def test_dangerous_paths_are_refused(ssh_target, tmp_path):
    with pytest.raises(ValueError):
        rsync_pull(ssh_target, "", tmp_path / "local")
    with pytest.raises(ValueError):
        rsync_push(tmp_path, ssh_target, "/")
    with pytest.raises(ValueError):
        rsync_push(tmp_path, ssh_target, "")


# -- exit code classification and with_retries (no processes) ------------------------------

TARGET = SshTarget(host="db1", user="backup", key_file="/k", known_hosts_file="/kh")


@pytest.mark.parametrize("code, stderr, transient", [
    (10, "", True), (12, "rsync: connection unexpectedly closed", True), (30, "", True),
    (35, "", True), (24, "file has vanished: /x", True), (255, "Connection refused", True),
    (23, "rsync: send_files failed to open /x: Permission denied (13)", False),
    (255, "backup@db1: Permission denied (publickey).", False),
    (1, "", False), (5, "", False), (11, "", False), (20, "", False),
])
def test_exit_code_classification(code, stderr, transient):
    error = _failure(code, stderr, TARGET, ["rsync"])
    assert error.transient is transient and error.exit_code == code
    assert error.meaning and error.host == "db1"


def test_host_key_failure_is_never_transient():
    stderr = ("No ED25519 host key is known for [db1]:2222 and you have requested strict "
              "checking.\nHost key verification failed.")
    error = _failure(255, stderr, TARGET, ["rsync"])
    assert error.host_key_rejected and not error.transient


def test_with_retries_retries_only_transient_errors():
    outcomes = [_failure(12, "", TARGET, []), _failure(255, "", TARGET, []), "done"]
    delays = []

    def flaky():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert with_retries(flaky, attempts=3, sleep=delays.append, base_delay=2) == "done"
    assert delays == [2, 4]

    permanent = _failure(23, "", TARGET, [])
    calls = []

    def broken():
        calls.append(1)
        raise permanent

    with pytest.raises(RsyncFailed) as caught:
        with_retries(broken, attempts=5, sleep=delays.append)
    assert caught.value is permanent and len(calls) == 1


def test_with_retries_gives_up_after_the_last_attempt():
    calls = []

    def always_down():
        calls.append(1)
        raise _failure(255, "Connection refused", TARGET, [])

    with pytest.raises(RsyncFailed):
        with_retries(always_down, attempts=3, sleep=lambda s: None)
    assert len(calls) == 3
    with pytest.raises(ValueError):
        with_retries(always_down, attempts=0)
