"""Restoring a files backup, incremental or full, into an empty directory.

Backup N with ``parents`` [P0, ..., Pk] is restored from exactly those backups and N
(docs/format.md, "Restoring day N"): P0's archive is extracted, then for each next link
the entries its index no longer has (or has with another type) are removed and its
archive extracted over the tree; directory owners, modes and mtimes are applied last,
from the newest archive that stored each directory. Extraction uses the files source's
safe ``Extractor`` (no absolute names, no ``..``, no devices; symlinks restored as they
were and never written through); removal never follows a symlink and never leaves the
target. A restore fails safe (``restore_tree``): the chain is checked first, the tree is
built in a staging directory and only then moved into place.

A files backup without a file index (older writer) is one plain archive.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile

from drfleet.backup_format.layout import object_key
from drfleet.datapath.catalog import BackupRecord, find_backup
from drfleet.datapath.errors import BackupNotFound, IntegrityError
from drfleet.datapath.incremental import has_index, read_index
from drfleet.datapath.locations import store_for
from drfleet.datapath.reading import BackupReader, data_key_for
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.providers.datasources.errors import RestoreFailed, with_target_state
from drfleet.providers.datasources.support.files_extract import Extractor, real_directories_to, safe_member_name
from drfleet.providers.datasources.support.files_index import FileIndex
from drfleet.providers.storage import ObjectNotFound

TOOL = "tar (drfleet)"


class ChainBroken(IntegrityError):
    """A backup of an incremental's chain is missing or is not the one the chain names."""

    hint = ("an incremental needs every backup its manifest lists in `parents`; restore a "
            "backup whose chain is complete, or copy the missing backup back from another location")


def chain_link(manifest) -> bool:
    """Whether ``manifest`` can be a link of a chain: a files backup with a file index, or
    a file-level PostgreSQL base backup (docs/format.md)."""
    if manifest.kind == "files":
        return has_index(manifest)
    return manifest.kind == "postgres" and (manifest.labels or {}).get("method") == "files"


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
        if (link.manifest.kind != m.kind or link.manifest.parents != m.parents[:position]
                or not chain_link(link.manifest)):
            raise ChainBroken(f"backup {parent_id} is not the link {m.backup_id}'s chain names",
                              dataset=m.dataset, backup_id=m.backup_id, link=parent_id,
                              link_parents=", ".join(link.manifest.parents) or "(none)")
        links.append(link)
    return [*links, record]


def restore_tree(plan: Plan, record: BackupRecord, target: str, *, owners: bool | None = None) -> dict:
    """Restore files backup ``record`` (and its chain) into ``target``, which must not
    exist or be an empty directory. Returns {"chain": [backup ids], "bytes": plaintext read}.

    Fails safe: before the target is touched, the whole chain is resolved, every link's
    data key unwrapped (MAC checked) and every object found with its recorded size; the
    tree is then extracted into a staging directory next to the target (inside it when the
    target is a mount point or its parent is not writable) and moved into place only when
    every link extracted and checked out. On any failure the staging directory is removed
    and the error says so (fact ``target_state``): the target is left as it was.

    Raises RestoreFailed (target not empty or unusable, archive corrupt), ChainBroken,
    IntegrityError (a link's object missing or of the wrong size, or failing its hash),
    UnsafeArchiveMember, and the reader's WrongKey / envelope errors.
    """
    owners = os.geteuid() == 0 if owners is None else owners
    chain = resolve_chain(plan, record) if record.manifest.parents else [record]
    data_keys = [data_key_for(plan, link.manifest) for link in chain]  # before touching the target
    _check_objects(plan, chain)
    final = _usable_target(target)
    staging = _Staging(final)
    try:
        read = _extract_chain(plan, chain, data_keys, staging.root, owners)
        staging.commit()
    except BaseException as exc:
        staging.discard()
        state = f"left as it was: {staging.untouched}" if staging.removed else (
            f"a partial restore remains in {staging.root} (it could not be removed): delete it")
        if isinstance(exc, DrfleetError):
            raise with_target_state(exc, state) from None
        if isinstance(exc, OSError):
            raise with_target_state(RestoreFailed(TOOL, None, [str(exc)], message="cannot write the restored tree",
                                                  target=final), state) from None
        raise
    return {"chain": [link.backup_id for link in chain], "bytes": read}


