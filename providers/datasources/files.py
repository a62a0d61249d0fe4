"""Files: a directory tree as a PAX tar stream, restored with member-by-member checks.

``conn`` is a local directory. The dump is written by a background thread into a pipe,
in sorted depth-first order, with modes, uid/gid (and names), sub-second mtimes,
symlinks, hardlinks and empty directories; the root itself is the member ``.``.
Sockets, FIFOs and device files are skipped. A file that vanishes or cannot be read
fails the dump: the producer's ``close()`` raises FileUnreadable naming the path.

restore extracts into ``conn`` (created if missing; it must be empty). Symlinks are
restored as symlinks, whatever they point at (inside the tree, ``/etc/hostname``,
``../outside``), and never followed on write. It refuses, with UnsafeArchiveMember,
absolute names, ``..`` components, members under an archived symlink or under any
directory on the way that is a symlink, hardlinks to anything but a file extracted
earlier from the same archive, and device/FIFO/special members. Nothing is ever written
outside the target; members extracted before a refusal stay in it (a whole backup is
restored by ``datapath.tree_restore``, which stages it and leaves the target untouched).
Modes and mtimes are restored; owners too when ``owners`` is true (the default when
running as root; by user/group name when it exists here, else by number).
Options: ``exclude`` (dump, fingerprint; accepted and unused by restore so one mapping
serves all three): glob patterns; one without "/" matches any entry's name (``*.swp``,
``node_modules``), one with "/" matches the path from the root (``var/cache/*``); an
excluded directory is not descended into. ``owners`` (restore).

fingerprint: for every entry (root ``.`` included) its type and mode, the SHA-256 of
regular files, the target of symlinks -- a sorted mapping (for trees of at most
FINGERPRINT_ENTRIES_LIMIT entries; a count above) -- plus one overall digest.

dump_tree: the tar of only what changed against a previous file index (files_index),
building the new index and the fingerprint from it as it goes: the dump of every files
backup and of incrementals (datapath.incremental, docs/format.md).
"""

from __future__ import annotations

import fnmatch
import grp
import hashlib
import json
import os
import pwd
import stat
import tarfile
import time
from decimal import Decimal
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import Any, BinaryIO, Iterator, Mapping

from drfleet.providers.datasources.errors import FileUnreadable, InvalidSourceOptions, RestoreFailed
from drfleet.providers.datasources.support.files_extract import Extractor
from drfleet.providers.datasources.support.files_index import Entry, FileIndex, IndexWriter, entry_type
from drfleet.providers.datasources.support.producer import ThreadProducer

KIND = "files"
TOOL = "tar (drfleet)"
CHUNK = 1 << 20
FINGERPRINT_ENTRIES_LIMIT = 1000  # above this, a fingerprint keeps the count and digest only


def _options(options: Mapping[str, Any] | None, allowed: set[str]) -> dict[str, Any]:
    opts = dict(options or {})
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise InvalidSourceOptions(KIND, f"unknown option(s) {', '.join(unknown)}",
                                   allowed=", ".join(sorted(allowed)) or "(none)")
    return opts


def _exclude_option(opts: dict[str, Any]) -> tuple[str, ...]:
    patterns = opts.get("exclude") or ()
    if isinstance(patterns, str) or not all(isinstance(p, str) and p.strip("/")
                                            for p in patterns):
        raise InvalidSourceOptions(KIND, "exclude must be a list of non-empty glob patterns")
    return tuple(patterns)


def _unreadable(path: str, exc: OSError) -> FileUnreadable:
    if isinstance(exc, FileNotFoundError):
        return FileUnreadable(path, "it vanished during the backup")
    return FileUnreadable(path, exc.strerror or str(exc))


def _listing(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _excluded(member: str, patterns: tuple[str, ...]) -> bool:
    base = member.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(member, p.strip("/")) if "/" in p.strip("/") else
               fnmatch.fnmatchcase(base, p.strip("/")) for p in patterns)


