"""Object storage for backups: one small contract (providers/storage/base.py), a few
backends, and wrappers that add retries or forbid writes.

``open_store(kind, settings)`` is the one place stores are built and wrapped; ``STORES`` is
their registry (the shape every provider family shares, ``drfleet.registry``). Adding a
backend means one module, one line in ``STORES`` and a fixture in the conformance suite.
"""

from __future__ import annotations

from typing import Any, Mapping

from drfleet.providers.storage.base import ObjectInfo, ObjectWriter, Store
from drfleet.providers.storage.errors import (
    InvalidKey,
    InvalidStoreSettings,
    ObjectArchived,
    ObjectExists,
    ObjectLocked,
    ObjectNotFound,
    StoreAccessDenied,
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
)
from drfleet.providers.storage.wrappers import RateLimit, ReadOnlyStore, RetryingStore, ThrottledStore, innermost
from drfleet.registry import Registry


def _filesystem() -> type[Store]:
    from drfleet.providers.storage.filesystem import FilesystemStore
    return FilesystemStore


def _s3() -> type[Store]:  # boto3 only when needed
    from drfleet.providers.storage.s3 import S3Store
    return S3Store


def _sftp() -> type[Store]:  # paramiko only when needed
    from drfleet.providers.storage.sftp import SftpStore
    return SftpStore


def _rclone() -> type[Store]:
    from drfleet.providers.storage.rclone import RcloneStore
    return RcloneStore


STORES: Registry[type[Store]] = Registry(
    "storage kind", {"filesystem": _filesystem, "s3": _s3, "sftp": _sftp, "rclone": _rclone},
    unknown=InvalidStoreSettings)


def open_store(kind: str, settings: Mapping[str, Any]) -> Store:
    """Build the ``kind`` backend from ``settings`` (its constructor's keyword arguments)
    and wrap it in ``RetryingStore`` (over a ``ThrottledStore`` when ``settings`` has a
    ``bandwidth_limit`` in bytes per second: every kind takes one).

    Raises ``InvalidStoreSettings`` for an unknown kind (listing the known ones) or
    settings the backend does not accept (naming them, never their values).
    """
    store_class = STORES.load(kind)
    settings = dict(settings)
    limit = settings.pop("bandwidth_limit", None)
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise InvalidStoreSettings("bandwidth_limit is a positive number of bytes per second",
                                   kind=kind)
    try:
        store = store_class(**settings)
    except TypeError as exc:  # the message names arguments, not their values
        raise InvalidStoreSettings(f"bad settings for a {kind} store: {exc}", kind=kind,
                                   settings=", ".join(sorted(settings))) from exc
    if limit is not None:
        store = ThrottledStore(store, RateLimit(limit))
    return RetryingStore(store)


__all__ = [
    "innermost",
    "STORES", "InvalidKey", "InvalidStoreSettings", "ObjectArchived", "ObjectExists", "ObjectLocked",
    "ObjectInfo", "ObjectNotFound", "ObjectWriter", "RateLimit", "ReadOnlyStore", "RetryingStore",
    "Store", "ThrottledStore",
    "StoreAccessDenied", "StoreError", "StoreFull", "StoreReadOnly", "StoreUnavailable",
    "open_store",
]
