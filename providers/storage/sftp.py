"""A store in a directory on an SSH host, over SFTP (paramiko).

Layout: the object under key ``a/b/c`` is the remote file ``{root}/a/b/c``, as in the
filesystem store. A write streams to ``{root}/.partial/<random>.tmp`` and, once the
server has acknowledged every byte and the size matches, is renamed into place with
``posix-rename@openssh.com`` (atomic replace), so a reader sees the old object, the new
one, or nothing. The top-level name ``.partial`` is reserved (``InvalidKey``);
``reap_partials`` removes temp files left by killed writers.

The connection is made through ``providers.ssh.client.SshSession``: the host key must be
listed in ``known_hosts_file`` (an unknown, changed or revoked key is refused before any
data is sent, never accepted), and the login uses ``key_file`` only. It is opened on first
use, re-opened after it drops (or in a forked child), and shared by the store's calls.

``put_bytes(if_absent=True)`` publishes with the plain SFTP ``rename``, which OpenSSH's
sftp-server implements as ``link()`` + ``unlink()`` and so refuses atomically when the
target exists (on a server that falls back to a plain rename, two racing writers could
both succeed). ``storage_class`` is ignored. As with the filesystem store, one key cannot
be both an object and the directory part of another key.

Errors: a refused host key or login -> ``StoreAccessDenied`` (naming host, port and the
fingerprints, never key material); unreachable host or a connection lost mid-call ->
``StoreUnavailable``; EACCES/EPERM -> ``StoreAccessDenied``; a missing object ->
``ObjectNotFound``; other SFTP failures -> ``StoreError``.
"""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

import paramiko

from drfleet.providers.ssh.client import SshSession, SshTarget
from drfleet.providers.ssh.errors import AuthenticationFailed, HostKeyRejected, HostUnreachable, SshError
from drfleet.providers.storage.base import ObjectInfo, ObjectWriter, Store, validate_key, validate_prefix
from drfleet.providers.storage.errors import (
    InvalidKey,
    InvalidStoreSettings,
    ObjectExists,
    ObjectNotFound,
    StoreAccessDenied,
    StoreError,
    StoreUnavailable,
)
from drfleet.providers.storage.support.streams import ObjectStream

PARTIAL_DIR = ".partial"
_LOST = (EOFError, paramiko.SSHException, ConnectionError, TimeoutError)
_DENIED = {errno.EACCES, errno.EPERM}
_NOT_THERE = {errno.ENOENT}
_CONFLICT_HINT = ("an SFTP store cannot hold both 'a' and 'a/b': pick keys where no key is "
                  "the directory part of another")


