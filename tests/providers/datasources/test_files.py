"""files data source: real directory trees, real tar streams, hostile archives."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from drfleet.providers.datasources import files
from drfleet.providers.datasources.errors import FileUnreadable, RestoreFailed, SourceToolFailed, UnsafeArchiveMember

IS_ROOT = os.geteuid() == 0
MTIME_NS = 1_600_000_000_123_456_789


def read_all(producer) -> bytes:
    chunks = []
    while chunk := producer.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def dump_bytes(path, options=None) -> bytes:
    with files.dump(str(path), options) as producer:
        return read_all(producer)


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "src"
    (root / "etc" / "app").mkdir(parents=True)
    (root / "empty" / "nested-empty").mkdir(parents=True)
    (root / "etc" / "app" / "config.yaml").write_text("db: primary\n")
    (root / "etc" / "app" / "secret.key").write_bytes(os.urandom(64))
    (root / "etc" / "app" / "secret.key").chmod(0o600)
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / ("long-name-" * 15 + "end.txt")).write_text("PAX keeps long names\n")
    (root / "ünïcode.txt").write_text("naïve\n")
    os.symlink("etc/app/config.yaml", root / "config-link")
    os.symlink("does-not-exist-yet", root / "dangling")
    os.link(root / "bin" / "tool", root / "bin" / "tool-hardlink")
    (root / "readonly").mkdir()
    (root / "readonly" / "inside.txt").write_text("in a 0555 dir\n")
    (root / "readonly").chmod(0o555)
    if IS_ROOT:
        os.chown(root / "etc" / "app" / "config.yaml", 12345, 23456)
        os.chown(root / "config-link", 4242, 4343, follow_symlinks=False)
    for path in [*root.rglob("*"), root]:
        os.utime(path, ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
    yield root
    (root / "readonly").chmod(0o755)


def test_round_trip_preserves_content_modes_mtimes_links_and_empty_dirs(tree, tmp_path):
    target = tmp_path / "restored"
    files.restore(str(target), io.BytesIO(dump_bytes(tree)))

    original, restored = files.fingerprint(str(tree)), files.fingerprint(str(target))
    assert original == restored
    entries = restored["entries"]
    assert entries["etc/app/secret.key"]["mode"] == "0600"
    assert entries["bin/tool"]["mode"] == "0755"
    assert entries["readonly"]["mode"] == "0555"
    assert entries["config-link"] == {"type": "symlink", "target": "etc/app/config.yaml"}
    assert entries["dangling"] == {"type": "symlink", "target": "does-not-exist-yet"}
    assert entries["empty/nested-empty"]["type"] == "dir"
    for path in [*target.rglob("*"), target]:
        assert os.lstat(path).st_mtime_ns == MTIME_NS, path
    assert os.stat(target / "bin" / "tool").st_ino == os.stat(target / "bin" / "tool-hardlink").st_ino
    assert (target / ("long-name-" * 15 + "end.txt")).read_text() == "PAX keeps long names\n"


@pytest.mark.skipif(not IS_ROOT, reason="owners are restored only when running as root")
def test_round_trip_restores_owners_as_root(tree, tmp_path):
    target = tmp_path / "restored"
    files.restore(str(target), io.BytesIO(dump_bytes(tree)))
    st = os.stat(target / "etc" / "app" / "config.yaml")
    assert (st.st_uid, st.st_gid) == (12345, 23456)
    link = os.lstat(target / "config-link")
    assert (link.st_uid, link.st_gid) == (4242, 4343)


def test_fingerprint_notices_one_changed_byte_and_one_changed_mode(tree):
    before = files.fingerprint(str(tree))
    with open(tree / "big.bin", "r+b") as handle:
        handle.seek(1 << 20)
        byte = handle.read(1)
        handle.seek(1 << 20)
        handle.write(bytes([byte[0] ^ 1]))
    after_content = files.fingerprint(str(tree))
    (tree / "bin" / "tool").chmod(0o700)
    after_mode = files.fingerprint(str(tree))
    assert before["entries"]["big.bin"] != after_content["entries"]["big.bin"]
    assert before["digest"] != after_content["digest"] != after_mode["digest"]


def test_exclude_patterns_skip_names_and_paths(tree, tmp_path):
    (tree / "node_modules" / "pkg").mkdir(parents=True)
    (tree / "node_modules" / "pkg" / "index.js").write_text("x")
    (tree / "etc" / "app" / ".config.yaml.swp").write_text("swap")
    options = {"exclude": ["node_modules", "*.swp", "etc/app/secret.*"]}
    target = tmp_path / "restored"
    files.restore(str(target), io.BytesIO(dump_bytes(tree, options)), options)
    names = set(files.fingerprint(str(target))["entries"])
    assert "node_modules" not in names and "etc/app/.config.yaml.swp" not in names
    assert "etc/app/secret.key" not in names and "etc/app/config.yaml" in names
    assert files.fingerprint(str(tree), options) == files.fingerprint(str(target))


def test_restore_refuses_a_non_empty_target(tree, tmp_path):
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(RestoreFailed, match="not empty"):
        files.restore(str(target), io.BytesIO(dump_bytes(tree)))
    assert (target / "keep.txt").read_text() == "mine"


def test_a_truncated_archive_is_refused(tree, tmp_path):
    data = dump_bytes(tree)
    with pytest.raises(RestoreFailed, match="corrupt or truncated"):
        files.restore(str(tmp_path / "restored"), io.BytesIO(data[: len(data) // 2]))


# --- failures while dumping -----------------------------------------------------------

def test_a_file_vanishing_during_the_dump_fails_it_naming_the_path(tmp_path):
    root = tmp_path / "live"
    root.mkdir()
    (root / "a_big").write_bytes(b"\0" * (8 << 20))  # far more than the pipe and buffers hold
    (root / "b_small").write_text("soon gone")
    producer = files.dump(str(root))
    assert len(producer.read(65536)) == 65536  # the writer is now inside a_big, blocked
    (root / "b_small").unlink()
    read_all(producer)
    with pytest.raises(FileUnreadable) as caught:
        producer.close()
    assert caught.value.path == str(root / "b_small")
    assert "vanished" in str(caught.value) and isinstance(caught.value, SourceToolFailed)


def test_a_file_shrinking_during_the_dump_fails_it(tmp_path):
    root = tmp_path / "live"
    root.mkdir()
    (root / "growing.log").write_bytes(b"\1" * (8 << 20))
    producer = files.dump(str(root))
    producer.read(65536)
    os.truncate(root / "growing.log", 1000)
    read_all(producer)
    with pytest.raises(FileUnreadable, match="shrank"):
        producer.close()


@pytest.mark.skipif(IS_ROOT, reason="root reads unreadable files")
def test_an_unreadable_file_fails_the_dump(tmp_path):
    root = tmp_path / "live"
    root.mkdir()
    (root / "locked").write_text("x")
    (root / "locked").chmod(0)
    producer = files.dump(str(root))
    read_all(producer)
    with pytest.raises(FileUnreadable, match="locked"):
        producer.close()


def test_dumping_a_missing_directory_fails_at_once(tmp_path):
    with pytest.raises(FileUnreadable, match="not a directory"):
        files.dump(str(tmp_path / "nope"))


# --- hostile archives -----------------------------------------------------------------

def hostile_tar(*members: tuple[str, str, str | bytes]) -> bytes:
    """members: (kind, name, data-or-linkname) with kind in file, dir, sym, hard, chr, fifo."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("sym", "hard"):
                info.linkname = payload
            tar.addfile(info)
    return buffer.getvalue()


