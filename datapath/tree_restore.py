"""Restoring a files backup, incremental or full, into an empty directory.

Backup N with ``parents`` [P0, ..., Pk] is restored from exactly those backups and N
(docs/format.md, "Restoring day N"): P0's archive is extracted, then for each next link
the entries its index no longer has (or has with another type) are removed and its
archive extracted over the tree; directory owners, modes and mtimes are applied last,
from the newest archive that stored each directory. Extraction uses the files source's
safe ``Extractor`` (no absolute names, no ``..``, no escaping links, no devices); removal
never follows a symlink and never leaves the target.

A files backup without a file index (older writer) is one plain archive.
"""

from __future__ import annotations

import os
import shutil
import tarfile

from drfleet.datapath.catalog import BackupRecord, find_backup
from drfleet.datapath.errors import BackupNotFound, IntegrityError
from drfleet.datapath.incremental import has_index, read_index
from drfleet.datapath.locations import store_for
from drfleet.datapath.reading import BackupReader, data_key_for
from drfleet.plan.models import Plan
from drfleet.providers.datasources.errors import RestoreFailed, UnsafeArchiveMember
from drfleet.providers.datasources.support.files_extract import Extractor, safe_member_name
from drfleet.providers.datasources.support.files_index import FileIndex

TOOL = "tar (drfleet)"


class ChainBroken(IntegrityError):
    """A backup of an incremental's chain is missing or is not the one the chain names."""

    hint = ("an incremental needs every backup its manifest lists in `parents`; restore a "
            "backup whose chain is complete, or copy the missing backup back from another location")


def resolve_chain(plan: Plan, record: BackupRecord, *, same_location: bool = False) -> list[BackupRecord]:
    """The records of ``record``'s chain, full first, ``record`` last: each parent from
    the same location if it is there, else (unless ``same_location``) from the first
    location that has it. Raises ChainBroken naming the missing or mismatching backup."""
    m = record.manifest
    links = []
    for position, parent_id in enumerate(m.parents):
        try:
            try:
                link = find_backup(plan, parent_id, dataset=m.dataset, location=record.location)
            except BackupNotFound:
                if same_location:
                    raise
                link = find_backup(plan, parent_id, dataset=m.dataset)
        except BackupNotFound as exc:
            where = f"is not in {record.location}" if same_location else "no location has"
            raise ChainBroken(f"backup {m.backup_id} needs {parent_id}, which {where}",
                              dataset=m.dataset, backup_id=m.backup_id, missing=parent_id,
                              looked_in=exc.facts.get("looked_in")) from None
        if (link.manifest.kind != "files" or link.manifest.parents != m.parents[:position]
                or not has_index(link.manifest)):
            raise ChainBroken(f"backup {parent_id} is not the link {m.backup_id}'s chain names",
                              dataset=m.dataset, backup_id=m.backup_id, link=parent_id,
                              link_parents=", ".join(link.manifest.parents) or "(none)")
        links.append(link)
    return [*links, record]


def restore_tree(plan: Plan, record: BackupRecord, target: str, *, owners: bool | None = None) -> dict:
    """Restore files backup ``record`` (and its chain) into ``target`` (created if
    missing; must be empty). Returns {"chain": [backup ids], "bytes": plaintext read}.

    Raises RestoreFailed (target not empty or unusable, archive corrupt), ChainBroken,
    UnsafeArchiveMember, and the reader's WrongKey / envelope errors / IntegrityError.
    """
    owners = os.geteuid() == 0 if owners is None else owners
    chain = resolve_chain(plan, record) if record.manifest.parents else [record]
    data_keys = [data_key_for(plan, link.manifest) for link in chain]  # before touching the target
    root = _empty_target(target)
    directories: dict[str, tarfile.TarInfo] = {}
    extractor = None
    previous: FileIndex | None = None
    index: FileIndex | None = None
    read = 0
    for link, data_key in zip(chain, data_keys):
        m, store = link.manifest, store_for(plan, link.location)
        if has_index(m):
            index = read_index(plan, store, m, data_key)
            if previous is not None:
                _remove_absent(root, previous, index)
        reader = BackupReader(store, m, data_key)
        extractor = Extractor(root, owners=owners)
        extractor.extract(reader, directory_metadata=False)
        reader.finish()
        read += m.plaintext_size
        directories.update((path, member) for path, member in extractor.directories)
        previous = index
    wanted = None if index is None else {_path(root, e.path) for e in index.entries.values() if e.type == "dir"}
    extractor.apply_directory_metadata([(path, member) for path, member in directories.items()
                                        if (wanted is None or path in wanted) and os.path.isdir(path)])
    return {"chain": [link.backup_id for link in chain], "bytes": read}


def _empty_target(target: str) -> str:
    try:
        os.makedirs(target, exist_ok=True)
        occupied = bool(os.listdir(target))
    except OSError as exc:
        raise RestoreFailed(TOOL, None, [str(exc)], message="cannot use the restore target",
                            target=os.path.abspath(target)) from None
    if occupied:
        raise RestoreFailed(TOOL, None, [], message="the restore target is not empty",
                            target=os.path.abspath(target), hint="restore into a new or empty directory")
    return os.path.realpath(target)


def _path(root: str, member: str) -> str:
    name = safe_member_name(member)
    return os.path.join(root, name) if name else root


def _remove_absent(root: str, before: FileIndex, after: FileIndex) -> None:
    """Remove, deepest first, what ``before`` has and ``after`` lacks or has as another type."""
    gone = [e.path for e in before.entries.values()
            if e.path != "." and (after.entries.get(e.path) is None or after.entries[e.path].type != e.type)]
    for member in sorted(gone, key=lambda p: p.count("/"), reverse=True):
        path = _path(root, member)
        parent = os.path.realpath(os.path.dirname(path))
        if parent != root and not parent.startswith(root + os.sep):
            raise UnsafeArchiveMember(member, "its directory resolves outside the target")
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