class SftpStore(Store):
    """Objects as files under ``root`` on ``host``.

    ``user``, ``key_file`` (a path on the worker, never key material) and
    ``known_hosts_file`` (the file the host key is checked against) log in; ``root`` is an
    absolute path on the server, created (with ``.partial/``) on the first write.
    """

    def __init__(self, host: str, root: str, *, user: str, key_file: str,
                 known_hosts_file: str, port: int = 22, name: str | None = None,
                 connect_timeout: float = 10.0) -> None:
        self.name = name or f"sftp:{user}@{host}:{port}{root}"
        if not host:
            raise InvalidStoreSettings("an SFTP store needs a host", store=self.name)
        if not root or not root.startswith("/"):
            raise InvalidStoreSettings("an SFTP store's root must be an absolute path on the "
                                       "server", store=self.name, root=root)
        if not known_hosts_file:
            raise InvalidStoreSettings("an SFTP store needs a known_hosts file: host keys are "
                                       "never accepted blindly", store=self.name)
        self.root = posixpath.normpath(root)
        self.partial_dir = posixpath.join(self.root, PARTIAL_DIR)
        self.target = SshTarget(host=host, port=port, user=user, key_file=key_file,
                                known_hosts_file=known_hosts_file, connect_timeout=connect_timeout)
        self._lock = threading.Lock()
        self._session: SshSession | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._pid = 0
        self._partial_ready = False

    def __repr__(self) -> str:
        return f"SftpStore(name={self.name!r}, target={str(self.target)!r}, root={self.root!r})"

    # -- connection ----------------------------------------------------------------------

    def sftp(self) -> paramiko.SFTPClient:
        """The shared SFTP client, connecting (or reconnecting) when needed."""
        with self._lock:
            session, client = self._session, self._sftp
            if (client is not None and session is not None and self._pid == os.getpid()
                    and not session._connection_lost()):
                return client
            if session is not None and self._pid == os.getpid():
                session.close()
            self._session = self._sftp = None
            session = SshSession(self.target)
            try:
                session.connect()
                client = session.open_sftp()
            except SshError as exc:
                session.close()
                raise self._ssh_error(exc, None) from exc
            self._session, self._sftp, self._pid = session, client, os.getpid()
            return client

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        with self._lock:
            if self._session is not None and self._pid == os.getpid():
                self._session.close()
            self._session = self._sftp = None

    # -- writes --------------------------------------------------------------------------

    def writer(self, key: str, *, storage_class: str | None = None) -> ObjectWriter:
        return _SftpWriter(self, key, self._path(key))

    def put_bytes(self, key: str, data: bytes | bytearray | memoryview, *,
                  storage_class: str | None = None, if_absent: bool = False) -> ObjectInfo:
        writer = _SftpWriter(self, key, self._path(key), if_absent=if_absent)
        writer.write(data)
        return writer.commit()

    def delete(self, key: str) -> None:
        path = self._path(key)
        sftp = self.sftp()
        try:
            sftp.remove(path)
        except OSError as exc:
            if exc.errno in _NOT_THERE:
                return
            raise self._error(exc, key, path) from exc
        except _LOST as exc:
            raise self._error(exc, key, path) from exc
        parent = posixpath.dirname(path)
        while parent != self.root and parent.startswith(self.root + "/"):
            try:
                sftp.rmdir(parent)  # fails (harmlessly) while the directory has entries
            except (OSError, paramiko.SSHException):
                break
            parent = posixpath.dirname(parent)

    def reap_partials(self, older_than_seconds: float) -> int:
        """Remove temp files in ``.partial/`` not modified for ``older_than_seconds`` (by the
        worker's clock against the server's mtimes) and return how many were removed."""
        sftp = self.sftp()
        cutoff = time.time() - older_than_seconds
        try:
            entries = sftp.listdir_attr(self.partial_dir)
        except OSError as exc:
            if exc.errno in _NOT_THERE:
                return 0
            raise self._error(exc, None, self.partial_dir) from exc
        removed = 0
        for entry in entries:
            if stat.S_ISREG(entry.st_mode or 0) and (entry.st_mtime or 0) <= cutoff:
                try:
                    sftp.remove(posixpath.join(self.partial_dir, entry.filename))
                    removed += 1
                except OSError as exc:
                    if exc.errno not in _NOT_THERE:
                        raise self._error(exc, None, self.partial_dir) from exc
        return removed

    def partials(self) -> list[str]:
        """Names of the temp files in ``.partial/`` (writes in flight or abandoned)."""
        try:
            return sorted(self.sftp().listdir(self.partial_dir))
        except OSError as exc:
            if exc.errno in _NOT_THERE:
                return []
            raise self._error(exc, None, self.partial_dir) from exc

    # -- reads ---------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            handle = self.sftp().open(path, "rb")
            handle.set_pipelined(False)
            if not stat.S_ISREG(handle.stat().st_mode or 0):
                handle.close()
                raise ObjectNotFound(self.name, key, path=path)
        except (OSError, *_LOST) as exc:
            raise self._error(exc, key, path) from exc
        return _ReadStream(self, key, path, handle)  # type: ignore[return-value]

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            attrs = self.sftp().stat(path)
        except (OSError, *_LOST) as exc:
            raise self._error(exc, key, path) from exc
        if not stat.S_ISREG(attrs.st_mode or 0):
            raise ObjectNotFound(self.name, key, path=path)
        return ObjectInfo(key, attrs.st_size or 0)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix, store=self.name)
        return self._walk(self.root, "", prefix)

    def _walk(self, directory: str, dir_key: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = self.sftp().listdir_attr(directory)
        except OSError as exc:
            if exc.errno in _NOT_THERE:
                return
            raise self._error(exc, dir_key or None, directory) from exc
        except _LOST as exc:
            raise self._error(exc, dir_key or None, directory) from exc
        named = [(e.filename + "/" if stat.S_ISDIR(e.st_mode or 0) else e.filename, e)
                 for e in entries]
        for sort_name, entry in sorted(named, key=lambda pair: pair[0]):
            key = dir_key + sort_name
            if key == PARTIAL_DIR + "/":
                continue
            if key.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(posixpath.join(directory, entry.filename), key, prefix)
            elif key.startswith(prefix) and stat.S_ISREG(entry.st_mode or 0):
                yield ObjectInfo(key, entry.st_size or 0)

    # -- helpers -------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        validate_key(key, store=self.name)
        if key.split("/", 1)[0] == PARTIAL_DIR:
            raise InvalidKey(key, f"'{PARTIAL_DIR}' is reserved for temp files", store=self.name)
        return posixpath.join(self.root, key)

    def ensure_partial_dir(self) -> None:
        if self._partial_ready:
            return
        self.make_dirs(self.partial_dir, None)
        self._partial_ready = True

    def make_dirs(self, directory: str, key: str | None) -> None:
        """``mkdir -p`` on the server (mode 0700 for what it creates)."""
        sftp = self.sftp()
        missing = []
        while True:
            try:
                attrs = sftp.stat(directory)
            except OSError as exc:
                if exc.errno not in _NOT_THERE:
                    raise self._error(exc, key, directory) from exc
                missing.append(directory)
                directory = posixpath.dirname(directory)
                continue
            if not stat.S_ISDIR(attrs.st_mode or 0):
                raise InvalidKey(key or directory, "part of the key is already an object in "
                                 "this store", store=self.name, path=directory, hint=_CONFLICT_HINT)
            break
        for directory in reversed(missing):
            try:
                sftp.mkdir(directory, 0o700)
            except OSError as exc:
                try:
                    if stat.S_ISDIR(sftp.stat(directory).st_mode or 0):
                        continue  # made by a racing writer
                except OSError:
                    pass
                raise self._error(exc, key, directory) from exc

    def _ssh_error(self, exc: SshError, key: str | None) -> StoreError:
        facts: dict[str, Any] = {"host": self.target.host, "port": self.target.port,
                                 "error": exc.message}
        for fact in ("expected_fingerprint", "presented_fingerprint", "fingerprint",
                     "known_hosts_file"):
            if fact in exc.facts:
                facts[fact] = exc.facts[fact]
        if isinstance(exc, HostUnreachable):
            return StoreUnavailable(self.name, key, exc.message, **facts)
        if isinstance(exc, HostKeyRejected):
            return StoreAccessDenied(self.name, key, "the SSH host key is not trusted",
                                     hint=exc.hint, **facts)
        if isinstance(exc, AuthenticationFailed):
            return StoreAccessDenied(self.name, key, "the SSH login was refused", hint=exc.hint,
                                     **facts)
        return StoreError(f"SSH error: {exc.message}", store=self.name, key=key, **facts)

    def _error(self, exc: BaseException, key: str | None, path: str) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, SshError):
            return self._ssh_error(exc, key)
        code = getattr(exc, "errno", None)
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        facts = {"path": path, "host": self.target.host, "port": self.target.port}
        if code in _NOT_THERE and key is not None:
            return ObjectNotFound(self.name, key, **facts)
        if code in _DENIED:
            return StoreAccessDenied(self.name, key, reason, **facts)
        if not isinstance(exc, OSError) or isinstance(exc, (ConnectionError, TimeoutError)) \
                or self._connection_gone():
            return StoreUnavailable(self.name, key, reason, **facts)
        return StoreError(f"SFTP error: {reason}", store=self.name, key=key, **facts)

    def _connection_gone(self) -> bool:
        session = self._session
        return session is None or session._connection_lost()


