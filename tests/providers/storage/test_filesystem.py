"""FilesystemStore beyond the shared contract: a full disk, read-only media, temp files of
killed writers, the on-disk layout."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drfleet.providers.storage.errors import InvalidKey, ObjectNotFound, StoreAccessDenied, StoreFull
from drfleet.providers.storage.filesystem import FilesystemStore

ROOT = Path(__file__).resolve().parents[3]


def mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); these tests need "
                    "root or CAP_SYS_ADMIN to get a real ENOSPC/EROFS from the kernel")


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs), unmounted afterwards."""
    mountpoint = tmp_path / "small"
    mount_tmpfs(mountpoint, "size=1m,mode=0700")
    yield mountpoint
    subprocess.run(["umount", str(mountpoint)], check=True)


@pytest.fixture
def read_only_disk(tmp_path):
    mountpoint = tmp_path / "ro"
    mount_tmpfs(mountpoint, "size=1m,ro")
    yield mountpoint
    subprocess.run(["umount", str(mountpoint)], check=True)


def test_full_disk_during_streaming_write_raises_store_full_and_cleans_up(small_disk):
    store = FilesystemStore(small_disk / "store", name="tiny")
    with pytest.raises(StoreFull) as caught:
        with store.writer("big/object") as writer:
            for _ in range(4):
                writer.write(b"\xab" * (512 * 1024))
            writer.commit()
    assert caught.value.facts["store"] == "tiny"
    assert caught.value.facts["key"] == "big/object"
    assert list(store.partial_dir.iterdir()) == []
    assert not store.exists("big/object")
    # The space is back: a small write works.
    store.put_bytes("small", b"fits")
    assert store.get_bytes("small") == b"fits"


def test_full_disk_in_put_bytes_raises_store_full_and_keeps_the_old_object(small_disk):
    store = FilesystemStore(small_disk)
    store.put_bytes("k", b"old")
    with pytest.raises(StoreFull):
        store.put_bytes("k", b"\0" * (2 << 20))
    assert store.get_bytes("k") == b"old"
    assert list(store.partial_dir.iterdir()) == []


def test_read_only_media_raises_access_denied(read_only_disk):
    store = FilesystemStore(read_only_disk)
    with pytest.raises(StoreAccessDenied) as caught:
        store.put_bytes("k", b"x")
    assert caught.value.facts["errno"] == "EROFS"
    assert list(store.list()) == []


def test_reap_partials_removes_what_a_killed_writer_left(tmp_path):
    root = tmp_path / "store"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from drfleet.providers.storage.filesystem import FilesystemStore
        writer = FilesystemStore({str(root)!r}).writer("half/written")
        writer.write(b"x" * (3 << 20))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == -9
    store = FilesystemStore(root)
    [leftover] = list(store.partial_dir.iterdir())
    assert list(store.list()) == []

    live = store.writer("live")  # a writer still running must survive reaping
    live.write(b"still going")
    assert store.reap_partials(older_than_seconds=3600) == 0  # both are fresh
    an_hour_ago = time.time() - 7200
    os.utime(leftover, (an_hour_ago, an_hour_ago))
    assert store.reap_partials(older_than_seconds=3600) == 1
    assert not leftover.exists()
    live.commit()
    assert store.get_bytes("live") == b"still going"
    assert list(store.partial_dir.iterdir()) == []


def test_root_is_created_private_on_first_write_only(tmp_path):
    store = FilesystemStore(tmp_path / "deep" / "root")
    assert list(store.list()) == []
    with pytest.raises(ObjectNotFound):
        store.get_bytes("k")
    assert not store.root.exists()
    store.put_bytes("a/b", b"x")
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert (store.root / "a" / "b").read_bytes() == b"x"


def test_partial_dir_name_is_reserved(tmp_path):
    store = FilesystemStore(tmp_path)
    with pytest.raises(InvalidKey):
        store.put_bytes(".partial/x", b"x")
    store.put_bytes("a/.partial", b"allowed below the top level")
    store.put_bytes(".partials", b"and with another name")
    assert [info.key for info in store.list()] == [".partials", "a/.partial"]


def test_key_cannot_be_both_object_and_directory(tmp_path):
    store = FilesystemStore(tmp_path)
    store.put_bytes("a", b"file")
    with pytest.raises(InvalidKey, match="already an object"):
        store.put_bytes("a/b", b"x")
    store.put_bytes("c/d", b"x")
    with pytest.raises(InvalidKey, match="prefix of other objects"):
        store.put_bytes("c", b"x")
    with pytest.raises(InvalidKey):
        store.put_bytes("c", b"x", if_absent=True)
    with pytest.raises(ObjectNotFound):
        store.get_bytes("c")
    assert [info.key for info in store.list()] == ["a", "c/d"]
    assert list(store.partial_dir.iterdir()) == []


def test_delete_removes_emptied_directories(tmp_path):
    store = FilesystemStore(tmp_path / "s")
    store.put_bytes("a/b/c", b"1")
    store.put_bytes("a/x", b"2")
    store.delete("a/b/c")
    assert not (store.root / "a" / "b").exists()
    store.delete("a/x")
    assert sorted(p.name for p in store.root.iterdir()) == [".partial"]


_names = st.text(alphabet="ab-0/\u00e9", min_size=1, max_size=8).filter(
    lambda k: "//" not in k and not k.startswith("/") and not k.endswith("/"))


@settings(max_examples=40, deadline=None, database=None)
@given(keys=st.sets(_names, min_size=1, max_size=12))
def test_list_order_matches_string_order(keys):
    # A filesystem cannot hold both "a" and "a/b"; drop keys that are directories of others.
    keys = {k for k in keys if not any(other.startswith(k + "/") for other in keys)}
    with tempfile.TemporaryDirectory() as root:
        store = FilesystemStore(root)
        for key in keys:
            store.put_bytes(key, b"")
        assert [info.key for info in store.list()] == sorted(keys)
