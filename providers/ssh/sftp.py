"""Atomic SFTP transfers: write under a ``.partial-`` name, check the size, then rename.

A reader of the destination path sees either the old file or the complete new one, never
a prefix. ``SshSession.upload``/``download`` wrap these and turn ``SftpFailure`` into
``RemoteTransferFailed`` or, when the connection died, ``HostUnreachable``.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from contextlib import suppress
from typing import Callable

import paramiko

from drfleet.providers.ssh.errors import RemoteTransferFailed

Progress = Callable[[int, int], None] | None
_SFTP_ERRORS = (OSError, EOFError, paramiko.SSHException)
# Server-side SFTP errors arrive as plain IOError (with ENOENT/EACCES or no errno); these
# mean the SSH connection itself failed.
_CONNECTION_LOST = (EOFError, paramiko.SSHException, ConnectionError, TimeoutError)


class SftpFailure(Exception):
    """An SFTP step failed; ``reason`` is operator-readable. Internal to the provider."""

    def __init__(self, reason: str, *, connection_lost: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connection_lost = connection_lost

    @classmethod
    def wrapping(cls, exc: BaseException) -> "SftpFailure":
        lost = isinstance(exc, _CONNECTION_LOST)
        if isinstance(exc, OSError) and exc.strerror:
            return cls(exc.strerror, connection_lost=lost)
        return cls(str(exc) or type(exc).__name__, connection_lost=lost)

    def as_error(self, target, operation: str, remote: str, local: str) -> RemoteTransferFailed:
        return RemoteTransferFailed(target.host, target.port, operation, remote, local,
                                    self.reason)


def partial_name(path: str) -> str:
    """A unique sibling name for an in-flight upload of ``path``."""
    return f"{path}.partial-{secrets.token_hex(4)}"


def atomic_upload(sftp: paramiko.SFTPClient, local: str, remote: str,
                  progress: Progress = None) -> None:
    """Upload ``local`` to ``remote`` via a partial file and posix-rename.

    Raises ``SftpFailure``; local read errors propagate as ``OSError``. The partial file
    is removed on failure when the connection still allows it.
    """
    local_stat = os.stat(local)
    partial = partial_name(remote)
    with open(local, "rb") as source:
        try:
            sftp.putfo(source, partial, file_size=local_stat.st_size, callback=progress,
                       confirm=True)
            sftp.chmod(partial, stat.S_IMODE(local_stat.st_mode))
            sftp.utime(partial, (local_stat.st_atime, local_stat.st_mtime))
            sftp.posix_rename(partial, remote)
        except _SFTP_ERRORS as exc:
            with suppress(*_SFTP_ERRORS):
                sftp.remove(partial)
            raise SftpFailure.wrapping(exc) from exc


def atomic_download(sftp: paramiko.SFTPClient, local: str, remote: str,
                    progress: Progress = None) -> None:
    """Download ``remote`` to ``local`` via a fsynced temp file and ``os.replace``.

    Keeps the remote mode and mtime. Raises ``SftpFailure`` (also for a size mismatch,
    i.e. the file changed while being read); the local partial file is always removed.
    """
    try:
        attrs = sftp.stat(remote)
    except _SFTP_ERRORS as exc:
        raise SftpFailure.wrapping(exc) from exc
    directory = os.path.dirname(os.path.abspath(local))
    fd, partial = tempfile.mkstemp(prefix=os.path.basename(local) + ".partial-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as target:
            try:
                size = sftp.getfo(remote, target, callback=progress)
            except _SFTP_ERRORS as exc:
                raise SftpFailure.wrapping(exc) from exc
            target.flush()
            os.fsync(target.fileno())
        if size != attrs.st_size:
            raise SftpFailure(f"size mismatch: got {size} of {attrs.st_size} bytes "
                              "(did the file change during the download?)")
        os.chmod(partial, stat.S_IMODE(attrs.st_mode))
        os.utime(partial, (attrs.st_atime, attrs.st_mtime))
        os.replace(partial, local)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
