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
All errors derive from ``errors.DataSourceError`` and so from ``fleet.errors.DrfleetError``.

``get_source(kind)`` imports the module of that name. Adding a kind is adding one module
that defines ``KIND`` (and its test file); helper modules here define no ``KIND``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

from providers.datasources.errors import UnknownDataSourceKind

REQUIRED = ("KIND", "dump", "restore", "fingerprint", "tool_versions")


def _is_kind_module(module: ModuleType, name: str) -> bool:
    return getattr(module, "KIND", None) == name and all(hasattr(module, a) for a in REQUIRED)


def get_source(kind: str) -> ModuleType:
    """The module implementing data source ``kind``.

    Raises UnknownDataSourceKind (listing the known kinds) when no module of that name
    defines ``KIND``. Import errors of an existing kind module (a missing dependency)
    propagate unchanged.
    """
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", kind):
        raise UnknownDataSourceKind(str(kind), known_kinds())
    name = f"{__name__}.{kind}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise UnknownDataSourceKind(kind, known_kinds()) from None
    if not _is_kind_module(module, kind):
        raise UnknownDataSourceKind(kind, known_kinds())
    return module


def known_kinds() -> list[str]:
    """Sorted names of the modules in this package that define a data source kind."""
    kinds = []
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except ImportError:
            continue
        if _is_kind_module(module, info.name):
            kinds.append(info.name)
    return sorted(kinds)
