"""One suite for every Store: each test checks a promise made in providers/storage/base.py,
against each backend (real directories, a real moto S3 server) and wrapper."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from drfleet.providers.storage import RetryingStore
from drfleet.providers.storage.base import ObjectInfo, Store
from drfleet.providers.storage.errors import InvalidKey, ObjectExists, ObjectNotFound, StoreError
from drfleet.providers.storage.filesystem import FilesystemStore
from drfleet.providers.storage.rclone import RcloneStore
from drfleet.providers.storage.s3 import S3Store
from drfleet.providers.storage.sftp import SftpStore

MiB = 1 << 20


@dataclass
class Case:
    store: Store
    leftovers: Callable[[], list]  # temp files / incomplete uploads a store left behind
    part_size: int  # sizes above this exercise multipart uploads on S3


def _filesystem(tmp_path, request) -> Case:
    store = FilesystemStore(tmp_path / "store")
    return Case(store, lambda: sorted(store.partial_dir.glob("*")), 5 * MiB)


def _s3(tmp_path, request, **settings) -> Case:
    server = request.getfixturevalue("s3_server")
    store = S3Store(**server.store_settings(server.new_bucket()), **settings)
    return Case(store, store.list_incomplete_uploads, store.part_size)


def _sftp(tmp_path, request) -> Case:
    server = request.getfixturevalue("sshd_server")
    root = tmp_path / "sftp-root"
    store = SftpStore(server.host, str(root), port=server.port, user=server.user,
                      key_file=str(server.key_file), known_hosts_file=str(server.known_hosts_file))
    request.addfinalizer(store.close)
    return Case(store, store.partials, MiB)


def _rclone_local(tmp_path, request) -> Case:
    config = request.getfixturevalue("rclone_local_config")
    store = RcloneStore(f"local-test:{tmp_path / 'rclone-root'}", str(config))
    return Case(store, store.partials, 300_000)


def _rclone_served(tmp_path, request) -> Case:
    served = request.getfixturevalue("rclone_served")
    store = RcloneStore(served.remote(), str(served.config_file))
    return Case(store, store.partials, 300_000)


def _azure(tmp_path, request) -> Case:
    azurite = request.getfixturevalue("azurite")
    store = RcloneStore(azurite.remote(), str(azurite.config_file))
    return Case(store, store.partials, 300_000)


BACKENDS = {
    "filesystem": _filesystem,
    "s3": _s3,
    "s3-5MiB-parts-prefixed": lambda t, r: _s3(t, r, part_size=5 * MiB, prefix="tenant/a"),
    "sftp": _sftp,
    "rclone-local": _rclone_local,
    "rclone-served-webdav": _rclone_served,
    "rclone-azure-blob-azurite": _azure,
    "retrying-filesystem": lambda t, r: _with(_filesystem(t, r), RetryingStore),
}


def _with(case: Case, wrapper) -> Case:
    return Case(wrapper(case.store), case.leftovers, case.part_size)


@pytest.fixture(params=sorted(BACKENDS))
def case(request, tmp_path) -> Case:
    return BACKENDS[request.param](tmp_path, request)


@pytest.fixture
def store(case) -> Store:
    return case.store


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


SIZES = {"empty": lambda part: 0, "one-byte": lambda part: 1,
         "one-part": lambda part: part, "multi-part": lambda part: 2 * part + 12345}


def write_in_chunks(writer, data: bytes, chunk: int = MiB + 7) -> None:
    for offset in range(0, len(data), chunk):
        writer.write(data[offset:offset + chunk])


def assert_absent(case: Case, key: str) -> None:
    store = case.store
    assert not store.exists(key)
    assert key not in [info.key for info in store.list()]
    with pytest.raises(ObjectNotFound):
        store.stat(key)
    assert case.leftovers() == []


# -- round trips -------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_put_bytes_round_trip(case, size):
    data = payload(SIZES[size](case.part_size))
    assert case.store.put_bytes("obj/put", data) == ObjectInfo("obj/put", len(data))
    assert case.store.get_bytes("obj/put") == data
    assert case.store.stat("obj/put") == ObjectInfo("obj/put", len(data))


@pytest.mark.parametrize("size", SIZES)
def test_writer_round_trip(case, size):
    data = payload(SIZES[size](case.part_size), seed=1)
    with case.store.writer("obj/streamed") as writer:
        write_in_chunks(writer, data)
        assert writer.bytes_written == len(data)
        assert writer.commit() == ObjectInfo("obj/streamed", len(data))
    with case.store.open("obj/streamed") as stream:
        chunks = iter(lambda: stream.read(MiB - 3), b"")
        assert b"".join(chunks) == data
    assert list(case.store.list("obj/")) == [ObjectInfo("obj/streamed", len(data))]
    assert case.leftovers() == []


def test_writer_accepts_bytearray_and_one_large_memoryview(case):
    data = payload(case.part_size + 5)
    with case.store.writer("obj") as writer:
        writer.write(bytearray(b"head"))
        writer.write(memoryview(data))
        writer.commit()
    assert case.store.get_bytes("obj") == b"head" + data


def test_writer_honours_storage_class_or_ignores_it(case):
    with case.store.writer("cold", storage_class="STANDARD_IA") as writer:
        writer.write(b"tiered")
        writer.commit()
    assert case.store.get_bytes("cold") == b"tiered"


def test_write_replaces_existing_object(store):
    store.put_bytes("k", b"old")
    store.put_bytes("k", b"new!")
    assert store.get_bytes("k") == b"new!"
    with store.writer("k") as writer:
        writer.write(b"newest")
        writer.commit()
    assert store.get_bytes("k") == b"newest"


def test_last_commit_wins_between_two_writers(store):
    first, second = store.writer("k"), store.writer("k")
    first.write(b"first")
    second.write(b"second")
    first.commit()
    second.commit()
    assert store.get_bytes("k") == b"second"


# -- nothing visible until commit --------------------------------------------------------

def test_nothing_visible_before_commit(case):
    data = payload(2 * case.part_size + 1)
    writer = case.store.writer("pending")
    write_in_chunks(writer, data)
    assert not case.store.exists("pending")
    assert list(case.store.list()) == []
    with pytest.raises(ObjectNotFound):
        case.store.get_bytes("pending")
    writer.commit()
    assert case.store.get_bytes("pending") == data


def test_abort_leaves_nothing(case):
    writer = case.store.writer("aborted")
    write_in_chunks(writer, payload(2 * case.part_size + 1))
    writer.abort()
    writer.abort()  # idempotent
    assert_absent(case, "aborted")
    with pytest.raises(StoreError):
        writer.write(b"more")
    with pytest.raises(StoreError):
        writer.commit()


def test_exception_inside_with_aborts_and_propagates(case):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), case.store.writer("failed") as writer:
        write_in_chunks(writer, payload(2 * case.part_size + 1))
        raise Boom()
    assert_absent(case, "failed")


def test_leaving_with_without_commit_aborts(case):
    with case.store.writer("forgotten") as writer:
        writer.write(b"never committed")
    assert_absent(case, "forgotten")


def test_aborted_rewrite_keeps_previous_object(case):
    case.store.put_bytes("k", b"previous")
    with case.store.writer("k") as writer:
        write_in_chunks(writer, payload(case.part_size + 1))
        writer.abort()
    assert case.store.get_bytes("k") == b"previous"
    assert case.leftovers() == []


def test_commit_is_final(store):
    writer = store.writer("k")
    writer.write(b"data")
    writer.commit()
    writer.abort()  # no effect after commit
    assert store.get_bytes("k") == b"data"
    with pytest.raises(StoreError):
        writer.write(b"more")
    with pytest.raises(StoreError):
        writer.commit()


# -- listing -----------------------------------------------------------------------------

KEYS = ["x-1", "x/0", "x/y/z", "x/z", "x/\u00e9", "x0", "y"]


def test_list_is_recursive_sorted_and_filtered_by_prefix(store):
    for index, key in enumerate(reversed(KEYS)):
        store.put_bytes(key, b"." * index)
    sizes = {key: len(KEYS) - 1 - i for i, key in enumerate(KEYS)}

    def keys(prefix=""):
        listed = list(store.list(prefix))
        assert all(info.size == sizes[info.key] for info in listed)
        return [info.key for info in listed]

    assert keys() == sorted(KEYS) == KEYS
    assert keys("x/") == ["x/0", "x/y/z", "x/z", "x/\u00e9"]
    assert keys("x") == ["x-1", "x/0", "x/y/z", "x/z", "x/\u00e9", "x0"]
    assert keys("x/y") == ["x/y/z"]
    assert keys("x/y/z") == ["x/y/z"]
    assert keys("nothing") == []


def test_list_of_empty_store_is_empty(store):
    assert list(store.list()) == []
    assert list(store.list("a/")) == []


def test_list_excludes_uncommitted_writes(store):
    store.put_bytes("done", b"1")
    with store.writer("in-progress") as writer:
        writer.write(b"2")
        assert [info.key for info in store.list()] == ["done"]
        writer.commit()
    assert [info.key for info in store.list()] == ["done", "in-progress"]


# -- delete, missing objects, if_absent ----------------------------------------------------

def test_delete_removes_and_is_idempotent(store):
    store.put_bytes("a/b/c", b"x")
    store.put_bytes("a/d", b"y")
    store.delete("a/b/c")
    store.delete("a/b/c")
    store.delete("never/existed")
    assert not store.exists("a/b/c")
    assert [info.key for info in store.list()] == ["a/d"]


@pytest.mark.parametrize("method", ["open", "get_bytes", "stat"])
def test_missing_object_raises_object_not_found(store, method):
    with pytest.raises(ObjectNotFound) as caught:
        getattr(store, method)("missing/key")
    assert caught.value.facts["key"] == "missing/key"
    assert caught.value.facts["store"] == store.name
    assert not store.exists("missing/key")


def test_put_if_absent_writes_once_and_then_refuses(store):
    assert store.put_bytes("once", b"first", if_absent=True) == ObjectInfo("once", 5)
    with pytest.raises(ObjectExists) as caught:
        store.put_bytes("once", b"second", if_absent=True)
    assert caught.value.facts["key"] == "once"
    assert store.get_bytes("once") == b"first"


# -- keys ----------------------------------------------------------------------------------

BAD_KEYS = ["", "/abs", "a/../b", "..", ".", "./a", "a/./b", "a\\b", "a//b", "a/", "a\0b"]
CALLS = {
    "put_bytes": lambda s, k: s.put_bytes(k, b"x"),
    "writer": lambda s, k: s.writer(k),
    "open": lambda s, k: s.open(k),
    "get_bytes": lambda s, k: s.get_bytes(k),
    "stat": lambda s, k: s.stat(k),
    "exists": lambda s, k: s.exists(k),
    "delete": lambda s, k: s.delete(k),
}


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_rejected_by_every_method(case, key):
    for call in CALLS.values():
        with pytest.raises(InvalidKey):
            call(case.store, key)
    assert list(case.store.list()) == []
    assert case.leftovers() == []


@pytest.mark.parametrize("prefix", ["/abs", "../x", "a/../", "a//", "a\\"])
def test_invalid_list_prefixes_are_rejected(store, prefix):
    with pytest.raises(InvalidKey):
        store.list(prefix)
