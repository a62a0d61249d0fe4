"""Keep only the last lines of a (possibly huge) stderr stream, for error messages."""

from __future__ import annotations

import threading

TAIL_LINES = 20
MAX_LINE_CHARS = 400
_MAX_BUFFER = 64 * 1024


class StderrTail:
    """Thread-safe sink of stderr bytes; ``text()`` returns the last ``lines`` lines."""

    def __init__(self, lines: int = TAIL_LINES) -> None:
        self.lines = lines
        self._buffer = bytearray()
        self._lock = threading.Lock()

    def feed(self, data: bytes) -> None:
        with self._lock:
            self._buffer += data
            if len(self._buffer) > _MAX_BUFFER:
                del self._buffer[: len(self._buffer) - _MAX_BUFFER]

    def text(self) -> str:
        with self._lock:
            raw = bytes(self._buffer)
        lines = raw.decode("utf-8", errors="replace").replace("\r", "").splitlines()
        tail = [line for line in lines if line.strip()][-self.lines:]
        return "\n".join(line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + "..."
                         for line in tail)
