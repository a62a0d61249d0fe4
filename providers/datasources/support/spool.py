"""A private spool file filled from a stream on a thread and read by followers as it grows.

A restore tool that must see the whole dump (``pg_restore -j`` seeks in it) and tools that
can start on the first bytes (``pg_restore`` reading stdin) share one pass over the backup
stream this way: the fill thread decrypts and decompresses once, into the file; each
follower is a file-like ``read(n)`` over the same file that waits for bytes not written
yet. Followers never hold more than one read in memory, so any number of them costs page
cache, not RAM.

Errors: a read of ``source`` that raises (a corrupt chunk, a hash mismatch at the end)
ends the fill; every follower's next read raises that error, and ``wait()`` raises it.
``cancel()`` (a consumer failed) makes the fill stop and followers raise ``SpoolCancelled``.
"""

from __future__ import annotations

import os
import threading
from typing import BinaryIO

CHUNK = 1 << 20
SEND_CHUNK = 4 << 20


class SpoolCancelled(Exception):
    """The spool was cancelled because another consumer of the same stream failed."""


class GrowingSpool:
    """``source`` copied into ``path`` (created, mode 0600) on a thread; see module doc.
    ``close()`` closes every follower's descriptor (the caller removes the file)."""

    def __init__(self, source: BinaryIO, path: str, first: bytes = b"") -> None:
        self.source, self.path = source, path
        self._first = first
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._changed = threading.Condition()
        self._followers: list[SpoolFollower] = []
        self.size = 0
        self.complete = False  # the source was read to its end
        self.done = False      # the fill thread ended, one way or another
        self.error: BaseException | None = None
        self.cancelled = False
        self._thread = threading.Thread(target=self._fill, name="drfleet-spool", daemon=True)

    def start(self) -> "GrowingSpool":
        self._thread.start()
        return self

    def _fill(self) -> None:
        try:
            data, self._first = self._first, b""
            while data and not self.cancelled:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
                with self._changed:
                    self.size += len(data)
                    self._changed.notify_all()
                data = self.source.read(CHUNK)
            self.complete = not data
        except BaseException as exc:  # noqa: BLE001 - handed to every follower and to wait()
            self.error = exc
        finally:
            os.close(self._fd)
            with self._changed:
                self.done = True
                self._changed.notify_all()

    def follower(self) -> "SpoolFollower":
        """A new reader from the first byte (with its own descriptor)."""
        follower = SpoolFollower(self)
        self._followers.append(follower)
        return follower

    def cancel(self) -> None:
        """Stop the fill at its next chunk; followers raise SpoolCancelled from now on."""
        with self._changed:
            self.cancelled = True
            self._changed.notify_all()

    def wait(self) -> int:
        """Wait for the fill to end and return the spooled size. Raises the fill's error,
        or SpoolCancelled when it was cancelled before the stream's end."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        if not self.complete:
            raise SpoolCancelled("the spool was cancelled before the stream ended")
        return self.size

    def close(self) -> None:
        """Cancel a fill still running, wait for it, close every follower."""
        if not self.done:
            self.cancel()
        self._thread.join()
        for follower in self._followers:
            follower.close()

    def available(self, position: int) -> int:
        """Bytes readable at ``position``, waiting for some: > 0, or 0 at the end.
        Raises the fill's error, or SpoolCancelled after ``cancel()``."""
        with self._changed:
            while True:
                if self.error is not None:
                    raise self.error
                if self.cancelled:
                    raise SpoolCancelled("another consumer of this stream failed")
                if self.size > position:
                    return self.size - position
                if self.done:
                    return 0
                self._changed.wait()


class SpoolFollower:
    """Reads a GrowingSpool from its start, waiting for bytes not yet written."""

    def __init__(self, spool: GrowingSpool) -> None:
        self.spool = spool
        self.position = 0
        self._fd = os.open(spool.path, os.O_RDONLY)

    def read(self, n: int = -1) -> bytes:
        available = self.spool.available(self.position)
        if not available:
            return b""
        data = os.pread(self._fd, min(available, CHUNK if n is None or n < 0 else n), self.position)
        self.position += len(data)
        return data

    def send_to(self, fd: int) -> None:
        """Copy everything from here to the end into ``fd`` (a pipe) with sendfile(2):
        page cache to pipe, no copy through this process. Raises as ``read`` does, and
        BrokenPipeError when the reader of ``fd`` went away."""
        while True:
            available = self.spool.available(self.position)
            if not available:
                return
            while available:
                sent = os.sendfile(fd, self._fd, self.position, min(available, SEND_CHUNK))
                if not sent:
                    raise OSError(f"the spool file {self.spool.path} is shorter than written")
                self.position += sent
                available -= sent

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
