"""Extracting a tar stream into a directory without ever writing outside it.

Symlinks are restored as symlinks, whatever they point at (``/etc/hostname``,
``../outside``: common in /etc and certificate directories), and are never followed on
write: nothing is ever written through one. Each member is checked before anything is
written for it: its name must be relative, without ``..``, and not under a symlink member
of the same archive; every directory on the way from the target to it must be a real
directory (checked with lstat, so a symlink planted earlier -- by this archive or by an
earlier link of an incremental chain -- is refused, never followed); hardlinks may only
point at regular files extracted earlier; device, FIFO and other special members are
refused. Files are created with O_EXCL|O_NOFOLLOW so an existing entry is never
followed. Directory modes/mtimes are applied last, deepest first, so read-only
directories do not block their own extraction, and only to real directories.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import tarfile
from decimal import Decimal, InvalidOperation
from typing import BinaryIO

from drfleet.providers.datasources.errors import RestoreFailed, UnsafeArchiveMember

TOOL = "tar (drfleet)"
CHUNK = 1 << 20


def safe_member_name(name: str) -> str:
    """``name`` normalised to "a/b/c" ("" for the root); raises UnsafeArchiveMember when
    it is absolute, holds a ``..`` component or a NUL byte."""
    if "\x00" in name:
        raise UnsafeArchiveMember(name, "the name holds a NUL byte")
    if name.startswith("/"):
        raise UnsafeArchiveMember(name, "absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveMember(name, "'..' path component")
    return "/".join(parts)


def real_directories_to(root: str, path: str, member: str, *, create: bool = False,
                        verified: set[str] | None = None) -> str:
    """Check that every component of ``path`` below ``root`` (``path`` included) is a real
    directory -- never a symlink, never something else -- creating missing ones (mode 0700)
    when ``create``; returns ``path``. ``verified`` caches directories already checked.
    Raises UnsafeArchiveMember naming ``member`` otherwise (a missing one without
    ``create``: FileNotFoundError)."""
    rel = os.path.relpath(path, root)
    if rel == ".":
        return path
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        raise UnsafeArchiveMember(member, "its directory is outside the target")
    current = root
    for part in rel.split(os.sep):
        current = os.path.join(current, part)
        if verified is not None and current in verified:
            continue
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(current, 0o700)
            mode = stat.S_IFDIR
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveMember(member, f"its directory {os.path.relpath(current, root)!r} is a "
                                              "symlink: nothing is written through a symlink")
        if not stat.S_ISDIR(mode):
            raise UnsafeArchiveMember(member, f"{os.path.relpath(current, root)!r} on its way is not a "
                                              "directory")
        if verified is not None:
            verified.add(current)
    return path


class Extractor:
    """Extracts one tar stream into ``target`` (see module doc for the checks)."""

    def __init__(self, target: str, *, owners: bool) -> None:
        self.root = os.path.realpath(target)
        self.owners = owners
        self._symlink_members: set[str] = set()
        self._regular_members: set[str] = set()
        self._directories: list[tuple[str, tarfile.TarInfo]] = []
        self._real_dirs: set[str] = set()  # verified real directories (they stay so: a
        # directory is never replaced by a member, see _remove_existing)

    def extract(self, stream: BinaryIO, *, directory_metadata: bool = True) -> None:
        """Extract every member; raises UnsafeArchiveMember, or RestoreFailed when the
        archive is corrupt or lacks its end marker (cut short at a member boundary).
        ``directory_metadata=False`` leaves directories writable (owner, mode and mtime
        not applied) for a caller that extracts more archives over the tree and applies
        them at the end with ``apply_directory_metadata(extractor.directories)`` (an
        incremental chain)."""
        reader = _RecentBytesReader(stream)
        try:
            with tarfile.open(fileobj=reader, mode="r|", bufsize=CHUNK) as tar:
                for member in tar:
                    self._extract_member(tar, member)
                    tar.members.clear()  # a stream needs no index; keep memory flat
                end_block = reader.bytes_at(tar.offset, tarfile.BLOCKSIZE)
        except tarfile.TarError as exc:
            raise RestoreFailed(TOOL, None, [str(exc)], message="the archive is corrupt or "
                                "truncated", target=self.root) from None
        # tarfile ends a stream silently at EOF or at an unreadable header: insist on the
        # zero block that really ends an archive.
        if end_block is None or len(end_block) < tarfile.BLOCKSIZE or any(end_block):
            raise RestoreFailed(TOOL, None, [], message="the archive is corrupt or truncated: "
                                "it does not end with an end-of-archive block",
                                target=self.root)
        reader.drain()
        if directory_metadata:
            self.apply_directory_metadata(self._directories)

    @property
    def directories(self) -> list[tuple[str, tarfile.TarInfo]]:
        """(path, member) of every directory member extracted so far, in archive order."""
        return list(self._directories)

    def apply_directory_metadata(self, directories) -> None:
        """Apply owner (if restoring owners), mode and mtime of (path, member) pairs,
        deepest first, so a read-only directory never blocks its own children; a path that
        is no longer a real directory on a path of real directories (an incremental chain
        replaced it) is skipped, never followed."""
        for path, member in sorted(directories, key=lambda d: d[0].count(os.sep), reverse=True):
            try:
                real_directories_to(self.root, path, member.name)
            except (UnsafeArchiveMember, FileNotFoundError):
                continue
            self._apply_metadata(path, member)

    def _extract_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = safe_member_name(member.name)
        if not (member.isdir() or member.isreg() or member.issym() or member.islnk()):
            raise UnsafeArchiveMember(member.name, "device, FIFO and special files are not "
                                                   "restored")
        parts = name.split("/") if name else []
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in self._symlink_members:
                raise UnsafeArchiveMember(member.name, "it lies under a symlink of the archive")
        dest = os.path.join(self.root, name) if name else self.root
        parent = os.path.dirname(dest) if name else self.root
        real_directories_to(self.root, parent, member.name, create=True, verified=self._real_dirs)
        if member.isdir():
            if os.path.islink(dest) or (os.path.lexists(dest) and not os.path.isdir(dest)):
                self._remove_existing(member.name, dest)
                self._symlink_members.discard(name)
            if not os.path.isdir(dest):
                os.mkdir(dest, 0o700)
            self._real_dirs.add(dest)
            self._directories.append((dest, member))
        elif member.issym():
            self._extract_symlink(member, name, dest)
        elif member.islnk():
            self._extract_hardlink(member, name, dest)
        else:
            self._extract_file(tar, member, name, dest)

    def _extract_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str,
                      dest: str) -> None:
        self._remove_existing(member.name, dest)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with open(fd, "wb") as out:
            shutil.copyfileobj(tar.extractfile(member), out, CHUNK)
        self._regular_members.add(name)
        self._apply_metadata(dest, member)

    def _extract_symlink(self, member: tarfile.TarInfo, name: str, dest: str) -> None:
        """Create the symlink as it was, pointing wherever it pointed (inside or outside
        the tree): creating a link writes nothing through it."""
        if not name:
            raise UnsafeArchiveMember(member.name, "the archive root cannot be a symlink")
        if not member.linkname or "\x00" in member.linkname:
            raise UnsafeArchiveMember(member.name, "the symlink has an empty target or a NUL byte")
        self._remove_existing(member.name, dest)
        os.symlink(member.linkname, dest)
        self._symlink_members.add(name)
        self._apply_metadata(dest, member)

    def _extract_hardlink(self, member: tarfile.TarInfo, name: str, dest: str) -> None:
        try:
            source = safe_member_name(member.linkname)
        except UnsafeArchiveMember as exc:
            raise UnsafeArchiveMember(member.name, f"hardlink target {member.linkname!r}: "
                                                   f"{exc.reason}") from None
        if source not in self._regular_members:
            raise UnsafeArchiveMember(member.name, f"hardlink target {member.linkname!r} is "
                                                   "not a file extracted from this archive")
        self._remove_existing(member.name, dest)
        os.link(os.path.join(self.root, source), dest, follow_symlinks=False)
        self._regular_members.add(name)

    def _remove_existing(self, member_name: str, dest: str) -> None:
        if os.path.isdir(dest) and not os.path.islink(dest):
            raise UnsafeArchiveMember(member_name, "it would replace a directory")
        if os.path.lexists(dest):
            os.unlink(dest)  # a later member of the same name wins, as with tar

    def _apply_metadata(self, path: str, member: tarfile.TarInfo) -> None:
        is_link = member.issym()
        if self.owners:
            os.chown(path, _uid(member), _gid(member), follow_symlinks=False)
        if not is_link:
            os.chmod(path, member.mode & 0o7777)
        mtime_ns = _mtime_ns(member)
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def _mtime_ns(member: tarfile.TarInfo) -> int:
    exact = member.pax_headers.get("mtime")
    try:
        return int(Decimal(exact if exact else repr(member.mtime)).scaleb(9))
    except (InvalidOperation, ValueError):
        return int(member.mtime * 1_000_000_000)


class _RecentBytesReader:
    """Passes reads through, remembering the most recent bytes (a few MiB) by offset."""

    WINDOW = 4 * CHUNK

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._recent = bytearray()
        self._recent_start = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._recent += data
        excess = len(self._recent) - self.WINDOW
        if excess > 0:
            del self._recent[:excess]
            self._recent_start += excess
        return data

    def bytes_at(self, offset: int, size: int) -> bytes | None:
        """The bytes at ``offset`` (reading on if needed); None if no longer remembered."""
        while self._recent_start + len(self._recent) < offset + size:
            if not self.read(CHUNK):
                break
        if offset < self._recent_start:
            return None
        start = offset - self._recent_start
        return bytes(self._recent[start:start + size])

    def drain(self) -> None:
        """Read the stream to its end (padding after the end block), so its producer ends."""
        while self._stream.read(CHUNK):
            pass


def _uid(member: tarfile.TarInfo) -> int:
    try:
        return pwd.getpwnam(member.uname).pw_uid if member.uname else member.uid
    except KeyError:
        return member.uid


def _gid(member: tarfile.TarInfo) -> int:
    try:
        return grp.getgrnam(member.gname).gr_gid if member.gname else member.gid
    except KeyError:
        return member.gid
