"""The stdout of a running remote command as a readable binary stream."""

from __future__ import annotations

import io
import socket
import threading
from typing import Callable

import paramiko

from drfleet.providers.ssh.errors import HostUnreachable, RemoteCommandFailed, RemoteCommandTimedOut
from drfleet.providers.ssh.stderr_tail import StderrTail

EXIT_STATUS_WAIT = 60.0  # seconds to wait for the exit status after stdout ended
LEFTOVER_LIMIT = 1024 * 1024  # unread stdout that close() still drains to see the status
LOSS_SETTLE_SECONDS = 2.0  # how long a dying connection may take to report itself dead


def close_quietly(closable) -> None:
    """Close a channel or SFTP client; on a dead connection closing can raise, ignore it."""
    try:
        closable.close()
    except (OSError, EOFError, paramiko.SSHException):
        pass


def drain_stderr(channel: paramiko.Channel, tail: StderrTail) -> None:
    """Read the channel's stderr until EOF into ``tail`` (keeps the SSH window open)."""
    while True:
        try:
            chunk = channel.recv_stderr(65536)
        except socket.timeout:
            if channel.closed:
                return
            continue
        except (OSError, EOFError, paramiko.SSHException):
            return
        if not chunk:
            return
        tail.feed(chunk)


class RemoteStream(io.RawIOBase):
    """Readable stdout of a remote command, e.g. ``tar -cf - .`` or ``pg_dump``.

    ``close()`` (also on leaving a ``with`` block normally) checks how the command ended:
    it raises ``RemoteCommandFailed`` with the stderr tail if the exit status is non-zero
    or the process was killed, and ``HostUnreachable`` if the connection dropped (a
    dropped connection also ends the stream early, so always close before trusting the
    data). Up to 1 MiB of unread output is drained to reach the exit status; beyond
    that, closing abandons the command unchecked, as does ``abort()`` and leaving a
    ``with`` block through an exception. Reads raise ``RemoteCommandTimedOut`` if no
    output arrives for ``idle_timeout`` seconds (default: wait forever).
    """

    def __init__(self, channel: paramiko.Channel, command: str, target,
                 connection_lost: Callable[[float], bool], *,
                 idle_timeout: float | None = None) -> None:
        super().__init__()
        self.command = command
        self.exit_status: int | None = None
        self._channel = channel
        self._target = target
        self._connection_lost = connection_lost
        self._idle_timeout = idle_timeout
        self._tail = StderrTail()
        self._eof = False
        channel.settimeout(idle_timeout)
        self._stderr_reader = threading.Thread(
            target=drain_stderr, args=(channel, self._tail), daemon=True)
        self._stderr_reader.start()

    @property
    def stderr_tail(self) -> str:
        return self._tail.text()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self._channel.recv(len(buffer))
        except socket.timeout:
            raise RemoteCommandTimedOut(self._target.host, self._target.port, self.command,
                                        self._idle_timeout, self._tail.text()) from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(f"connection lost while streaming command output: {exc!r}") from None
        if not data:
            self._eof = True
            return 0
        buffer[: len(data)] = data
        return len(data)

    def abort(self) -> None:
        """Stop reading and close the channel without checking the exit status."""
        if not self.closed:
            close_quietly(self._channel)
            super().close()

    def close(self) -> None:
        if self.closed:
            return
        try:
            drained = 0
            while not self._eof and drained <= LEFTOVER_LIMIT:
                drained += len(self.read(65536) or b"")
            if self._eof:
                self._check_exit()
        finally:
            close_quietly(self._channel)
            super().close()

    def _check_exit(self) -> None:
        host, port = self._target.host, self._target.port
        self._channel.status_event.wait(EXIT_STATUS_WAIT)
        self._stderr_reader.join(EXIT_STATUS_WAIT)
        status = self._channel.exit_status
        if status == -1 and self._connection_lost(LOSS_SETTLE_SECONDS):
            raise self._lost("connection lost while streaming command output")
        self.exit_status = status
        if status != 0:
            raise RemoteCommandFailed(host, port, self.command, status, self._tail.text(),
                                      user=self._target.user)

    def _lost(self, reason: str) -> HostUnreachable:
        return HostUnreachable(self._target.host, self._target.port, reason,
                               user=self._target.user, operation=self.command)

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        try:
            self.abort()
        except Exception:  # noqa: BLE001 - finalizer: nothing to report to
            pass
