"""The storage contract every backend implements. The docstrings here are the contract;
tests/providers/storage/test_conformance.py checks every backend against them.

Keys are relative, '/'-separated strings such as ``"snapshots/2024/abc"``. A key must not
be empty, start with '/', or contain an empty, '.' or '..' component, a backslash or a NUL;
every method raises ``InvalidKey`` for such a key before touching the store. A backend may
reserve further names (the filesystem store reserves the top-level ``.partial``) and raises
``InvalidKey`` for those too.

Objects are immutable blobs: a write either makes the whole object visible under its key
at once or leaves nothing; readers never see part of an object. Writing an existing key
replaces it, unless the write asks for ``if_absent``.

Errors: every method may raise ``StoreUnavailable`` (transient, worth retrying),
``StoreAccessDenied`` and ``StoreError``; write methods may raise ``StoreFull``. Other
errors are listed per method. See providers/storage/errors.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import BinaryIO, Iterator, NamedTuple

from drfleet.providers.storage.errors import InvalidKey, ObjectNotFound, StoreError


class ObjectInfo(NamedTuple):
    """A committed object: its key (relative to the store) and its size in bytes."""

    key: str
    size: int


def validate_key(key: str, *, store: str | None = None) -> str:
    """Return ``key`` unchanged if it is a clean relative key; raise ``InvalidKey`` if not."""
    if not isinstance(key, str):
        raise InvalidKey(repr(key), f"a key must be a str, not {type(key).__name__}", store=store)
    if key == "":
        raise InvalidKey(key, "the key is empty", store=store)
    if key.startswith("/"):
        raise InvalidKey(key, "the key is absolute (starts with '/')", store=store)
    _check_components(key.split("/"), key, store)
    return key


def validate_prefix(prefix: str, *, store: str | None = None) -> str:
    """Return ``prefix`` if it can start a valid key (it may be "" or end in '/' or mid-name);
    raise ``InvalidKey`` otherwise."""
    if not isinstance(prefix, str):
        raise InvalidKey(repr(prefix), "a prefix must be a str", store=store)
    if prefix == "":
        return prefix
    if prefix.startswith("/"):
        raise InvalidKey(prefix, "the prefix is absolute (starts with '/')", store=store)
    parts = prefix.split("/")
    # The last part may be empty ("dir/") or the start of a name ("dir/ab"): only check
    # the complete components before it.
    _check_components(parts[:-1], prefix, store)
    last = parts[-1]
    if "\\" in last or "\0" in last:
        raise InvalidKey(prefix, "the prefix contains a backslash or NUL", store=store)
    return prefix


def _check_components(parts: list[str], key: str, store: str | None) -> None:
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidKey(key, f"the key has a {part!r} component" if part
                             else "the key has an empty component ('//' or a trailing '/')",
                             store=store)
        if "\\" in part or "\0" in part:
            raise InvalidKey(key, "the key contains a backslash or NUL", store=store)


class ObjectWriter(ABC):
    """A streaming write of one object, from ``Store.writer``.

    Nothing is visible under the key until ``commit()`` returns. ``abort()`` discards the
    data and leaves nothing behind (no visible object, no temp file, no incomplete upload).
    Used as a context manager, an exception inside the block aborts and is re-raised, and
    leaving the block without ``commit()`` also aborts.

    If ``write`` or ``commit`` raises, the writer has already aborted itself; the error
    says why. After ``commit`` or ``abort``, ``write`` and ``commit`` raise ``StoreError``;
    ``abort`` is always allowed and does nothing then. A writer is used by one thread.
    Always end a writer with ``commit`` or ``abort`` (or a ``with`` block): one that is
    just dropped leaves a temp file or incomplete upload for the backend's reaper.

    Backends implement ``_write``, ``_commit`` and ``_abort``; this class keeps the state.
    """

    def __init__(self, store_name: str, key: str) -> None:
        self.store_name = store_name
        self.key = key
        self._state = "open"
        self._bytes_written = 0

    @property
    def bytes_written(self) -> int:
        """Bytes accepted by ``write`` so far."""
        return self._bytes_written

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``. May block while earlier data is sent (bounded memory).

        Raises ``StoreFull``, ``StoreUnavailable``, ``StoreError`` (the writer is then
        aborted), or ``StoreError`` if the writer is already committed or aborted.
        """
        self._require_open("write")
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        try:
            self._write(view)
        except BaseException as exc:
            self._abort_after(exc)
            raise
        self._bytes_written += len(view)

    def commit(self) -> ObjectInfo:
        """Make the object visible under the key, replacing any existing object; return it.

        Raises what ``write`` raises (the writer is then aborted and nothing is visible).
        """
        self._require_open("commit")
        try:
            info = self._commit()
        except BaseException as exc:
            self._abort_after(exc)
            raise
        self._state = "committed"
        return info

    def abort(self) -> None:
        """Discard everything written; leave nothing behind. Idempotent.

        Raises ``StoreUnavailable``/``StoreError`` if the cleanup itself fails (for S3, the
        incomplete upload then stays until ``abort_incomplete_uploads`` removes it).
        """
        if self._state != "open":
            return
        self._state = "aborted"
        self._abort()

    def __enter__(self) -> "ObjectWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None:
            self._abort_after(exc)
        elif self._state == "open":
            self.abort()

    def _require_open(self, operation: str) -> None:
        if self._state != "open":
            raise StoreError(f"cannot {operation}: the writer is already {self._state}",
                             store=self.store_name, key=self.key,
                             hint="open a new writer for each object")

    def _abort_after(self, exc: BaseException) -> None:
        try:
            self.abort()
        except Exception as cleanup_exc:  # the original error matters more
            exc.add_note(f"cleaning up after this error also failed: {cleanup_exc}")

    @abstractmethod
    def _write(self, data: memoryview) -> None: ...

    @abstractmethod
    def _commit(self) -> ObjectInfo: ...

    @abstractmethod
    def _abort(self) -> None: ...