def outside_paths(sandbox: Path, target: Path) -> list[Path]:
    return [p for p in sandbox.rglob("*") if target not in (p, *p.parents)]


HOSTILE = {  # case: (members, given the outside dir; what the refusal says)
    "absolute path": (lambda out: [("file", str(out / "abs-evil"), b"x")], "absolute path"),
    "dot-dot": (lambda out: [("file", "../dotdot-evil", b"x")], "'..'"),
    "nested dot-dot": (lambda out: [("dir", "a", ""), ("file", "a/../../nested-evil", b"x")],
                       "'..'"),
    "hardlink to /etc/passwd": (lambda out: [("hard", "pw", "/etc/passwd")], "absolute path"),
    "hardlink escaping": (lambda out: [("hard", "h", "../" + out.name + "/victim")], "'..'"),
    "hardlink to a non-member": (lambda out: [("hard", "h", "never-extracted")],
                                 "not a file extracted from this archive"),
    "symlink then file through it (outside)": (
        lambda out: [("sym", "l", str(out)), ("file", "l/through-evil", b"x")],
        "under a symlink of the archive"),
    "symlink then directory through it (outside)": (
        lambda out: [("sym", "l", "../outside"), ("dir", "l/d", ""), ("file", "l/d/evil", b"x")],
        "under a symlink of the archive"),
    "symlink as the archive root": (lambda out: [("sym", ".", str(out))], "root cannot be a symlink"),
    "symlink then file through it (inside)": (
        lambda out: [("dir", "sub", ""), ("sym", "l", "sub"), ("file", "l/through", b"x")],
        "under a symlink of the archive"),
    "symlink replacing a directory": (
        lambda out: [("dir", "d", ""), ("sym", "d", str(out))], "would replace a directory"),
    "character device": (lambda out: [("chr", "null", "")], "special files"),
    "fifo": (lambda out: [("fifo", "pipe", "")], "special files"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_nothing_is_written_outside(case, tmp_path):
    sandbox = tmp_path / "sandbox"
    outside = sandbox / "outside"
    outside.mkdir(parents=True)
    (outside / "victim").write_text("untouched")
    target = sandbox / "target"
    members, reason = HOSTILE[case]
    with pytest.raises(UnsafeArchiveMember) as caught:
        files.restore(str(target), io.BytesIO(hostile_tar(*members(outside))))
    assert reason in caught.value.reason
    assert [p.relative_to(sandbox) for p in outside_paths(sandbox, target)] == \
        [Path("outside"), Path("outside/victim")]
    assert (outside / "victim").read_text() == "untouched"


SYMLINKS_ANYWHERE = [("sym", "etc-hostname", "/etc/hostname"), ("sym", "etc", "/etc"),
                     ("sym", "up-and-out", "../outside"), ("sym", "victim", "../outside/victim"),
                     ("dir", "certs", ""), ("sym", "certs/ca.pem", "/etc/ssl/certs/ca-certificates.crt"),
                     ("sym", "a", "c/.."), ("sym", "c", "."), ("sym", "dangling", "no/such/file")]


def test_symlinks_pointing_anywhere_are_restored_as_symlinks_and_never_followed(tmp_path):
    sandbox = tmp_path / "sandbox"
    outside = sandbox / "outside"
    outside.mkdir(parents=True)
    (outside / "victim").write_text("untouched")
    target = sandbox / "target"
    files.restore(str(target), io.BytesIO(hostile_tar(*SYMLINKS_ANYWHERE)))
    for kind, name, link in SYMLINKS_ANYWHERE:
        if kind == "sym":
            assert os.readlink(target / name) == link, name
    assert (target / "certs").is_dir() and not (target / "certs").is_symlink()
    assert [p.relative_to(sandbox) for p in outside_paths(sandbox, target)] == \
        [Path("outside"), Path("outside/victim")]
    assert (outside / "victim").read_text() == "untouched"


def test_nothing_is_written_through_a_directory_symlink_planted_by_an_earlier_archive(tmp_path):
    """An incremental chain extracts several archives over one tree: a symlink the first
    planted (``d -> outside``) is never a way out for the next one's ``d/evil``."""
    from drfleet.providers.datasources.support.files_extract import Extractor

    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    Extractor(str(target), owners=False).extract(io.BytesIO(hostile_tar(("sym", "d", str(outside)))))
    for second in ([("file", "d/evil", b"x")], [("dir", "d/sub", ""), ("file", "d/sub/evil", b"x")],
                   [("sym", "d/link", "/etc")]):
        with pytest.raises(UnsafeArchiveMember) as caught:
            Extractor(str(target), owners=False).extract(io.BytesIO(hostile_tar(*second)))
        assert "is a symlink: nothing is written through a symlink" in caught.value.reason
    assert list(outside.iterdir()) == [] and os.readlink(target / "d") == str(outside)


def test_hard_links_within_the_tree_are_kept(tmp_path):
    root = tmp_path / "src"
    (root / "a").mkdir(parents=True)
    (root / "a" / "one").write_text("shared")
    os.link(root / "a" / "one", root / "two")
    (root / "out").symlink_to("/etc/hostname")
    files.restore(str(tmp_path / "t"), io.BytesIO(dump_bytes(root)))
    one, two = os.stat(tmp_path / "t" / "a" / "one"), os.stat(tmp_path / "t" / "two")
    assert (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino) and one.st_nlink == 2
    assert os.readlink(tmp_path / "t" / "out") == "/etc/hostname"
    assert files.fingerprint(str(root)) == files.fingerprint(str(tmp_path / "t"))


def test_refusal_names_the_member_and_the_reason(tmp_path):
    with pytest.raises(UnsafeArchiveMember) as caught:
        files.restore(str(tmp_path / "t"), io.BytesIO(hostile_tar(("file", "../evil", b"x"))))
    assert caught.value.member == "../evil" and "'..'" in caught.value.reason


def test_symlinks_inside_the_target_are_allowed(tmp_path):
    data = hostile_tar(("dir", "d", ""), ("file", "d/f", b"data"), ("sym", "d/self", "."),
                       ("sym", "to-f", "d/f"), ("sym", "d/up", "../d/f"))
    files.restore(str(tmp_path / "t"), io.BytesIO(data))
    assert (tmp_path / "t" / "to-f").read_bytes() == b"data"
    assert (tmp_path / "t" / "d" / "up").read_bytes() == b"data"


def test_modes_of_restored_special_bits_are_kept(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    (root / "setgid-dir").mkdir()
    (root / "setgid-dir").chmod(0o2775)
    (root / "sticky").mkdir()
    (root / "sticky").chmod(0o1777)
    files.restore(str(tmp_path / "t"), io.BytesIO(dump_bytes(root)))
    assert stat.S_IMODE(os.stat(tmp_path / "t" / "sticky").st_mode) == 0o1777
    assert files.fingerprint(str(root)) == files.fingerprint(str(tmp_path / "t"))


def test_a_producer_can_be_restored_from_directly(tree, tmp_path):
    with files.dump(str(tree)) as producer:
        files.restore(str(tmp_path / "piped"), producer)
    assert files.fingerprint(str(tree)) == files.fingerprint(str(tmp_path / "piped"))


@pytest.mark.parametrize("cut", ["member boundary", "inside a header", "garbage after members"])
def test_an_archive_without_its_end_block_is_refused(tmp_path, cut):
    data = hostile_tar(("file", "a", b"x" * 600), ("file", "b", b"y" * 600), ("file", "c", b"z"))
    member_size = 512 + 1024  # header + data padded to blocks (names are short: no PAX header)
    stream = {"member boundary": data[:2 * member_size],
              "inside a header": data[:2 * member_size + 100],
              "garbage after members": data[:2 * member_size] + b"\x7f" * 2048}[cut]
    with pytest.raises(RestoreFailed, match="corrupt or truncated"):
        files.restore(str(tmp_path / "t"), io.BytesIO(stream))
