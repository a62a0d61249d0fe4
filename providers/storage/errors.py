"""Errors raised by storage backends.

Every error derives from ``StoreError`` (and so from ``drfleet.errors.DrfleetError``) and
names the store and, where there is one, the key. Backends add facts that locate the
problem (``bucket``, ``endpoint``, ``path``, ``code``) but never credentials.

Which errors are worth retrying: only ``StoreUnavailable``. Everything else is either a
definite answer (``ObjectNotFound``, ``ObjectExists``) or needs an operator
(``StoreFull``, ``StoreAccessDenied``, ``InvalidKey``, ``InvalidStoreSettings``).
"""

from __future__ import annotations

from typing import Any

from drfleet.errors import DrfleetError


class StoreError(DrfleetError):
    """Base class of every storage error; also raised for failures with no better class."""

    hint = "check the store's logs and the facts above"


class InvalidStoreSettings(StoreError):
    """A store could not be built from its settings (unknown kind, bad or missing setting)."""

    hint = "fix the storage settings in the fleet configuration"


class InvalidKey(StoreError):
    """A key is not a clean, relative, '/'-separated path, or a backend reserves it."""

    hint = "keys are relative '/'-separated paths without empty, '.', '..' or '\\' parts"

    def __init__(self, key: str, reason: str, *, store: str | None = None, **facts: Any) -> None:
        super().__init__(f"invalid object key {key!r}: {reason}", store=store, key=key, **facts)
        self.key = key


class ObjectNotFound(StoreError):
    """No committed object exists under the key."""

    hint = "check the key and that the backup that wrote it completed"

    def __init__(self, store: str, key: str, **facts: Any) -> None:
        super().__init__("object not found", store=store, key=key, **facts)
        self.store, self.key = store, key


class ObjectExists(StoreError):
    """A write with ``if_absent=True`` found an object already under the key."""

    hint = "the object was already written; read it instead of writing it again"

    def __init__(self, store: str, key: str, **facts: Any) -> None:
        super().__init__("object already exists", store=store, key=key, **facts)
        self.store, self.key = store, key


class ObjectArchived(StoreError):
    """The object is in cold storage (e.g. S3 GLACIER) and must be restored before reading."""

    hint = "start a restore of the object from cold storage and retry once it is available"

    def __init__(self, store: str, key: str, **facts: Any) -> None:
        super().__init__("object is archived in cold storage", store=store, key=key, **facts)
        self.store, self.key = store, key


class StoreUnavailable(StoreError):
    """A transient failure: connection refused or reset, timeout, 5xx after the client's
    own retries. The only error that is worth retrying."""

    hint = "check that the storage endpoint is up and reachable; the operation can be retried"
    transient = True

    def __init__(self, store: str, key: str | None, reason: str, **facts: Any) -> None:
        super().__init__("storage is unavailable", store=store, key=key, reason=reason, **facts)
        self.store, self.key, self.reason = store, key, reason


class StoreFull(StoreError):
    """The store has no space left (ENOSPC, EDQUOT, or a provider's quota)."""

    hint = "free space or raise the quota on the store, then run the backup again"

    def __init__(self, store: str, key: str | None, **facts: Any) -> None:
        super().__init__("store is full", store=store, key=key, **facts)
        self.store, self.key = store, key


class StoreAccessDenied(StoreError):
    """The store refused the operation: permissions, credentials, read-only media."""

    hint = "check the credentials and permissions configured for this store"

    def __init__(self, store: str, key: str | None, reason: str = "", **facts: Any) -> None:
        super().__init__("access to the store was denied", store=store, key=key,
                         reason=reason or None, **facts)
        self.store, self.key = store, key


class StoreReadOnly(StoreError):
    """A write was attempted through a store opened read-only (for example during a restore)."""

    hint = "restores open stores read-only on purpose; write through a writable store"

    def __init__(self, store: str, key: str | None, operation: str) -> None:
        super().__init__("store is opened read-only", store=store, key=key, operation=operation)
        self.store, self.key = store, key


class ObjectLocked(StoreError):
    """The object is under an S3 Object Lock retention that has not ended: nobody (and no
    drfleet command) can delete it before ``retain_until``."""

    hint = "wait until the retention ends; prune removes it then"

    def __init__(self, store: str, key: str, retain_until: str, **facts: Any) -> None:
        super().__init__("object is locked (S3 Object Lock) until its retention ends", store=store,
                         key=key, retain_until=retain_until, **facts)
        self.store, self.key, self.retain_until = store, key, retain_until