def _extract_chain(plan: Plan, chain: list[BackupRecord], data_keys, root: str, owners: bool) -> int:
    """Extract every link of ``chain`` into the (empty) directory ``root``; the bytes read."""
    directories: dict[str, tarfile.TarInfo] = {}
    extractor = None
    previous: FileIndex | None = None
    index: FileIndex | None = None
    read = 0
    for link, data_key in zip(chain, data_keys):
        m, store = link.manifest, store_for(plan, link.location)
        try:
            if has_index(m):
                index = read_index(plan, store, m, data_key)
                if previous is not None:
                    _remove_absent(root, previous, index)
            reader = BackupReader(store, m, data_key)
            extractor = Extractor(root, owners=owners)
            extractor.extract(reader, directory_metadata=False)
            reader.finish()
        except DrfleetError as exc:  # name the link of the chain that failed
            exc.facts.setdefault("backup_id", m.backup_id)
            exc.facts.setdefault("location", link.location)
            raise
        read += m.plaintext_size
        directories.update((path, member) for path, member in extractor.directories)
        previous = index
    wanted = None if index is None else {_path(root, e.path) for e in index.entries.values() if e.type == "dir"}
    extractor.apply_directory_metadata([(path, member) for path, member in directories.items()
                                        if wanted is None or path in wanted])
    return read


def _check_objects(plan: Plan, chain: list[BackupRecord]) -> None:
    """Every object of every link present with its recorded size, before anything is
    written; raises IntegrityError naming the first one that is not."""
    for link in chain:
        store, m = store_for(plan, link.location), link.manifest
        for obj in m.objects:
            key = object_key(m.dataset, m.backup_id, obj.name)
            try:
                size = store.stat(key).size
            except ObjectNotFound:
                size = None
            if size != obj.size:
                found = "missing" if size is None else f"{size} bytes, the manifest says {obj.size}"
                raise IntegrityError(f"backup {m.backup_id} of the chain cannot be read whole: {key} is {found}",
                                     backup_id=m.backup_id, dataset=m.dataset, location=link.location,
                                     target_state="untouched: the chain was checked before anything was written")


def _usable_target(target: str) -> str:
    """The absolute target: absent, or an empty directory (its parents are created)."""
    final = os.path.abspath(target)
    try:
        if os.path.lexists(final):
            if os.path.islink(final) or not os.path.isdir(final):
                raise RestoreFailed(TOOL, None, [], message="the restore target is not a directory",
                                    target=final, hint="restore into a new or empty directory")
            if os.listdir(final):
                raise RestoreFailed(TOOL, None, [], message="the restore target is not empty",
                                    target=final, hint="restore into a new or empty directory")
        else:
            os.makedirs(os.path.dirname(final), exist_ok=True)
    except OSError as exc:
        raise RestoreFailed(TOOL, None, [str(exc)], message="cannot use the restore target",
                            target=final) from None
    return final


class _Staging:
    """Where a tree is extracted before it becomes the target: a sibling directory renamed
    onto the target at the end (atomic), or -- when the target is a mount point or its
    parent is read-only -- a hidden directory inside the target whose entries are moved up."""

    def __init__(self, final: str) -> None:
        self.final = final
        self.existed = os.path.isdir(final)
        parent = os.path.dirname(final)
        self.inside = self.existed and (os.path.ismount(final) or not os.access(parent, os.W_OK))
        where = final if self.inside else parent
        self.root = os.path.realpath(tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.drfleet-restore-",
                                                      dir=where))
        self.removed = False
        self.untouched = (f"{final} is still an empty directory" if self.existed
                          else f"{final} was not created")

    def commit(self) -> None:
        if not self.inside:
            os.rename(self.root, self.final)  # onto an absent path or an empty directory
            return
        for name in os.listdir(self.root):
            os.rename(os.path.join(self.root, name), os.path.join(self.final, name))
        st = os.lstat(self.root)
        os.chmod(self.final, stat.S_IMODE(st.st_mode))
        os.utime(self.final, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rmdir(self.root)

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)  # never follows a symlink it meets
        self.removed = not os.path.lexists(self.root)


def _path(root: str, member: str) -> str:
    name = safe_member_name(member)
    return os.path.join(root, name) if name else root


def _remove_absent(root: str, before: FileIndex, after: FileIndex) -> None:
    """Remove, deepest first, what ``before`` has and ``after`` lacks or has as another
    type; never through a symlink (every directory on the way must be a real one)."""
    gone = [e.path for e in before.entries.values()
            if e.path != "." and (after.entries.get(e.path) is None or after.entries[e.path].type != e.type)]
    for member in sorted(gone, key=lambda p: p.count("/"), reverse=True):
        path = _path(root, member)
        try:
            real_directories_to(root, os.path.dirname(path), member)
        except FileNotFoundError:
            continue  # its directory went first
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
