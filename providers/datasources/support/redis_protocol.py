"""Fetching an RDB snapshot from a live Redis server the way a replica does.

Why not ``redis-cli --rdb -``: the installed redis-cli (7.0) does accept ``-`` (stdout),
but when the server sends a diskless transfer (the default since 7.0) it copies the
40-byte ``$EOF:`` end marker to stdout too -- it only removes it with ftruncate, which a
pipe does not support -- so the stream is not a clean RDB. It also reports no
replication offset. Speaking the protocol ourselves gives a byte-exact RDB, the exact
``replid``/``offset`` the snapshot corresponds to (from ``+FULLRESYNC``), and no
password in any argv or environment.

The handshake: ``AUTH`` (if the URL has a password), ``REPLCONF capa eof`` (allow a
diskless transfer: nothing is written to the server's disk), ``REPLCONF rdb-only 1``
(7.0+: the server closes after the RDB instead of streaming commands; older servers
ignore it), ``PSYNC ? -1`` (force a full sync). The server answers ``+FULLRESYNC <replid>
<offset>`` (after ``repl-diskless-sync-delay`` seconds, 5 by default), then the payload
as ``$<len>\\r\\n<bytes>`` or ``$EOF:<40-byte mark>\\r\\n<bytes><mark>``. Bare ``\\n``
keepalives may come before either line.

The user needs the replication permissions (``+psync +replconf`` or an admin role).
TLS (``rediss://``) and unix sockets are not supported.
"""

from __future__ import annotations

import socket
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from drfleet.providers.datasources.errors import InvalidSourceOptions, SourceToolFailed
from drfleet.providers.datasources.support.credentials import scrub_text

TOOL = "redis replication (PSYNC)"
CHUNK = 1 << 20
EOF_MARK_SIZE = 40


class RedisTarget:
    """``redis://[user:pw@]host:port/db`` split into its parts; ``facts`` hold no secret."""

    def __init__(self, conn: str) -> None:
        parts = urlsplit(conn)
        if parts.scheme != "redis":
            raise InvalidSourceOptions("redis", f"unsupported URL scheme {parts.scheme!r} "
                                                "(only redis:// is supported)")
        try:
            self.port = parts.port or 6379
            path = parts.path.strip("/")
            self.db = int(path) if path else 0
        except ValueError:
            raise InvalidSourceOptions("redis", "the URL's port or database is not a number",
                                       host=parts.hostname) from None
        self.host = parts.hostname or "127.0.0.1"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.facts = {"host": self.host, "port": self.port}

    def client_kwargs(self, db: int | None = None) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "db": self.db if db is None else db,
                "username": self.username, "password": self.password}


def _command(*args: bytes | str) -> bytes:
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class RdbStream:
    """An open replication connection positioned at the start of the RDB payload."""

    def __init__(self, target: RedisTarget, *, timeout: float = 60.0) -> None:
        self.target = target
        try:
            self.sock = socket.create_connection((target.host, target.port), timeout=timeout)
        except OSError as exc:
            raise self._error(f"cannot connect: {exc}") from None
        self._reader = self.sock.makefile("rb", buffering=CHUNK)
        try:
            self._handshake()
        except BaseException:
            self.close()
            raise

    def _error(self, line: str, message: str | None = None) -> SourceToolFailed:
        line = scrub_text(line, [self.target.password])
        return SourceToolFailed(TOOL, None, [line], message=message or f"{TOOL} failed: {line}",
                                **self.target.facts)

    def _line(self) -> str:
        while True:
            try:
                raw = self._reader.readline(64 * 1024)
            except OSError as exc:
                raise self._error(f"connection failed during the handshake: {exc}") from None
            if not raw:
                raise self._error("the server closed the connection during the handshake")
            if raw not in (b"\n", b"\r\n"):  # keepalives while the server prepares the RDB
                return raw.decode("utf-8", "replace").rstrip("\r\n")

    def _ask(self, *args: str | bytes, optional: bool = False) -> str:
        self.sock.sendall(_command(*args))
        reply = self._line()
        if reply.startswith("-") and not optional:
            raise self._error(reply, f"the server refused {args[0]!s}: {reply}")
        return reply

    def _handshake(self) -> None:
        if self.target.password:
            creds = [self.target.username] if self.target.username else []
            self._ask("AUTH", *creds, self.target.password)
        self._ask("REPLCONF", "capa", "eof")
        self._ask("REPLCONF", "rdb-only", "1", optional=True)  # unknown before 7.0
        reply = self._ask("PSYNC", "?", "-1")
        fields = reply.split()
        if len(fields) != 3 or fields[0] != "+FULLRESYNC":
            raise self._error(reply, f"unexpected answer to PSYNC: {reply}")
        self.replid, self.offset = fields[1], int(fields[2])
        header = self._line()
        if header.startswith("$EOF:") and len(header) == 5 + EOF_MARK_SIZE:
            self.eof_mark: bytes | None = header[5:].encode()
            self.length: int | None = None
        elif header.startswith("$") and header[1:].isdigit():
            self.eof_mark, self.length = None, int(header[1:])
        else:
            raise self._error(header, f"unexpected RDB transfer header: {header[:60]}")

    def copy_to(self, sink: BinaryIO) -> int:
        """Write the RDB payload (nothing more) to ``sink``; return its size.

        Raises SourceToolFailed if the connection ends early or the payload is not an RDB.
        """
        head = self._reader.read(5)
        if head != b"REDIS":
            raise self._error("the payload does not start with the RDB magic 'REDIS'")
        if self.length is not None:
            return self._copy_counted(head, sink)
        return self._copy_until_mark(head, sink)

    def _copy_counted(self, head: bytes, sink: BinaryIO) -> int:
        sink.write(head)
        copied = len(head)
        while copied < self.length:
            chunk = self._reader.read1(min(CHUNK, self.length - copied))
            if not chunk:
                raise self._error(f"connection closed after {copied} of {self.length} RDB bytes")
            sink.write(chunk)
            copied += len(chunk)
        return copied

    def _copy_until_mark(self, head: bytes, sink: BinaryIO) -> int:
        # Everything but the last len(mark)-1 bytes is surely payload; hold those back.
        keep = EOF_MARK_SIZE - 1
        copied, pending = 0, head
        while True:
            chunk = self._reader.read1(CHUNK)
            data = pending + chunk
            end = data.find(self.eof_mark)
            if end >= 0:
                sink.write(data[:end])
                return copied + end
            if not chunk:
                raise self._error(f"connection closed after {copied + len(data)} RDB bytes "
                                  "without the end marker")
            if len(data) > keep:
                sink.write(data[:-keep])
                copied += len(data) - keep
                data = data[-keep:]
            pending = data

    def shutdown(self) -> None:
        """Unblock a ``copy_to`` waiting on the socket (used to kill a dump)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            self.sock.close()
