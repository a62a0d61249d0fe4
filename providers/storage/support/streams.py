"""A store object's content as a read-only file object: what every backend's ``open`` and
the throttling wrapper return. A subclass says how to read (``_read``) and what to release
on close (``_release``); errors ``_read`` raises are already the store's errors."""

from __future__ import annotations

import io
from typing import Any


class ObjectStream(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def _read(self, size: int | None) -> bytes:
        """Up to ``size`` bytes (``None``: to the end); b"" at the end."""
        raise NotImplementedError

    def _release(self) -> None:
        """Release the connection or handle behind the stream (called once, by ``close``)."""

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read from a closed stream")
        return self._read(None if size is None or size < 0 else size)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._release()
        super().close()
