"""Watching a tar stream go by: keep the content of a few named members (pg_basebackup's
``backup_label`` and the ``backup_manifest`` it injects into a tar written to stdout)
without buffering the stream. ustar headers only (what pg_basebackup writes); a member
that is not wanted is skipped block by block."""

from __future__ import annotations

from typing import Any

BLOCK = 512


def _octal(field: bytes) -> int:
    if field and field[0] & 0x80:  # base-256 (GNU) for sizes >= 8 GiB
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


class TarWatcher:
    """``feed`` it the stream in order; ``members`` holds the wanted members' bytes (at
    most ``keep`` bytes each: the tail)."""

    def __init__(self, wanted: set[str], keep: int = 4 << 20) -> None:
        self.wanted, self.keep = wanted, keep
        self.members: dict[str, bytes] = {}
        self._header = bytearray()
        self._remaining = 0      # data bytes left in the current member
        self._padding = 0        # padding bytes left after it
        self._current: bytearray | None = None
        self._name = ""

    def feed(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            if self._remaining:
                n = min(self._remaining, len(view))
                if self._current is not None:
                    self._current += view[:n]
                    if len(self._current) > 2 * self.keep:
                        del self._current[: len(self._current) - self.keep]
                self._remaining -= n
                view = view[n:]
                if not self._remaining:
                    self._close_member()
                continue
            if self._padding:
                n = min(self._padding, len(view))
                self._padding -= n
                view = view[n:]
                continue
            need = BLOCK - len(self._header)
            self._header += view[:need]
            view = view[need:]
            if len(self._header) == BLOCK:
                self._start_member(bytes(self._header))
                self._header.clear()

    def _start_member(self, block: bytes) -> None:
        if block == b"\0" * BLOCK:
            return
        name = block[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
        if prefix:
            name = f"{prefix}/{name}"
        name = name.removeprefix("./")
        size = _octal(block[124:136])
        self._name = name
        self._current = bytearray() if name in self.wanted else None
        self._remaining, self._padding = size, (-size) % BLOCK
        if not size:
            self._close_member()

    def _close_member(self) -> None:
        if self._current is not None:
            self.members[self._name] = bytes(self._current[-self.keep:])
        self._current = None


class WatchedReader:
    """A readable over ``raw`` that feeds everything read to ``watcher``."""

    def __init__(self, raw: Any, watcher: TarWatcher) -> None:
        self.raw, self.watcher = raw, watcher

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = self.raw.readinto(buf)
        if n:
            self.watcher.feed(memoryview(buf)[:n])
        return n

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.watcher.feed(data)
        return data