class Store(ABC):
    """A flat namespace of immutable objects under '/'-separated keys.

    ``name`` identifies the store in messages and logs (never a credential). All methods
    validate keys first (``InvalidKey``) and may raise the errors listed in the module doc.
    """

    name: str

    @abstractmethod
    def writer(self, key: str, *, storage_class: str | None = None) -> ObjectWriter:
        """Start a streaming write of ``key``; nothing is visible until ``commit()``.

        ``storage_class`` picks a provider storage tier (e.g. "STANDARD_IA", "GLACIER",
        "DEEP_ARCHIVE" on S3); backends without tiers ignore it.
        """

    @abstractmethod
    def put_bytes(self, key: str, data: bytes | bytearray | memoryview, *,
                  storage_class: str | None = None, if_absent: bool = False) -> ObjectInfo:
        """Write ``data`` under ``key`` atomically and return its ``ObjectInfo``.

        With ``if_absent=True`` the write happens only if no object exists under ``key``,
        otherwise ``ObjectExists`` is raised and the existing object is left unchanged.
        Backends say how atomic that check is. Raises ``StoreFull`` when out of space.
        """

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Return a readable binary stream of the object; the caller closes it.

        Raises ``ObjectNotFound``. Reading may raise ``StoreUnavailable``; reads are never
        retried by the store (the caller reopens).
        """

    def get_bytes(self, key: str) -> bytes:
        """Return the whole object. Raises ``ObjectNotFound``."""
        with self.open(key) as stream:
            return stream.read()

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Return the object's ``ObjectInfo``. Raises ``ObjectNotFound``."""

    def exists(self, key: str) -> bool:
        """True when a committed object exists under ``key``."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every committed object whose key starts with ``prefix`` (a plain string
        prefix, not only whole components), recursively, sorted by key (code point order,
        which is S3's UTF-8 byte order). Uncommitted writes never appear."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object. Deleting a key that does not exist is not an error."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
