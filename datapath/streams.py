"""The streaming engine: plaintext -> zstd -> AES-256-GCM envelope -> store, and back.

Writing overlaps its stages on both cores: the calling thread reads the producer and
hashes the plaintext, zstd compresses on its own worker threads (outside the GIL), and a
sealing thread cuts the compressed stream into envelope chunks, encrypts, hashes and
writes them. Queues between stages are bounded, so memory stays flat whatever the size.
Nothing is committed here: the caller commits the object and then the manifest.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

import zstandard

from drfleet.backup_format.envelope import ObjectSealer

READ_SIZE = 1 << 20
QUEUE_DEPTH = 8
DEFAULT_LEVEL = 1  # bench/data_path.py: level 1 was fastest at an equal ratio (README, "Figures")
DEFAULT_THREADS = 2


@dataclass
class StreamStats:
    plaintext_size: int = 0
    plaintext_sha256: str = ""
    stored_size: int = 0
    stored_sha256: str = ""
    compressed_size: int = 0
    seconds: float = 0.0


class _SealingThread(threading.Thread):
    """Cuts compressed bytes into chunks, seals, hashes and writes them."""

    def __init__(self, sealer: ObjectSealer, write: Callable[[bytes], None]) -> None:
        super().__init__(name="drfleet-sealer", daemon=True)
        self.sealer, self.write = sealer, write
        self.inbox: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.error: BaseException | None = None
        self.stored_sha = hashlib.sha256()
        self.stored_size = 0
        self.compressed_size = 0
        self.cancelled = threading.Event()

    def _emit(self, data: bytes) -> None:
        self.stored_sha.update(data)
        self.stored_size += len(data)
        self.write(data)

    def run(self) -> None:
        chunk = self.sealer.chunk_size
        pending = bytearray()
        try:
            self._emit(self.sealer.header())
            while True:
                piece = self.inbox.get()
                if piece is None or self.cancelled.is_set():
                    break
                pending += piece
                self.compressed_size += len(piece)
                while len(pending) > chunk:
                    self._emit(self.sealer.seal(memoryview(pending)[:chunk], final=False))
                    del pending[:chunk]
            if not self.cancelled.is_set():
                self._emit(self.sealer.seal(bytes(pending), final=True))
        except BaseException as exc:  # reported to the caller's thread
            self.error = exc
            self.cancelled.set()
            while True:  # drain so the producer side never blocks on a dead consumer
                try:
                    if self.inbox.get(timeout=0.1) is None:
                        break
                except queue.Empty:
                    if self.inbox.empty():
                        break

    def put(self, piece: bytes) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.inbox.put(piece, timeout=0.2)
                return
            except queue.Full:
                continue


def seal_stream(source: BinaryIO, write: Callable[[bytes], None], sealer: ObjectSealer, *,
                level: int = DEFAULT_LEVEL, threads: int = DEFAULT_THREADS,
                progress: Callable[[int, float], None] | None = None,
                hash_plaintext: bool = True) -> StreamStats:
    """Read ``source`` to its end and write its sealed, compressed form with ``write``.

    Returns sizes and SHA-256 of the plaintext and of the stored bytes. Raises whatever
    reading, compressing, sealing or writing raised (the caller aborts the object).
    ``progress(plaintext_bytes, seconds)`` is called about once per second.
    ``hash_plaintext=False``: the caller hashes the plaintext itself (``plaintext_sha256``
    is then empty).
    """
    started = time.monotonic()
    plain_sha = hashlib.sha256()
    plain_size = 0
    compressor = zstandard.ZstdCompressor(level=level, threads=threads).compressobj(
        size=-1)
    sealing = _SealingThread(sealer, write)
    sealing.start()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    last_report = started
    try:
        readinto = getattr(source, "readinto", None)
        while True:
            if readinto is not None:
                n = readinto(view)
                data = view[:n] if n else b""
            else:
                data = source.read(READ_SIZE)
                n = len(data)
            if not n:
                break
            if hash_plaintext:
                plain_sha.update(data)
            plain_size += n
            out = compressor.compress(data)
            if out:
                sealing.put(out)
            if progress and time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                progress(plain_size, last_report - started)
        tail = compressor.flush()
        if tail:
            sealing.put(tail)
        sealing.put(None)
    except BaseException:
        sealing.cancelled.set()
        try:
            sealing.inbox.put_nowait(None)
        except queue.Full:
            pass
        sealing.join(10)
        raise
    sealing.join()
    if sealing.error is not None:
        raise sealing.error
    return StreamStats(plain_size, plain_sha.hexdigest() if hash_plaintext else "", sealing.stored_size,
                       sealing.stored_sha.hexdigest(), sealing.compressed_size,
                       time.monotonic() - started)


class HashingReader(io.RawIOBase):
    """A readable that hashes (SHA-256) and counts what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self.raw.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.sha.update(data)
        self.size += n
        return n

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data


class ChunksReader(io.RawIOBase):
    """A readable over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self.chunks, self.pending = chunks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while not self.pending:
            try:
                self.pending = memoryview(next(self.chunks))
            except StopIteration:
                return 0
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def decompressing_reader(compressed: BinaryIO) -> BinaryIO:
    """A readable of the plaintext of a zstd stream (several frames allowed)."""
    return zstandard.ZstdDecompressor().stream_reader(compressed, read_across_frames=True,
                                                      read_size=READ_SIZE)
