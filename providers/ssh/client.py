"""SSH sessions to drfleet's remote hosts, on paramiko, with strict host key checking.

``SshTarget`` names a host and the *paths* of the key and known_hosts files (never key
material), so it can travel in task messages. ``SshSession`` connects, verifies the host
key (``providers.ssh.hostkeys``), authenticates with the key file only (no agent, no
~/.ssh discovery, no passwords) and runs argv lists, quoted with ``shlex.join`` for the
remote user's POSIX shell.
"""

from __future__ import annotations

import os
import shlex
import socket
import threading
from dataclasses import asdict, dataclass
from typing import Any, Callable

import paramiko

from drfleet.providers.ssh import sftp as sftp_transfer
from drfleet.providers.ssh.errors import (
    AuthenticationFailed,
    HostUnreachable,
    RemoteCommandFailed,
    RemoteCommandTimedOut,
)
from drfleet.providers.ssh.hostkeys import preferred_key_types, verify_host_key
from drfleet.providers.ssh.remote_stream import LOSS_SETTLE_SECONDS, RemoteStream, close_quietly, drain_stderr
from drfleet.providers.ssh.stderr_tail import StderrTail

__all__ = ["CompletedRemote", "SshSession", "SshTarget"]

_CONNECTION_ERRORS = (OSError, EOFError, paramiko.SSHException)


@dataclass(frozen=True, kw_only=True)
class SshTarget:
    """Where and how to log in. Key and known_hosts are file paths, never contents."""

    host: str
    port: int = 22
    user: str
    key_file: str
    known_hosts_file: str
    connect_timeout: float = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "port", int(self.port))
        object.__setattr__(self, "key_file", os.fspath(self.key_file))
        object.__setattr__(self, "known_hosts_file", os.fspath(self.known_hosts_file))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SshTarget":
        return cls(**data)


@dataclass(frozen=True)
class CompletedRemote:
    """Outcome of ``SshSession.run``: exit status (-1: killed), all stdout, stderr tail."""

    exit_status: int
    stdout: bytes
    stderr_tail: str


def remote_command(argv: list[str]) -> str:
    """The shell command line for ``argv``. Raises TypeError/ValueError on a bad argv."""
    if isinstance(argv, (str, bytes)) or not argv:
        raise TypeError("argv must be a non-empty list of strings, not a command line")
    if not all(isinstance(arg, str) for arg in argv):
        raise TypeError(f"argv items must be str: {argv!r}")
    if any("\0" in arg for arg in argv):
        raise ValueError("argv items cannot contain NUL bytes")
    return shlex.join(argv)


