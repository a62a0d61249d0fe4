"""Restoring a file-level base backup (full, differential or incremental) into a data
directory: fresh (an empty or new directory) or *delta* (the data directory of the same
cluster, stopped: only files whose size or SHA-256 differ are written, files the backup
does not list are removed). docs/format.md, "File-level base backups".

Before anything is written: the chain is resolved (each link's ``parents`` the prefix of
the restored backup's), every link's data key is unwrapped (MAC checked), every object of
every link is present with its recorded size, the restored backup's file manifest is read
and every holder it names is in the chain; for a delta restore, the directory's
``global/pg_control`` must carry the backup's system identifier and no server may run on it.

Files are written piece by piece by N workers (pieces are independent: a file's offset in
its holder's file stream says where each byte goes); every file's SHA-256 is checked
against the manifest before the restore counts as done.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from drfleet.datapath.catalog import BackupRecord
from drfleet.datapath.errors import IntegrityError
from drfleet.datapath.locations import store_for
from drfleet.datapath.reading import data_key_for, open_object
from drfleet.datapath.tree_restore import ChainBroken, _check_objects, resolve_chain
from drfleet.pitr import cluster
from drfleet.pitr.errors import DeltaTargetRefused, TargetDirNotEmpty
from drfleet.pitr.physical import PIECE_SIZE, Entry, PgIndex, piece_name, read_pg_index
from drfleet.plan.models import Plan

TMP_SUFFIX = ".drfleet-delta"
CREATED = frozenset({"pg_wal/archive_status"})  # made by every restore, listed by no backup
HASH_READ = 1 << 20


def control_system_identifier(data_dir: str) -> str | None:
    """The system identifier in ``global/pg_control`` (its first 8 bytes, host byte
    order as PostgreSQL writes them), or None when there is no readable pg_control."""
    try:
        with open(os.path.join(data_dir, "global", "pg_control"), "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    return str(struct.unpack("=Q", head)[0]) if len(head) == 8 else None


def server_running(data_dir: str) -> int | None:
    """The pid of a live postmaster on ``data_dir``, else None."""
    try:
        pid = int(Path(data_dir, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _is_empty_target(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def check_target(record: BackupRecord, data_dir: str, delta: bool) -> bool:
    """Refuse a target before anything is written; True when the restore is a delta."""
    path = Path(data_dir)
    if _is_empty_target(path):
        return False
    if not delta:
        raise TargetDirNotEmpty(f"{data_dir} is not empty", data_dir=data_dir,
                                hint="restore into a new or empty directory, or pass --delta to repair the "
                                     "data directory of the same cluster in place")
    m = record.manifest
    expected = str(m.fingerprint.get("system_identifier"))
    found = control_system_identifier(data_dir)
    if found is None:
        raise DeltaTargetRefused("the directory is not a PostgreSQL data directory (no readable global/pg_control)",
                                 data_dir=data_dir, backup_id=m.backup_id)
    if found != expected:
        raise DeltaTargetRefused("the directory holds another cluster", data_dir=data_dir, backup_id=m.backup_id,
                                 backup_system_identifier=expected, directory_system_identifier=found)
    pid = server_running(data_dir)
    if pid:
        raise DeltaTargetRefused("a server is running on the directory", data_dir=data_dir, pid=pid,
                                 backup_id=m.backup_id)
    return True


def _sha256_of(path: str) -> str:
    with open(path, "rb", buffering=0) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def lay_down_physical(plan: Plan, record: BackupRecord, data_dir: str, *, delta: bool = False,
                      workers: int = 2) -> dict[str, Any]:
    """Restore file-level base backup ``record`` (with its chain) into ``data_dir``.

    Returns {"chain", "files", "bytes" (written), "written" and "removed" (delta: the
    paths), "delta"}. Raises ChainBroken, IntegrityError, the reader's key/MAC errors,
    TargetDirNotEmpty and DeltaTargetRefused before writing anything; IntegrityError or
    envelope errors while writing (a fresh restore then removes what it wrote).
    """
    m = record.manifest
    chain = resolve_chain(plan, record) if m.parents else [record]
    keys = {link.backup_id: data_key_for(plan, link.manifest) for link in chain}
    _check_objects(plan, chain)
    links = {link.backup_id: link for link in chain}
    index = read_pg_index(store_for(plan, record.location), m, keys[m.backup_id])
    for e in index.entries:
        if e.type == "file" and e.holder not in links:
            raise ChainBroken(f"backup {m.backup_id} names {e.holder} as the holder of {e.path}, which is not "
                              "in its chain", dataset=m.dataset, backup_id=m.backup_id, missing=e.holder,
                              chain=", ".join(links))
    is_delta = check_target(record, data_dir, delta)
    root = os.path.abspath(data_dir)
    created = not os.path.exists(root)
    os.makedirs(root, mode=0o700, exist_ok=True)
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="drfleet-restore")
    try:
        result = _restore(plan, links, keys, index, root, is_delta, pool)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        if not is_delta:
            if created:
                shutil.rmtree(root, ignore_errors=True)
            else:
                for child in Path(root).iterdir():
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() and not child.is_symlink() \
                        else child.unlink()
        else:
            for dirpath, _, names in os.walk(root):
                for name in names:
                    if name.endswith(TMP_SUFFIX):
                        os.unlink(os.path.join(dirpath, name))
        raise
    pool.shutdown()
    return {"chain": list(links), "files": sum(1 for e in index.entries if e.type == "file"),
            "delta": is_delta, **result}


def _restore(plan: Plan, links: dict[str, BackupRecord], keys: dict, index: PgIndex, root: str,
             is_delta: bool, pool: ThreadPoolExecutor) -> dict[str, Any]:
    by_path = {e.path: e for e in index.entries}
    removed: list[str] = []
    if is_delta:
        removed = _remove_unlisted(root, by_path)
    # directories and symlinks first
    for e in index.entries:
        target = os.path.join(root, e.path) if e.path != "." else root
        if e.type == "dir":
            os.makedirs(target, exist_ok=True)
        elif e.type == "symlink":
            if os.path.islink(target) and os.readlink(target) == e.value:
                continue
            if os.path.lexists(target):
                os.unlink(target)
            os.symlink(e.value, target)
    files = [e for e in index.entries if e.type == "file"]
    if is_delta:
        def unchanged(e: Entry) -> bool:
            path = os.path.join(root, e.path)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return False
            return stat.S_ISREG(st.st_mode) and st.st_size == e.size and _sha256_of(path) == e.value
        keep = list(pool.map(unchanged, files))
        to_write = [e for e, same in zip(files, keep) if not same]
    else:
        to_write = files
    suffix = TMP_SUFFIX if is_delta else ""
    # empty files here; the others are created by the workers writing their slices
    units: dict[tuple[str, int], list[tuple[int, int, Entry, int]]] = {}
    spanning: list[Entry] = []
    for e in to_write:
        if not e.size:
            os.close(os.open(os.path.join(root, e.path) + suffix, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
            continue
        piece = int(links[e.holder].manifest.labels.get("piece_size", PIECE_SIZE))
        first, last = e.offset // piece, (e.offset + e.size - 1) // piece
        if last > first:
            spanning.append(e)
        for number in range(first, last + 1):
            lo = max(e.offset, number * piece)
            hi = min(e.offset + e.size, (number + 1) * piece)
            units.setdefault((e.holder, number), []).append((lo - number * piece, hi - lo, e, lo - e.offset))
    hashes = {id(e): _InOrderHash() for e in spanning}

    def restore_piece(unit: tuple[str, int]) -> int:
        holder, number = unit
        link = links[holder]
        slices = sorted(units[unit], key=lambda s: s[0])
        written = 0
        with open_object(store_for(plan, link.location), link.manifest, keys[holder], piece_name(number)) as stream:
            position = 0
            for start, length, e, file_offset in slices:
                while position < start:
                    skipped = stream.read(min(start - position, HASH_READ))
                    if not skipped:
                        break
                    position += len(skipped)
                data = stream.read(length)
                if len(data) != length:
                    raise IntegrityError(f"piece {piece_name(number)} of backup {holder} ends before {e.path}",
                                         backup_id=holder, object=piece_name(number), path=e.path)
                position += length
                path = os.path.join(root, e.path) + suffix
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                try:
                    os.pwrite(fd, data, file_offset)
                finally:
                    os.close(fd)
                if id(e) in hashes:
                    hashes[id(e)].add(file_offset, data)
                elif hashlib.sha256(data).hexdigest() != e.value:
                    raise IntegrityError(f"{e.path} restored from backup {holder} does not match its checksum",
                                         backup_id=holder, path=e.path, expected_sha256=e.value)
                written += length
            while stream.read(HASH_READ):
                pass  # to the end: the object's size and SHA-256 are checked there
        return written

    written_bytes = sum(pool.map(restore_piece, sorted(units)))

    for e in spanning:
        if hashes[id(e)].hexdigest(e.size) != e.value:
            raise IntegrityError(f"{e.path} restored from backup {e.holder} does not match its checksum",
                                 backup_id=e.holder, path=e.path, expected_sha256=e.value)
    if is_delta:
        for e in to_write:
            path = os.path.join(root, e.path)
            os.replace(path + TMP_SUFFIX, path)
    for e in index.entries:
        if e.type == "file":
            path = os.path.join(root, e.path)
            os.chmod(path, e.mode)
            os.utime(path, ns=(e.mtime_ns, e.mtime_ns))
    for e in sorted((e for e in index.entries if e.type == "dir"), key=lambda e: e.path.count("/"), reverse=True):
        path = os.path.join(root, e.path) if e.path != "." else root
        os.chmod(path, e.mode if e.path != "." else 0o700)
    os.makedirs(os.path.join(root, "pg_wal", "archive_status"), mode=0o700, exist_ok=True)
    for e in sorted((e for e in index.entries if e.type == "dir"), key=lambda e: e.path.count("/"), reverse=True):
        path = os.path.join(root, e.path) if e.path != "." else root
        os.utime(path, ns=(e.mtime_ns, e.mtime_ns))
    cluster.chown_tree(root)
    return {"bytes": written_bytes, "written": sorted(e.path for e in to_write) if is_delta else len(to_write),
            "removed": removed}


class _InOrderHash:
    """SHA-256 of a file whose slices are written by several workers: slices are hashed in
    file order as they arrive; one that arrives early waits in memory (at most about one
    piece per worker)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sha = hashlib.sha256()
        self.next = 0
        self.pending: dict[int, bytes] = {}

    def add(self, offset: int, data: bytes) -> None:
        with self.lock:
            if offset != self.next:
                self.pending[offset] = data
                return
            self.sha.update(data)
            self.next += len(data)
            while self.next in self.pending:
                early = self.pending.pop(self.next)
                self.sha.update(early)
                self.next += len(early)

    def hexdigest(self, size: int) -> str:
        return self.sha.hexdigest() if self.next == size and not self.pending else "(incomplete)"


def _remove_unlisted(root: str, by_path: dict[str, Entry]) -> list[str]:
    """Remove what the manifest does not list (or lists with another type); deepest first,
    symlinks never followed. Returns the removed paths."""
    removed: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames + dirnames:
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if name.endswith(TMP_SUFFIX):
                os.unlink(full)
                continue
            if rel in CREATED:
                continue
            e = by_path.get(rel)
            st = os.lstat(full)
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else (
                "file" if stat.S_ISREG(st.st_mode) else "other")
            if e is not None and e.type == kind:
                continue
            if kind == "dir":
                shutil.rmtree(full)
            else:
                os.unlink(full)
            removed.append(rel)
    return sorted(removed)

