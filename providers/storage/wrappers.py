"""Wrappers that add one behaviour to any ``Store`` and keep its interface.

Stack them in one place (``providers.storage.open_store``), e.g.
``ReadOnlyStore(RetryingStore(S3Store(...)))`` for a restore.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import BinaryIO, Callable, Iterator, TypeVar

from drfleet.providers.storage.base import ObjectInfo, ObjectWriter, Store, validate_prefix
from drfleet.providers.storage.errors import ObjectExists, StoreReadOnly, StoreUnavailable
from drfleet.providers.storage.support.streams import ObjectStream
from drfleet.retry import Backoff, retry_call

log = logging.getLogger(__name__)
T = TypeVar("T")


def innermost(store: Store) -> Store:
    """The backend under every wrapper of ``store`` (for backend-only maintenance such as
    ``reap_partials`` or ``abort_incomplete_uploads``)."""
    while isinstance(store, StoreWrapper):
        store = store.inner
    return store


class StoreWrapper(Store):
    """Passes every call to ``inner``; subclasses override what they change."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.name = inner.name

    def writer(self, key: str, *, storage_class: str | None = None) -> ObjectWriter:
        return self.inner.writer(key, storage_class=storage_class)

    def put_bytes(self, key: str, data: bytes | bytearray | memoryview, *,
                  storage_class: str | None = None, if_absent: bool = False) -> ObjectInfo:
        return self.inner.put_bytes(key, data, storage_class=storage_class, if_absent=if_absent)

    def open(self, key: str) -> BinaryIO:
        return self.inner.open(key)

    def get_bytes(self, key: str) -> bytes:
        return self.inner.get_bytes(key)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class RetryingStore(StoreWrapper):
    """Retries calls that fail with ``StoreUnavailable``, up to ``attempts`` tries in all,
    sleeping ``min(max_delay, base_delay * 2**n)`` scaled by a random factor in [0.5, 1]
    between tries; then re-raises the last ``StoreUnavailable``. Other errors are raised at
    once.

    Retried: ``put_bytes``, ``open`` (opening only: a read that fails later is the
    caller's to redo), ``get_bytes``, ``stat``, ``exists``, ``list`` (resumed after the
    last key already yielded, so no key is yielded twice) and ``delete``.
    Not retried: ``writer``. A streaming write cannot be replayed without keeping the whole
    stream, so a failed writer is aborted and the caller restarts the object.

    ``put_bytes(if_absent=True)``: if a try fails ambiguously (the object may have been
    written before the connection dropped) and a later try gets ``ObjectExists``, the
    stored object is compared with ``data``; if equal, the earlier try succeeded and the
    call returns normally, otherwise ``ObjectExists`` is raised.
    """

    def __init__(self, inner: Store, attempts: int = 5, base_delay: float = 0.2,
                 max_delay: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(inner)
        self.attempts = max(1, attempts)
        self.backoff = Backoff(base_delay, max_delay, jitter=True)
        self.sleep = sleep

    def _retry(self, operation: str, key: str | None, call: Callable[[], T]) -> T:
        return retry_call(call, attempts=self.attempts, backoff=self.backoff, sleep=self.sleep,
                          what=f"store {self.name}: {operation} {key or ''}",
                          retry_on=lambda exc: isinstance(exc, StoreUnavailable))

    def put_bytes(self, key: str, data: bytes | bytearray | memoryview, *,
                  storage_class: str | None = None, if_absent: bool = False) -> ObjectInfo:
        failed_before = False

        def put() -> ObjectInfo:
            nonlocal failed_before
            try:
                return self.inner.put_bytes(key, data, storage_class=storage_class,
                                            if_absent=if_absent)
            except StoreUnavailable:
                failed_before = True
                raise
            except ObjectExists:
                if failed_before and self.inner.get_bytes(key) == bytes(data):
                    return ObjectInfo(key, len(data))
                raise

        return self._retry("put_bytes", key, put)

    def open(self, key: str) -> BinaryIO:
        return self._retry("open", key, lambda: self.inner.open(key))

    def get_bytes(self, key: str) -> bytes:
        return self._retry("get_bytes", key, lambda: self.inner.get_bytes(key))

    def stat(self, key: str) -> ObjectInfo:
        return self._retry("stat", key, lambda: self.inner.stat(key))

    def exists(self, key: str) -> bool:
        return self._retry("exists", key, lambda: self.inner.exists(key))

    def delete(self, key: str) -> None:
        self._retry("delete", key, lambda: self.inner.delete(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix, store=self.name)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        last_key: str | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                for info in self.inner.list(prefix):
                    if last_key is None or info.key > last_key:  # keys come sorted
                        last_key = info.key
                        yield info
                return
            except StoreUnavailable as exc:
                if attempt == self.attempts:
                    exc.add_note(f"gave up after {attempt} attempts")
                    raise
                delay = self.backoff.delay(attempt - 1)
                log.warning("store %s unavailable while listing %r (attempt %d of %d), "
                            "resuming after %r in %.2fs: %s", self.name, prefix, attempt,
                            self.attempts, last_key, delay, exc.reason)
                self.sleep(delay)


class ReadOnlyStore(StoreWrapper):
    """Passes reads through and refuses writes with ``StoreReadOnly`` (for restores, so a
    bug cannot overwrite or delete the backups being restored)."""

    def writer(self, key: str, *, storage_class: str | None = None) -> ObjectWriter:
        raise StoreReadOnly(self.name, key, "writer")

    def put_bytes(self, key: str, data: bytes | bytearray | memoryview, *,
                  storage_class: str | None = None, if_absent: bool = False) -> ObjectInfo:
        raise StoreReadOnly(self.name, key, "put_bytes")

    def delete(self, key: str) -> None:
        raise StoreReadOnly(self.name, key, "delete")


class RateLimit:
    """A token bucket in bytes per second, shared by every transfer of one store (one
    location's bandwidth limit holds for all the writers and readers of a process).

    ``take(n)`` blocks until ``n`` more bytes fit: over any stretch of time the bytes
    taken stay within ``rate * seconds + burst``. ``clock``/``sleep`` can be replaced."""

    def __init__(self, bytes_per_second: int, *, burst_seconds: float = 0.25,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if bytes_per_second <= 0:
            raise ValueError("a bandwidth limit must be positive")
        self.rate = float(bytes_per_second)
        self.burst_seconds = burst_seconds
        self.clock, self.sleep = clock, sleep
        self._next_free = clock()
        self._lock = threading.Lock()

    def take(self, size: int) -> None:
        with self._lock:
            now = self.clock()
            start = max(now - self.burst_seconds, self._next_free)
            self._next_free = start + size / self.rate
            wait = self._next_free - now - self.burst_seconds
        if wait > 0:
            self.sleep(wait)


_SLICE = 64 << 10


class ThrottledStore(StoreWrapper):
    """Holds the data this store moves (writes and reads) to ``limit`` (a ``RateLimit``),
    for slow or metered links. Listing, stat and delete are not throttled."""

    def __init__(self, inner: Store, limit: RateLimit) -> None:
        super().__init__(inner)
        self.limit = limit

    def writer(self, key: str, *, storage_class: str | None = None) -> ObjectWriter:
        return _ThrottledWriter(self.inner.writer(key, storage_class=storage_class), self.limit)

    def put_bytes(self, key: str, data: bytes | bytearray | memoryview, *,
                  storage_class: str | None = None, if_absent: bool = False) -> ObjectInfo:
        self.limit.take(len(data))
        return self.inner.put_bytes(key, data, storage_class=storage_class, if_absent=if_absent)

    def open(self, key: str) -> BinaryIO:
        return _ThrottledReader(self.inner.open(key), self.limit)  # type: ignore[return-value]

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()


class _ThrottledWriter(ObjectWriter):
    def __init__(self, inner: ObjectWriter, limit: RateLimit) -> None:
        super().__init__(inner.store_name, inner.key)
        self.inner, self.limit = inner, limit

    def _write(self, data: memoryview) -> None:
        for offset in range(0, len(data), _SLICE):
            piece = data[offset:offset + _SLICE]
            self.limit.take(len(piece))
            self.inner.write(piece)

    def _commit(self) -> ObjectInfo:
        return self.inner.commit()

    def _abort(self) -> None:
        self.inner.abort()


class _ThrottledReader(ObjectStream):
    def __init__(self, inner: BinaryIO, limit: RateLimit) -> None:
        super().__init__()
        self.inner, self.limit = inner, limit

    def _read(self, size: int | None) -> bytes:
        if size is None:
            chunks = []
            while chunk := self._read(_SLICE):
                chunks.append(chunk)
            return b"".join(chunks)
        data = self.inner.read(min(size, _SLICE))
        self.limit.take(len(data))
        return data

    def _release(self) -> None:
        self.inner.close()
