"""A store in a local (or mounted) directory.

Layout: the object under key ``a/b/c`` is the file ``{root}/a/b/c``. Writes go to a temp
file in ``{root}/.partial/``, are fsynced, then renamed into place, and the directory is
fsynced, so a crash leaves either the old object, the new one, or an abandoned temp file
that ``reap_partials`` removes. The top-level name ``.partial`` is reserved (``InvalidKey``).

Because keys are paths, one key cannot be both an object and a prefix of another object
("a" and "a/b"); the second write raises ``InvalidKey``. ``storage_class`` is ignored.
``put_bytes(if_absent=True)`` is atomic: it publishes with ``os.link``, which fails if the
target exists (so the filesystem must support hard links).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterator

from drfleet.providers.storage.base import ObjectInfo, ObjectWriter, Store, validate_key, validate_prefix
from drfleet.providers.storage.errors import (
    InvalidKey,
    ObjectExists,
    ObjectNotFound,
    StoreAccessDenied,
    StoreError,
    StoreFull,
    StoreUnavailable,
)

PARTIAL_DIR = ".partial"
_WRITE_BUFFER = 1 << 20
_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_TRANSIENT = {errno.ESTALE, errno.ETIMEDOUT, errno.ENOTCONN, errno.EHOSTUNREACH}
_NOT_THERE = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
_CONFLICT_HINT = ("a filesystem store cannot hold both 'a' and 'a/b': pick keys where no key "
                  "is the directory part of another")


class FilesystemStore(Store):
    """Objects as files under ``root``. The root (mode 0700) and ``.partial/`` are created
    on the first write; reading a store whose root does not exist finds no objects.

    OS errors map to: ENOSPC/EDQUOT -> ``StoreFull``; EACCES/EPERM/EROFS ->
    ``StoreAccessDenied``; ESTALE/ETIMEDOUT/ENOTCONN -> ``StoreUnavailable``; others ->
    ``StoreError``. Each carries ``store``, ``key`` and ``path``.
    """

    def __init__(self, root: str | Path, name: str | None = None) -> None:
        self.root = Path(root).absolute()
        self.name = name or f"filesystem:{self.root}"
        self.partial_dir = self.root / PARTIAL_DIR

    # -- writes ------------------------------------------------------------------------

    def writer(self, key: str, *, storage_class: str | None = None) -> ObjectWriter:
        return _FileWriter(self, self._path(key), key)

    def put_bytes(self, key: str, data: bytes | bytearray | memoryview, *,
                  storage_class: str | None = None, if_absent: bool = False) -> ObjectInfo:
        writer = _FileWriter(self, self._path(key), key, if_absent=if_absent)
        writer.write(data)
        return writer.commit()

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except _NOT_THERE:
            return
        except OSError as exc:
            raise self._error(exc, key, path) from exc
        # Objects are files, not directories: drop parents left empty (a racing writer
        # that loses its parent directory recreates it, see _publish).
        for parent in path.parents:
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def reap_partials(self, older_than_seconds: float) -> int:
        """Remove temp files in ``.partial/`` not modified for ``older_than_seconds``
        (left by killed writers) and return how many were removed. A live writer's temp
        file is modified on every flush; pass a threshold far above a writer's longest pause,
        since 0 also removes the temp files of writers still running."""
        removed = 0
        cutoff = time.time() - older_than_seconds
        try:
            entries = list(os.scandir(self.partial_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime <= cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._error(exc, None, Path(entry.path)) from exc
        return removed

    # -- reads -------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except _NOT_THERE:
            raise ObjectNotFound(self.name, key, path=str(path)) from None
        except OSError as exc:
            raise self._error(exc, key, path) from exc

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = os.stat(path)
        except _NOT_THERE:
            raise ObjectNotFound(self.name, key, path=str(path)) from None
        except OSError as exc:
            raise self._error(exc, key, path) from exc
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(self.name, key, path=str(path))
        return ObjectInfo(key, st.st_size)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix, store=self.name)
        return self._walk(self.root, "", prefix)

    def _walk(self, directory: Path | str, dir_key: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._error(exc, dir_key or None, Path(directory)) from exc
        # Sort a directory as if it were "name/": then a depth-first walk yields keys in
        # plain string order ("a-b" < "a/x" < "a0").
        named = [(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in entries]
        for sort_name, entry in sorted(named, key=lambda pair: pair[0]):
            key = dir_key + sort_name
            if key == PARTIAL_DIR + "/":
                continue
            if key.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(entry.path, key, prefix)
            elif key.startswith(prefix) and entry.is_file(follow_symlinks=False):
                try:
                    yield ObjectInfo(key, entry.stat(follow_symlinks=False).st_size)
                except FileNotFoundError:  # deleted while listing
                    continue

    # -- helpers -----------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        validate_key(key, store=self.name)
        if key.split("/", 1)[0] == PARTIAL_DIR:
            raise InvalidKey(key, f"'{PARTIAL_DIR}' is reserved for temp files", store=self.name)
        return self.root.joinpath(*key.split("/"))

    def _ensure_partial_dir(self) -> None:
        if self.partial_dir.is_dir():
            return
        try:
            if not self.root.is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
                os.chmod(self.root, 0o700)
            self.partial_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise self._error(exc, None, self.root) from exc

    def _make_parents(self, directory: Path, key: str) -> None:
        missing = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=0o700)
            except FileExistsError:
                if not directory.is_dir():
                    raise InvalidKey(key, "part of the key is already an object in this store",
                                     store=self.name, path=str(directory),
                                     hint=_CONFLICT_HINT) from None
            else:
                _fsync_dir(directory.parent)

    def _publish(self, temp: Path, target: Path, key: str, if_absent: bool) -> None:
        """Move a synced temp file to ``target`` atomically and sync the directory."""
        for attempt in range(3):
            self._make_parents(target.parent, key)
            try:
                if if_absent:
                    os.link(temp, target)
                    os.unlink(temp)
                else:
                    os.replace(temp, target)
                break
            except FileExistsError:
                if target.is_dir():
                    raise InvalidKey(key, "the key is a prefix of other objects in this store",
                                     store=self.name, path=str(target),
                                     hint=_CONFLICT_HINT) from None
                raise ObjectExists(self.name, key, path=str(target)) from None
            except IsADirectoryError:
                raise InvalidKey(key, "the key is a prefix of other objects in this store",
                                 store=self.name, path=str(target), hint=_CONFLICT_HINT) from None
            except FileNotFoundError:
                if attempt == 2 or not temp.exists():  # parent removed by a racing delete
                    raise
        _fsync_dir(target.parent)

    def _error(self, exc: OSError, key: str | None, path: Path) -> StoreError:
        code = exc.errno
        facts = {"path": str(path), "errno": errno.errorcode.get(code or 0)}
        if code in _FULL:
            return StoreFull(self.name, key, **facts)
        if code in _DENIED:
            return StoreAccessDenied(self.name, key, exc.strerror or "", **facts)
        if code in _TRANSIENT:
            return StoreUnavailable(self.name, key, exc.strerror or str(exc), **facts)
        return StoreError(f"filesystem error: {exc.strerror or exc}", store=self.name, key=key,
                          **facts)


class _FileWriter(ObjectWriter):
    """Writes to ``.partial/<random>.tmp``; commit fsyncs and publishes it."""

    def __init__(self, store: FilesystemStore, target: Path, key: str, *,
                 if_absent: bool = False) -> None:
        super().__init__(store.name, key)
        self._store, self._target, self._if_absent = store, target, if_absent
        store._ensure_partial_dir()
        try:
            fd, temp = tempfile.mkstemp(dir=store.partial_dir, suffix=".tmp")
        except OSError as exc:
            raise store._error(exc, key, store.partial_dir) from exc
        self._temp = Path(temp)
        self._file = open(fd, "wb", buffering=_WRITE_BUFFER)

    def _write(self, data: memoryview) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise self._store._error(exc, self.key, self._temp) from exc

    def _commit(self) -> ObjectInfo:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._store._publish(self._temp, self._target, self.key, self._if_absent)
        except OSError as exc:
            raise self._store._error(exc, self.key, self._target) from exc
        return ObjectInfo(self.key, self.bytes_written)

    def _abort(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass  # e.g. ENOSPC while flushing data we are throwing away
        try:
            self._temp.unlink(missing_ok=True)
        except OSError as exc:
            raise self._store._error(exc, self.key, self._temp) from exc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