def _walk(root: str, exclude: tuple[str, ...] = ()) -> Iterator[tuple[str, str, os.stat_result]]:
    """(absolute path, archive name, lstat) of root (as ".") and everything below it not
    excluded, sorted depth-first. Raises FileUnreadable for entries that vanish or cannot
    be read."""
    try:
        yield root, ".", os.lstat(root)
    except OSError as exc:
        raise _unreadable(root, exc) from None
    stack = [(root.rstrip("/"), "", iter(_listing(root)))]  # "/" + "/" + name would be "//name"
    while stack:
        directory, prefix, names = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        path, member = directory + "/" + name, prefix + name
        if exclude and _excluded(member, exclude):
            continue
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise _unreadable(path, exc) from None
        yield path, member, st
        if stat.S_ISDIR(st.st_mode):
            stack.append((path, member + "/", iter(_listing(path))))


@lru_cache(maxsize=1024)
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@lru_cache(maxsize=1024)
def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def _tarinfo(member: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname, info.gname = _user_name(st.st_uid), _group_name(st.st_gid)
    info.mtime = st.st_mtime
    info.pax_headers = {"mtime": str(Decimal(st.st_mtime_ns).scaleb(-9))}  # exact to the ns
    return info


class TreeScan:
    """What one archive walk saw: the new file index (``index``, an IndexWriter), how many
    entries there are, how many were stored in the archive and how many of the previous
    index's are gone, and (after the walk) the tree's ``fingerprint``."""

    def __init__(self, root_id: str, exclude: tuple[str, ...], previous: FileIndex | None, *,
                 quiescent: bool = False) -> None:
        self.previous = previous
        self.index = IndexWriter(root=root_id, exclude=exclude, scan_started_ns=time.time_ns(),
                                 quiescent=quiescent)
        self.entries = self.stored = self.deleted = 0
        self.fingerprint: dict | None = None
        self._matched = 0
        self._recorded: list[Entry] = []

    def unchanged(self, member: str, kind: str, st: os.stat_result, link_target: str) -> Entry | None:
        """The previous entry of ``member`` if it may be reused as is, else None."""
        if self.previous is None:
            return None
        before = self.previous.entries.get(member)
        if before is not None:
            self._matched += 1
        return before if self.previous.is_unchanged(before, kind, st, link_target) else None

    def record(self, entry: Entry, *, stored: bool) -> None:
        self.index.add(entry)
        self._recorded.append(entry)
        self.entries += 1
        self.stored += stored

    def record_unchanged(self, before: Entry) -> None:
        """Record an entry equal to the previous index's (every compared field is)."""
        self.index.add(before, self.previous.lines.get(before.path))
        self._recorded.append(before)
        self.entries += 1

    def finish(self) -> None:
        if self.previous is not None:
            self.deleted = len(self.previous.entries) - self._matched
        self.fingerprint = _fingerprint_of_index(self._recorded)
        self._recorded = []


def _write_tar(root: str, exclude: tuple[str, ...], sink: BinaryIO, scan: TreeScan | None = None) -> None:
    """Archive the tree; with ``scan``, only entries changed against ``scan.previous``
    (everything when there is none), recording every entry in ``scan``."""
    seen_inodes: dict[tuple[int, int], tuple[str, str]] = {}
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:
        for path, member, st in _walk(root, exclude):
            kind = entry_type(st)
            if kind is None:
                continue  # sockets, FIFOs and devices are not backed up
            link_target = _readlink(path) if kind == "symlink" else ""
            if scan is not None:
                before = scan.unchanged(member, kind, st, link_target)
                if before is not None:
                    scan.record_unchanged(before)
                    continue
            info = _tarinfo(member, st)
            value = link_target
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, link_target
                tar.addfile(info)
            else:
                inode = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and inode in seen_inodes:
                    info.type, (info.linkname, value) = tarfile.LNKTYPE, seen_inodes[inode]
                    tar.addfile(info)
                else:
                    st, value = _add_file(tar, info, path, hashed=scan is not None)
                    if st.st_nlink > 1:
                        seen_inodes[inode] = (member, value)
            if scan is not None:
                scan.record(Entry.from_stat(member, kind, st, value), stored=True)
            tar.members.clear()  # a stream needs no index; keep memory flat
    if scan is not None:
        scan.finish()


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError as exc:
        raise _unreadable(path, exc) from None


class _HashingFile:
    """Reads through to ``handle``, hashing what tarfile copies into the archive."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.sha = handle, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.handle.read(n)
        self.sha.update(data)
        return data


def _add_file(tar: tarfile.TarFile, info: tarfile.TarInfo, path: str, *,
              hashed: bool = False) -> tuple[os.stat_result, str]:
    """Add the file at ``path``; returns its fstat and (when ``hashed``) the SHA-256 of
    the content archived."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    with open(fd, "rb", buffering=0) as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileUnreadable(path, "it was replaced by something else during the backup")
        info.size = st.st_size
        source = _HashingFile(handle) if hashed else handle
        try:
            tar.addfile(info, source)
        except OSError as exc:
            if "unexpected end of data" in str(exc):
                raise FileUnreadable(path, "it shrank while it was being archived") from None
            if isinstance(exc, BrokenPipeError):
                raise
            raise _unreadable(path, exc) from None
    return st, source.sha.hexdigest() if hashed else ""


def dump(conn: str, options: Mapping[str, Any] | None = None) -> ThreadProducer:
    """Stream a PAX tar of the directory ``conn``.

    Raises FileUnreadable at once when ``conn`` is not a readable directory; the
    producer's ``close()`` raises FileUnreadable naming the path when a file vanishes or
    cannot be read during the dump.
    """
    exclude = _exclude_option(_options(options, {"exclude"}))
    root = os.path.abspath(conn)
    if not os.path.isdir(root):
        raise FileUnreadable(root, "it is not a directory")
    return ThreadProducer(lambda sink: _write_tar(root, exclude, sink), tool=TOOL,
                          position={"root": root}, facts={"root": root})


def dump_tree(conn: str, options: Mapping[str, Any] | None = None, *,
              previous: FileIndex | None = None, root_id: str | None = None,
              quiescent: bool = False) -> ThreadProducer:
    """Stream a PAX tar of the entries of directory ``conn`` that are new or changed
    against ``previous`` (all of them when it is None), building the tree's file index.

    After the stream ends and ``close()`` returned, ``producer.scan`` (a ``TreeScan``)
    holds the index (``scan.index.document()``), the counts and the tree's fingerprint,
    also exposed as ``producer.fingerprint``. ``root_id`` names the tree in the index
    (default: the absolute path). ``quiescent``: nothing but the caller changes the tree
    (a staging mirror), so the next incremental may skip the racy-timestamp rule
    (files_index). Raises like ``dump``.
    """
    exclude = _exclude_option(_options(options, {"exclude"}))
    root = os.path.abspath(conn)
    if not os.path.isdir(root):
        raise FileUnreadable(root, "it is not a directory")
    scan = TreeScan(root_id or root, exclude, previous, quiescent=quiescent)
    return _TreeProducer(scan, lambda sink: _write_tar(root, exclude, sink, scan), tool=TOOL,
                         position={"root": root_id or root}, facts={"root": root})


class _TreeProducer(ThreadProducer):
    """A ThreadProducer whose ``scan`` (and ``fingerprint``) describe the tree it archived."""

    def __init__(self, scan: TreeScan, work, **kwargs) -> None:
        self.scan = scan
        super().__init__(work, **kwargs)

    @property
    def fingerprint(self) -> dict | None:
        return self.scan.fingerprint


def restore(conn: str, stream: BinaryIO, options: Mapping[str, Any] | None = None) -> None:
    """Extract the tar ``stream`` into the (empty or new) directory ``conn``.

    Raises UnsafeArchiveMember for a member that could write outside ``conn`` or is a
    special file (see module doc), RestoreFailed when ``conn`` is not empty or the archive
    is corrupt; errors from ``stream`` propagate.
    """
    opts = _options(options, {"owners", "exclude"})
    try:
        os.makedirs(conn, exist_ok=True)
        occupied = bool(os.listdir(conn))
    except OSError as exc:
        raise RestoreFailed(TOOL, None, [str(exc)], message="cannot use the restore target",
                            target=os.path.abspath(conn)) from None
    if occupied:
        raise RestoreFailed(TOOL, None, [], message="the restore target is not empty",
                            target=os.path.abspath(conn),
                            hint="restore into a new or empty directory")
    owners = bool(opts.get("owners", os.geteuid() == 0))
    Extractor(conn, owners=owners).extract(stream)


def fingerprint(conn: str, options: Mapping[str, Any] | None = None, *,
                like: Mapping[str, Any] | None = None) -> dict:
    """Every entry's type, mode, file SHA-256 / symlink target, plus an overall digest
    (see ``fingerprint_of``). Raises FileUnreadable when an entry cannot be read."""
    exclude = _exclude_option(_options(options, {"exclude"}))
    entries: dict[str, dict[str, str]] = {}
    for path, member, st in _walk(os.path.abspath(conn), exclude):
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        if stat.S_ISDIR(st.st_mode):
            entries[member] = {"type": "dir", "mode": mode}
        elif stat.S_ISLNK(st.st_mode):
            entries[member] = {"type": "symlink", "target": _readlink(path)}
        elif stat.S_ISREG(st.st_mode):
            entries[member] = {"type": "file", "mode": mode, "sha256": _sha256(path)}
    return fingerprint_of(entries)


def fingerprint_of(entries: Mapping[str, Mapping[str, str]]) -> dict:
    """The fingerprint of a tree whose entries (member -> {type, mode, sha256 | target})
    are given: ``{"kind", "entries", "digest"}``, the digest the SHA-256 of
    ``json.dumps(sorted entries, sort_keys=True)``. Past FINGERPRINT_ENTRIES_LIMIT entries
    the mapping is left out for a ``count`` (it would bloat every manifest); the digest
    still covers every entry."""
    entries = dict(sorted(entries.items()))
    digest = _digest((member, json.dumps(value, sort_keys=True)) for member, value in entries.items())
    if len(entries) > FINGERPRINT_ENTRIES_LIMIT:
        return {"kind": KIND, "count": len(entries), "digest": digest}
    return {"kind": KIND, "entries": entries, "digest": digest}


def _fingerprint_of_index(entries: list[Entry]) -> dict:
    """``fingerprint_of`` the tree an index describes, rendering its JSON directly."""
    entries = sorted(entries, key=lambda e: e.path)
    digest = _digest((e.path, e.fingerprint_json()) for e in entries)
    if len(entries) > FINGERPRINT_ENTRIES_LIMIT:
        return {"kind": KIND, "count": len(entries), "digest": digest}
    return {"kind": KIND, "entries": {e.path: e.fingerprint_entry() for e in entries}, "digest": digest}


def _digest(items: Iterator[tuple[str, str]]) -> str:
    """SHA-256 of ``json.dumps`` of a mapping given as sorted (key, JSON of value) items."""
    digest = hashlib.sha256(b"{")
    batch: list[str] = []
    separator = ""
    for key, value in items:
        batch.append(f"{encode_basestring_ascii(key)}: {value}")
        if len(batch) >= 4096:
            digest.update((separator + ", ".join(batch)).encode("ascii"))
            batch.clear()
            separator = ", "
    if batch:
        digest.update((separator + ", ".join(batch)).encode("ascii"))
    digest.update(b"}")
    return digest.hexdigest()


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return digest.hexdigest()


def tool_versions() -> dict[str, str]:
    """The archiver: Python's tarfile writing PAX (no external tool)."""
    import platform

    return {"tar": f"python tarfile {platform.python_version()}, PAX format"}
