"""Data sources: what drfleet backs up, one module per kind, all with the same functions.

Every kind module (``postgres``, ``redis``, ``mongodb``, ``files``, ...) defines::

    KIND: str                      # equal to the module name
    def dump(conn: str, options: Mapping[str, Any] | None = None) -> Producer
    def restore(conn: str, stream: BinaryIO, options: Mapping[str, Any] | None = None) -> None
    def fingerprint(conn: str, options: Mapping[str, Any] | None = None, *,
                    like: Mapping[str, Any] | None = None) -> dict
    def tool_versions() -> dict[str, str]

``conn`` is the already-resolved connection string (``postgresql://user:pw@host:port/db``,
``redis://[user:pw@]host:port/db``, ``mongodb://...``) or, for ``files``, a local
directory. It may hold a password: modules never put it in argv or in an error (see
``credentials``).

``dump`` starts producing at once and returns a ``Producer`` (see ``producer``): read it
to its end, then ``close()`` it, which raises ``SourceToolFailed`` (with the tool's exit
code and last stderr lines) if the dump failed even after writing data. ``dump`` itself
raises ``SourceToolFailed`` when the source refuses before producing anything (e.g. a
Redis handshake, a missing directory). ``Producer.position``
holds the source position taken right before the dump. ``restore`` reads ``stream`` to
its end and raises ``RestoreFailed`` (with the tool's stderr tail) when the target did not
take it. ``fingerprint`` returns a JSON-safe, deterministic summary of the content, equal
for a source and a faithful restored copy; ``like`` is a fingerprint recorded earlier (a
backup's) to be reproduced the same way, so a kind can change how it fingerprints without
failing the verification of older backups (kinds with one way ignore it). ``tool_versions`` names the tools (and their
versions) a dump would be made with, for the backup's manifest.

Bad options raise ``InvalidSourceOptions``; a missing tool raises ``ToolNotInstalled``.
All errors derive from ``errors.DataSourceError`` and so from ``drfleet.errors.DrfleetError``.

``open_source(kind)`` returns the module of that kind from ``SOURCES`` (the registry shape
every provider family shares, ``drfleet.registry``). Adding a kind is one module, one line
in ``SOURCES`` and its test; what the kinds share lives in ``support/``.
"""

from __future__ import annotations

from types import ModuleType

from drfleet.providers.datasources.errors import UnknownDataSourceKind
from drfleet.registry import Registry


def _postgres() -> ModuleType:
    from drfleet.providers.datasources import postgres
    return postgres


def _redis() -> ModuleType:
    from drfleet.providers.datasources import redis
    return redis


def _mongodb() -> ModuleType:
    from drfleet.providers.datasources import mongodb
    return mongodb


def _files() -> ModuleType:
    from drfleet.providers.datasources import files
    return files


SOURCES: Registry[ModuleType] = Registry(
    "data source kind", {"postgres": _postgres, "redis": _redis, "mongodb": _mongodb, "files": _files},
    unknown=UnknownDataSourceKind)


def open_source(kind: str) -> ModuleType:
    """The module implementing data source ``kind``. Raises UnknownDataSourceKind (listing
    the known kinds) for any other name; an existing kind's import errors (a missing
    dependency) propagate unchanged."""
    return SOURCES.load(kind)


def known_kinds() -> list[str]:
    """The data source kinds, sorted."""
    return SOURCES.kinds()
