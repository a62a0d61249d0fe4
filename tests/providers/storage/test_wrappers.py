"""RetryingStore and ReadOnlyStore over real stores; faults are injected by a wrapper that
fails a given number of calls before passing them on, and by a real S3 outage."""

from __future__ import annotations

import pytest

from drfleet.providers.storage.base import ObjectInfo
from drfleet.providers.storage.errors import ObjectExists, ObjectNotFound, StoreReadOnly, StoreUnavailable
from drfleet.providers.storage.filesystem import FilesystemStore
from drfleet.providers.storage.s3 import S3Store
from drfleet.providers.storage.wrappers import ReadOnlyStore, RetryingStore, StoreWrapper
from tests.fixtures.s3_server import TcpRelay


class FlakyStore(StoreWrapper):
    """Fails the first ``failures[operation]`` calls of each operation with
    StoreUnavailable; counts every call."""

    def __init__(self, inner, **failures: int) -> None:
        super().__init__(inner)
        self.failures = failures
        self.calls: dict[str, int] = {}

    def _maybe_fail(self, operation: str, key: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        if self.failures.get(operation, 0) > 0:
            self.failures[operation] -= 1
            raise StoreUnavailable(self.name, key, "injected failure")

    def put_bytes(self, key, data, **options):
        self._maybe_fail("put_bytes", key)
        return super().put_bytes(key, data, **options)

    def open(self, key):
        self._maybe_fail("open", key)
        return super().open(key)

    def get_bytes(self, key):
        self._maybe_fail("get_bytes", key)
        return super().get_bytes(key)

    def stat(self, key):
        self._maybe_fail("stat", key)
        return super().stat(key)

    def exists(self, key):
        self._maybe_fail("exists", key)
        return super().exists(key)

    def delete(self, key):
        self._maybe_fail("delete", key)
        super().delete(key)


class Sleeps(list):
    """A ``sleep`` that records delays instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def disk(tmp_path) -> FilesystemStore:
    store = FilesystemStore(tmp_path / "store")
    store.put_bytes("k", b"value")
    return store


OPERATIONS = {
    "put_bytes": lambda s: s.put_bytes("k", b"value") == ObjectInfo("k", 5),
    "open": lambda s: s.open("k").read() == b"value",
    "get_bytes": lambda s: s.get_bytes("k") == b"value",
    "stat": lambda s: s.stat("k") == ObjectInfo("k", 5),
    "exists": lambda s: s.exists("k") is True,
    "delete": lambda s: s.delete("k") is None,
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_retries_unavailable_until_success(disk, operation):
    flaky = FlakyStore(disk, **{operation: 3})
    sleeps = Sleeps()
    store = RetryingStore(flaky, attempts=5, base_delay=0.2, max_delay=0.5, sleep=sleeps)
    assert OPERATIONS[operation](store)
    assert flaky.calls[operation] == 4
    caps = [0.2, 0.4, 0.5]  # base * 2**n, capped at max_delay
    assert len(sleeps) == 3
    assert all(cap / 2 <= delay <= cap for delay, cap in zip(sleeps, caps))


def test_gives_up_after_attempts_and_reraises(disk):
    flaky = FlakyStore(disk, get_bytes=100)
    sleeps = Sleeps()
    with pytest.raises(StoreUnavailable) as caught:
        RetryingStore(flaky, attempts=3, sleep=sleeps).get_bytes("k")
    assert flaky.calls["get_bytes"] == 3
    assert len(sleeps) == 2
    assert "gave up after 3 attempts" in caught.value.__notes__


def test_definite_answers_are_not_retried(disk):
    flaky = FlakyStore(disk)
    sleeps = Sleeps()
    store = RetryingStore(flaky, sleep=sleeps)
    with pytest.raises(ObjectNotFound):
        store.get_bytes("missing")
    with pytest.raises(ObjectExists):
        store.put_bytes("k", b"other", if_absent=True)
    assert flaky.calls == {"get_bytes": 1, "put_bytes": 1}
    assert sleeps == []


def test_list_resumes_after_a_failure_without_repeating_keys(disk):
    for key in ("a", "b", "c", "d"):
        disk.put_bytes(key, key.encode())

    class FailsMidList(StoreWrapper):
        listings = 0

        def list(self, prefix=""):
            self.listings += 1
            for index, info in enumerate(self.inner.list(prefix)):
                if self.listings == 1 and index == 2:
                    raise StoreUnavailable(self.name, None, "connection reset while listing")
                yield info

    sleeps = Sleeps()
    listed = [i.key for i in RetryingStore(FailsMidList(disk), sleep=sleeps).list()]
    assert listed == ["a", "b", "c", "d", "k"]
    assert len(sleeps) == 1


def test_if_absent_put_whose_reply_was_lost_counts_as_success(disk):
    class LosesFirstReply(StoreWrapper):
        def put_bytes(self, key, data, **options):
            info = self.inner.put_bytes(key, data, **options)
            if not getattr(self, "lost", False):
                self.lost = True
                raise StoreUnavailable(self.name, key, "connection reset before the reply")
            return info

    store = RetryingStore(LosesFirstReply(disk), sleep=Sleeps())
    assert store.put_bytes("new", b"payload", if_absent=True) == ObjectInfo("new", 7)
    assert disk.get_bytes("new") == b"payload"


def test_if_absent_put_after_a_lost_reply_still_refuses_other_content(disk):
    flaky = FlakyStore(disk, put_bytes=1)
    with pytest.raises(ObjectExists):
        RetryingStore(flaky, sleep=Sleeps()).put_bytes("k", b"different", if_absent=True)
    assert disk.get_bytes("k") == b"value"


def test_writer_is_passed_through_not_retried(disk):
    store = RetryingStore(disk)
    with store.writer("streamed") as writer:
        writer.write(b"abc")
        writer.commit()
    assert type(writer).__name__ == "_FileWriter"
    assert disk.get_bytes("streamed") == b"abc"


def test_retries_ride_out_a_real_s3_outage(s3_server, s3_bucket):
    with TcpRelay(s3_server.port) as relay:
        s3 = S3Store(**s3_server.store_settings(s3_bucket, relay.endpoint_url), max_attempts=1)
        s3.put_bytes("k", b"before the outage")
        relay.cut()
        sleeps = []

        def sleep(seconds):  # the endpoint comes back during the second pause
            sleeps.append(seconds)
            if len(sleeps) == 2:
                relay.restore()

        store = RetryingStore(s3, attempts=4, sleep=sleep)
        assert store.get_bytes("k") == b"before the outage"
        assert len(sleeps) == 2


def test_read_only_store_refuses_writes_and_serves_reads(disk):
    store = ReadOnlyStore(RetryingStore(disk))
    for attempt in (lambda: store.put_bytes("k", b"x"), lambda: store.writer("new"),
                    lambda: store.delete("k")):
        with pytest.raises(StoreReadOnly) as caught:
            attempt()
        assert caught.value.facts["store"] == disk.name
    assert store.get_bytes("k") == b"value"
    assert [i.key for i in store.list()] == ["k"]
    assert store.exists("k") and store.stat("k").size == 5
    assert list(disk.partial_dir.iterdir()) == []
