"""Files: a directory tree as a PAX tar stream, restored with member-by-member checks.

``conn`` is a local directory. The dump is written by a background thread into a pipe,
in sorted depth-first order, with modes, uid/gid (and names), sub-second mtimes,
symlinks, hardlinks and empty directories; the root itself is the member ``.``.
Sockets, FIFOs and device files are skipped. A file that vanishes or cannot be read
fails the dump: the producer's ``close()`` raises FileUnreadable naming the path.

restore extracts into ``conn`` (created if missing; it must be empty) and refuses, with
UnsafeArchiveMember, absolute names, ``..`` components, members under an archived
symlink, symlinks whose target resolves outside the target, hardlinks to anything but a
file extracted earlier from the same archive, and device/FIFO/special members. Nothing
is ever written outside the target; members extracted before a refusal stay in it.
Modes and mtimes are restored; owners too when ``owners`` is true (the default when
running as root; by user/group name when it exists here, else by number).
Options: ``exclude`` (dump, fingerprint; accepted and unused by restore so one mapping
serves all three): glob patterns; one without "/" matches any entry's name (``*.swp``,
``node_modules``), one with "/" matches the path from the root (``var/cache/*``); an
excluded directory is not descended into. ``owners`` (restore).

fingerprint: for every entry (root ``.`` included) its type and mode, the SHA-256 of
regular files, the target of symlinks -- a sorted mapping -- plus one overall digest.
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
from decimal import Decimal
from functools import lru_cache
from typing import Any, BinaryIO, Iterator, Mapping

from providers.datasources.errors import (FileUnreadable, InvalidSourceOptions, RestoreFailed,
                                          UnsafeArchiveMember)
from providers.datasources.files_extract import Extractor
from providers.datasources.producer import ThreadProducer

KIND = "files"
TOOL = "tar (drfleet)"
CHUNK = 1 << 20


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
    stack = [(root, "", iter(_listing(root)))]
    while stack:
        directory, prefix, names = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        path, member = os.path.join(directory, name), prefix + name
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


def _write_tar(root: str, exclude: tuple[str, ...], sink: BinaryIO) -> None:
    seen_inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:
        for path, member, st in _walk(root, exclude):
            info = _tarinfo(member, st)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, _readlink(path)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                inode = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and inode in seen_inodes:
                    info.type, info.linkname = tarfile.LNKTYPE, seen_inodes[inode]
                    tar.addfile(info)
                    continue
                seen_inodes[inode] = member
                _add_file(tar, info, path)
            tar.members.clear()  # a stream needs no index; keep memory flat
            # sockets, FIFOs and devices are not backed up


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _add_file(tar: tarfile.TarFile, info: tarfile.TarInfo, path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    with open(fd, "rb", buffering=0) as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileUnreadable(path, "it was replaced by something else during the backup")
        info.size = st.st_size
        try:
            tar.addfile(info, handle)
        except OSError as exc:
            if "unexpected end of data" in str(exc):
                raise FileUnreadable(path, "it shrank while it was being archived") from None
            if isinstance(exc, BrokenPipeError):
                raise
            raise _unreadable(path, exc) from None


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


def fingerprint(conn: str, options: Mapping[str, Any] | None = None) -> dict:
    """Sorted mapping of every entry's type, mode, file SHA-256 / symlink target, plus an
    overall digest. Raises FileUnreadable when an entry cannot be read."""
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
    entries = dict(sorted(entries.items()))
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    return {"kind": KIND, "entries": entries, "digest": digest}


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
