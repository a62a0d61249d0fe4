"""Object storage for backups: one small contract (providers/storage/base.py), a few
backends, and wrappers that add retries or forbid writes.

``open_store(kind, **settings)`` is the one place stores are built and wrapped. Adding a
backend means one module and one line in ``BACKENDS``.
"""

from __future__ import annotations

import importlib
from typing import Any

from providers.storage.base import ObjectInfo, ObjectWriter, Store
from providers.storage.errors import (InvalidKey, InvalidStoreSettings, ObjectArchived,
                                      ObjectExists, ObjectNotFound, StoreAccessDenied,
                                      StoreError, StoreFull, StoreReadOnly, StoreUnavailable)
from providers.storage.wrappers import ReadOnlyStore, RetryingStore, innermost

# kind -> "module:class"; modules are imported on first use (boto3 only when needed).
BACKENDS = {
    "filesystem": "providers.storage.filesystem:FilesystemStore",
    "s3": "providers.storage.s3:S3Store",
}


def open_store(kind: str, **settings: Any) -> Store:
    """Build the ``kind`` backend from ``settings`` (its constructor's keyword arguments)
    and wrap it in ``RetryingStore``.

    Raises ``InvalidStoreSettings`` for an unknown kind (listing the known ones) or
    settings the backend does not accept (naming them, never their values).
    """
    target = BACKENDS.get(kind)
    if target is None:
        raise InvalidStoreSettings(f"unknown storage kind {kind!r}", kind=kind,
                                   known_kinds=", ".join(sorted(BACKENDS)))
    module_name, class_name = target.split(":")
    store_class = getattr(importlib.import_module(module_name), class_name)
    try:
        store = store_class(**settings)
    except TypeError as exc:  # the message names arguments, not their values
        raise InvalidStoreSettings(f"bad settings for a {kind} store: {exc}", kind=kind,
                                   settings=", ".join(sorted(settings))) from exc
    return RetryingStore(store)


__all__ = [
    "innermost",
    "BACKENDS", "InvalidKey", "InvalidStoreSettings", "ObjectArchived", "ObjectExists",
    "ObjectInfo", "ObjectNotFound", "ObjectWriter", "ReadOnlyStore", "RetryingStore", "Store",
    "StoreAccessDenied", "StoreError", "StoreFull", "StoreReadOnly", "StoreUnavailable",
    "open_store",
]
