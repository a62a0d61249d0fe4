"""The one shape every provider family's registry has (data sources, stores, clouds, DNS).

A family declares its kinds once, each with a loader that imports its module and returns
the implementation, so a kind's dependencies (boto3, paramiko, ...) are imported on first
use and never by name::

    def _s3():
        from drfleet.providers.storage.s3 import S3Store
        return S3Store

    STORES = Registry("storage kind", {"filesystem": _filesystem, "s3": _s3}, unknown=InvalidStoreSettings)

and one ``open_<family>(kind, settings)`` builds an instance through ``STORES.load(kind)``.
Adding a kind is one module, one loader line and one test.
"""

from __future__ import annotations

from typing import Callable, Generic, Mapping, TypeVar

from drfleet.errors import DrfleetError

T = TypeVar("T")


class Registry(Generic[T]):
    """Kinds of one family and the loaders of their implementations."""

    def __init__(self, family: str, loaders: Mapping[str, Callable[[], T]],
                 unknown: type[DrfleetError]) -> None:
        self.family = family
        self._loaders = dict(loaders)
        self._unknown = unknown

    def kinds(self) -> list[str]:
        """The known kinds, sorted."""
        return sorted(self._loaders)

    def __contains__(self, kind: object) -> bool:
        return kind in self._loaders

    def load(self, kind: str) -> T:
        """The implementation of ``kind``. Raises the family's ``unknown`` error (naming the
        known kinds) for a kind it does not have; an existing kind's own import errors (a
        missing dependency) propagate unchanged."""
        loader = self._loaders.get(kind) if isinstance(kind, str) else None
        if loader is None:
            known = ", ".join(self.kinds())
            raise self._unknown(f"unknown {self.family} {kind!r}", kind=str(kind), known=known,
                                hint=f"use one of: {known}")
        return loader()