class SshSession:
    """One authenticated SSH connection; use as a context manager.

    Connecting raises ``HostUnreachable`` (refused, timed out, reset, handshake cut),
    ``UnknownHostKey`` / ``HostKeyChanged`` / ``HostKeyRevoked`` (host key not trusted,
    nothing sent), or ``AuthenticationFailed`` (key refused or unreadable). Any method
    raises ``HostUnreachable`` if the connection is lost while it runs.
    """

    def __init__(self, target: SshTarget, *, keepalive_interval: int = 15) -> None:
        self.target = target
        self.keepalive_interval = keepalive_interval
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> "SshSession":
        self.connect()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- connection -----------------------------------------------------------------------

    def _unreachable(self, reason: str, operation: str | None = None) -> HostUnreachable:
        return HostUnreachable(self.target.host, self.target.port, reason,
                               user=self.target.user, operation=operation)

    def connect(self) -> "SshSession":
        """Open the TCP connection, check the host key, authenticate. Raises as above."""
        t = self.target
        try:
            sock = socket.create_connection((t.host, t.port), timeout=t.connect_timeout)
        except socket.timeout:
            raise self._unreachable(f"TCP connect timed out after {t.connect_timeout}s") from None
        except socket.gaierror as exc:
            raise self._unreachable(f"cannot resolve host name: {exc.strerror}") from None
        except OSError as exc:
            raise self._unreachable(exc.strerror or str(exc)) from None
        transport = paramiko.Transport(sock)
        transport.banner_timeout = transport.auth_timeout = t.connect_timeout
        try:
            options = transport.get_security_options()
            preferred = [k for k in preferred_key_types(t.known_hosts_file, t.host, t.port)
                         if k in options.key_types]
            if preferred:
                options.key_types = preferred + [k for k in options.key_types
                                                 if k not in preferred]
            try:
                transport.start_client(timeout=t.connect_timeout)
            except _CONNECTION_ERRORS as exc:
                raise self._unreachable(f"SSH handshake failed: {exc or type(exc).__name__}",
                                        "connect") from None
            try:
                server_key = transport.get_remote_server_key()
            except paramiko.SSHException:
                raise self._unreachable("SSH handshake did not complete within "
                                        f"{t.connect_timeout}s", "connect") from None
            verify_host_key(t.known_hosts_file, t.host, t.port, server_key.get_name(),
                            server_key.asbytes())
            self._authenticate(transport)
            transport.set_keepalive(self.keepalive_interval)
        except BaseException:
            close_quietly(transport)
            raise
        self._transport = transport
        return self

    def _authenticate(self, transport: paramiko.Transport) -> None:
        t = self.target

        def failed(reason: str, fingerprint: str | None = None) -> AuthenticationFailed:
            return AuthenticationFailed(t.host, t.port, t.user, t.key_file, reason,
                                        key_fingerprint=fingerprint)

        try:
            key = paramiko.PKey.from_path(t.key_file)
        except OSError as exc:
            raise failed(f"cannot read key file: {exc.strerror or exc}") from None
        except (TypeError, paramiko.PasswordRequiredException):
            raise failed("key file is passphrase-protected (unattended jobs need an "
                         "unencrypted, restricted deploy key)") from None
        except (ValueError, paramiko.SSHException):
            raise failed("key file is not an OpenSSH/PEM private key paramiko can load") from None
        try:
            transport.auth_publickey(t.user, key)
        except paramiko.AuthenticationException:
            raise failed("the server refused the key", key.fingerprint) from None
        except _CONNECTION_ERRORS as exc:
            raise self._unreachable(f"connection lost during authentication: {exc}") from None

    def close(self) -> None:
        if self._sftp is not None:
            close_quietly(self._sftp)
            self._sftp = None
        if self._transport is not None:
            close_quietly(self._transport)
            self._transport = None

    def _live_transport(self, operation: str) -> paramiko.Transport:
        if self._transport is None:
            raise RuntimeError("SshSession is not connected (use it as a context manager)")
        if not self._transport.is_active():
            raise self._unreachable("the SSH connection was lost", operation)
        return self._transport

    def _connection_lost(self, settle: float = 0.0) -> bool:
        """True when the SSH connection is gone (closed, reset, or never opened).

        A dying transport closes its channels a moment before it reports itself inactive;
        ``settle`` is how long to wait for it to finish dying when in doubt.
        """
        transport = self._transport
        if transport is None:
            return True
        if settle and transport.is_active():
            transport.join(settle)  # returns at once when the transport thread has ended
        return not transport.is_active()

    def _open_channel(self, command: str) -> paramiko.Channel:
        transport = self._live_transport(command)
        try:
            channel = transport.open_session(timeout=self.target.connect_timeout)
            channel.exec_command(command)
        except _CONNECTION_ERRORS as exc:
            raise self._unreachable(f"cannot start remote command: {exc}", command) from None
        return channel

    # -- commands -------------------------------------------------------------------------

    def run(self, argv: list[str], *, input: bytes | str | None = None,
            timeout: float | None = None, check: bool = True) -> CompletedRemote:
        """Run ``argv`` remotely, feeding ``input`` to its stdin; collect all stdout.

        Raises ``RemoteCommandFailed`` (command, status, stderr tail) if it exits non-zero
        or is killed and ``check`` is true; ``RemoteCommandTimedOut`` after ``timeout``
        seconds (the channel is closed; the remote process may live on);
        ``HostUnreachable`` if the connection drops. Use ``stream_command`` for big output.
        """
        command = remote_command(argv)
        channel = self._open_channel(command)
        tail = StderrTail()
        stderr_reader = threading.Thread(target=drain_stderr, args=(channel, tail), daemon=True)
        stderr_reader.start()
        data = input.encode() if isinstance(input, str) else input
        threading.Thread(target=_feed_stdin, args=(channel, data), daemon=True).start()
        expired = threading.Event()
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, lambda: (expired.set(), close_quietly(channel)))
            timer.daemon = True
            timer.start()
        stdout = bytearray()
        try:
            while chunk := channel.recv(65536):
                stdout += chunk
            channel.status_event.wait()
            stderr_reader.join()
        except _CONNECTION_ERRORS as exc:
            raise self._unreachable(f"connection lost while the command ran: {exc!r}",
                                    command) from None
        finally:
            if timer is not None:
                timer.cancel()
            close_quietly(channel)
        if expired.is_set() and channel.exit_status == -1:
            raise RemoteCommandTimedOut(self.target.host, self.target.port, command,
                                        timeout, tail.text())
        if channel.exit_status == -1 and self._connection_lost(settle=LOSS_SETTLE_SECONDS):
            raise self._unreachable("connection lost while the command ran", command)
        result = CompletedRemote(channel.exit_status, bytes(stdout), tail.text())
        if check and result.exit_status != 0:
            raise RemoteCommandFailed(self.target.host, self.target.port, command,
                                      result.exit_status, result.stderr_tail,
                                      user=self.target.user)
        return result

    def stream_command(self, argv: list[str], *,
                       idle_timeout: float | None = None) -> RemoteStream:
        """Start ``argv`` remotely and return its stdout as a readable binary stream.

        The stream's ``close()`` (or leaving its ``with`` block) waits for the remote exit
        status and raises ``RemoteCommandFailed`` with the stderr tail if it is non-zero,
        or ``HostUnreachable`` if the connection dropped. See ``RemoteStream``.
        """
        command = remote_command(argv)
        channel = self._open_channel(command)
        channel.shutdown_write()
        return RemoteStream(channel, command, self.target, self._connection_lost,
                            idle_timeout=idle_timeout)

    # -- files ----------------------------------------------------------------------------

    def open_sftp(self) -> paramiko.SFTPClient:
        """A new SFTP client on this connection; the caller closes it."""
        transport = self._live_transport("sftp")
        try:
            return paramiko.SFTPClient.from_transport(transport)
        except _CONNECTION_ERRORS as exc:
            raise self._unreachable(f"cannot start the sftp subsystem: {exc}", "sftp") from None

    def _shared_sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None or self._connection_lost():
            self._sftp = self.open_sftp()
        return self._sftp

    def upload(self, local: str | os.PathLike, remote: str, *,
               progress: Callable[[int, int], None] | None = None) -> None:
        """Copy a local file to ``remote`` atomically, keeping its mode and mtime.

        Data goes to ``remote.partial-XXXXXXXX`` first and is renamed over ``remote``
        (posix-rename) only once complete and size-checked, so ``remote`` is never seen
        half-written. Raises ``RemoteTransferFailed`` (missing dir, permissions, size
        mismatch) or ``HostUnreachable`` (connection lost; a ``.partial-`` file may remain).
        Local read errors propagate as ``OSError``.
        """
        self._transfer(sftp_transfer.atomic_upload, local, remote, progress, "upload")

    def download(self, remote: str, local: str | os.PathLike, *,
                 progress: Callable[[int, int], None] | None = None) -> None:
        """Copy ``remote`` to a local file atomically (temp file, fsync, rename).

        Raises like ``upload``; the local partial file is always removed on failure.
        """
        self._transfer(sftp_transfer.atomic_download, local, remote, progress, "download")

    def _transfer(self, function, local, remote: str, progress, operation: str) -> None:
        sftp = self._shared_sftp()
        try:
            function(sftp, os.fspath(local), remote, progress)
        except sftp_transfer.SftpFailure as failure:
            if failure.connection_lost or self._connection_lost():
                raise self._unreachable(f"connection lost during {operation} of {remote}: "
                                        f"{failure.reason}", operation) from None
            raise failure.as_error(self.target, operation, remote, os.fspath(local)) from None


def _feed_stdin(channel: paramiko.Channel, data: bytes | None) -> None:
    try:
        if data:
            channel.sendall(data)
        channel.shutdown_write()
    except _CONNECTION_ERRORS:
        pass  # the command exited early or the connection died; run() reports it