class _SftpWriter(ObjectWriter):
    """Streams to ``.partial/<random>.tmp`` (pipelined writes); commit checks the size and
    renames it into place."""

    def __init__(self, store: SftpStore, key: str, target: str, *, if_absent: bool = False) -> None:
        super().__init__(store.name, key)
        self._store, self._target, self._if_absent = store, target, if_absent
        self._temp = posixpath.join(store.partial_dir, f"{secrets.token_hex(8)}.tmp")
        try:
            store.ensure_partial_dir()
            self._file = store.sftp().open(self._temp, "wb")
            self._file.set_pipelined(True)
        except (OSError, *_LOST) as exc:
            raise store._error(exc, key, self._temp) from exc

    def _write(self, data: memoryview) -> None:
        try:
            self._file.write(data)
        except (OSError, *_LOST) as exc:
            raise self._store._error(exc, self.key, self._temp) from exc

    def _commit(self) -> ObjectInfo:
        store, sftp = self._store, self._store.sftp()
        try:
            self._file.close()  # waits for every pipelined write to be acknowledged
            size = sftp.stat(self._temp).st_size
            if size != self.bytes_written:
                raise StoreError("the server holds a different size than was written",
                                 store=store.name, key=self.key, path=self._temp,
                                 written=self.bytes_written, stored=size)
            store.make_dirs(posixpath.dirname(self._target), self.key)
            if self._if_absent:
                self._publish_if_absent(sftp)
            else:
                try:
                    sftp.posix_rename(self._temp, self._target)
                except OSError:
                    if _is_dir(sftp, self._target):
                        raise InvalidKey(self.key, "the key is a prefix of other objects in this "
                                         "store", store=store.name, path=self._target,
                                         hint=_CONFLICT_HINT) from None
                    raise
        except (OSError, *_LOST) as exc:
            raise store._error(exc, self.key, self._target) from exc
        return ObjectInfo(self.key, self.bytes_written)

    def _publish_if_absent(self, sftp: paramiko.SFTPClient) -> None:
        try:
            sftp.rename(self._temp, self._target)  # link()+unlink() on OpenSSH: no overwrite
        except OSError:
            if _is_dir(sftp, self._target):
                raise InvalidKey(self.key, "the key is a prefix of other objects in this store",
                                 store=self._store.name, path=self._target,
                                 hint=_CONFLICT_HINT) from None
            sftp.stat(self._target)  # raises the rename's real cause when nothing is there
            raise ObjectExists(self._store.name, self.key, path=self._target) from None

    def _abort(self) -> None:
        store = self._store
        try:
            self._file.close()
        except (OSError, *_LOST):
            pass  # data we are throwing away
        try:
            store.sftp().remove(self._temp)
        except OSError as exc:
            if exc.errno not in _NOT_THERE:
                raise store._error(exc, self.key, self._temp) from exc
        except _LOST as exc:
            raise store._error(exc, self.key, self._temp) from exc


def _is_dir(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        return stat.S_ISDIR(sftp.stat(path).st_mode or 0)
    except OSError:
        return False


class _ReadStream(ObjectStream):
    """An SFTP file whose read errors are storage errors."""

    def __init__(self, store: SftpStore, key: str, path: str, handle: paramiko.SFTPFile) -> None:
        super().__init__()
        self._store, self._key, self._path, self._handle = store, key, path, handle

    def _read(self, size: int | None) -> bytes:
        try:
            if size is None:
                chunks = []
                while chunk := self._handle.read(1 << 20):
                    chunks.append(chunk)
                return b"".join(chunks)
            return self._handle.read(size)
        except (OSError, *_LOST) as exc:
            raise self._store._error(exc, self._key, self._path) from exc

    def _release(self) -> None:
        try:
            self._handle.close()
        except (OSError, *_LOST):
            pass
