"""The state of a file tree as one digest, for deciding whether it changed.

Two digests, chosen by the policy's trigger:

* ``stat`` (``continuous``): every entry's path, type, mode, owner, size, mtime, ctime,
  inode and symlink target. Any write, rename, chmod or touch changes it. Costs one
  ``lstat`` per entry and reads no file content.
* ``content`` (``on-change``): path, type, mode, owner, the SHA-256 of regular files and
  symlink targets; no times. A touch, or rewriting a file with the same bytes, leaves it
  unchanged. File content is read only for files whose (size, mtime, ctime, inode)
  differ from the ``hashes`` cache of the previous survey, so an idle tree costs what a
  stat walk costs.

The walk is sorted and depth-first, like the files data source's dump, and skips what the
dump skips (sockets, FIFOs, device files). An entry that vanishes during the walk is left
out: a tree being changed is caught settled by the next survey. The survey also reports
the oldest inode change time (``ctime``, which no user can set back) newer than ``since``:
the best local estimate of when the change the survey found was written.

Raised: ``TreeMissing`` when the root does not exist, ``TreeUnreadable`` (path, reason)
when a directory or file cannot be read for any other reason than vanishing.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from drfleet.datapath.errors import DataPathError

DIGESTS = ("stat", "content")
_KEPT_TYPES = {stat.S_IFDIR: "d", stat.S_IFREG: "f", stat.S_IFLNK: "l"}
CHUNK = 1 << 20


class TreeMissing(DataPathError):
    hint = "create the directory the plan names (source: path), or fix the path in the plan"


class TreeUnreadable(DataPathError):
    hint = "let the worker's user read the whole tree (the backup reads it too)"


@dataclass(frozen=True)
class Survey:
    """One look at a tree: ``digest`` decides "changed"; ``changed_since`` is the oldest
    ctime newer than the ``since`` the survey was given (None when none is); ``hashes``
    is the refreshed content cache (``content`` digests only)."""

    digest: str
    kind: str
    entries: int
    started_at: float
    changed_since: float | None
    hashes: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """One kept entry of a tree, as a local walk or a remote listing reports it."""

    member: str  # "." for the root, else the path from the root
    ftype: str   # d, f or l
    mode: int    # permission bits (S_IMODE)
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    target: str = ""  # symlinks only


def local_entries(root: str) -> Iterator[Entry]:
    """The root (as ".") and everything kept below it, sorted depth-first."""
    for path, member, st in _walk(root):
        try:
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
        except FileNotFoundError:
            continue
        yield Entry(member, _KEPT_TYPES[stat.S_IFMT(st.st_mode)], stat.S_IMODE(st.st_mode), st.st_uid,
                    st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, target)


def _walk(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    try:
        st = os.stat(root)  # a root that is a symlink to a directory is followed
    except FileNotFoundError:
        raise TreeMissing("the tree to watch does not exist", path=root) from None
    except OSError as exc:
        raise TreeUnreadable("cannot stat the tree's root", path=root, reason=exc.strerror) from None
    if not stat.S_ISDIR(st.st_mode):
        raise TreeUnreadable("the tree to watch is not a directory", path=root, reason="not a directory")
    yield root, ".", st
    stack = [(root, "", iter(_listing(root)))]
    while stack:
        directory, prefix, names = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        path, member = os.path.join(directory, name), prefix + name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise TreeUnreadable("cannot stat an entry", path=path, reason=exc.strerror) from None
        kind = _KEPT_TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            continue
        yield path, member, st
        if kind == "d":
            stack.append((path, member + "/", iter(_listing(path))))


def _listing(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise TreeUnreadable("cannot list a directory", path=path, reason=exc.strerror) from None


def _file_sha256(path: str) -> str | None:
    """The content hash, or None when the file vanished before it could be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TreeUnreadable("cannot read a file", path=path, reason=exc.strerror) from None
    return digest.hexdigest()


def survey(root: str, *, kind: str, since: float | None = None,
           hashes: dict[str, list] | None = None) -> Survey:
    """Walk the local tree ``root`` once and digest it (``kind`` is "stat" or "content";
    see the module docstring). ``hashes`` is the cache the previous content survey
    returned."""
    def read_hashes(members: list[str]) -> dict[str, str]:
        found = {m: _file_sha256(os.path.join(root, m)) for m in members}
        return {m: h for m, h in found.items() if h is not None}

    return digest_entries(local_entries(root), kind=kind, since=since, hashes=hashes,
                          read_hashes=read_hashes, started=time.time())


def digest_entries(entries: Iterable[Entry], *, kind: str, since: float | None,
                   hashes: dict[str, list] | None, read_hashes: Callable[[list[str]], dict[str, str]],
                   started: float) -> Survey:
    """The Survey of a sorted entry stream. ``read_hashes`` returns the SHA-256 of the
    regular files it is given (members relative to the root), leaving out any that
    vanished; it is called once, for the files the ``hashes`` cache cannot vouch for."""
    if kind not in DIGESTS:
        raise ValueError(f"digest kind must be one of {DIGESTS}, not {kind!r}")
    previous, fresh = hashes or {}, {}
    if kind == "content":
        entries = list(entries)
        keys = {e.member: [e.size, e.mtime_ns, e.ctime_ns, e.ino] for e in entries if e.ftype == "f"}
        known = {m: previous[m][4] for m, k in keys.items() if m in previous and previous[m][:4] == k}
        known.update(read_hashes([m for m in keys if m not in known]))
        fresh = {m: keys[m] + [known[m]] for m in keys if m in known}
    digest = hashlib.sha256(f"drfleet-tree-{kind}-v1\n".encode())
    oldest_change: float | None = None
    count = 0
    for e in entries:
        ctime = e.ctime_ns / 1e9
        if since is not None and ctime > since and (oldest_change is None or ctime < oldest_change):
            oldest_change = ctime
        common = [e.member, e.ftype, f"{e.mode:o}", str(e.uid), str(e.gid)]
        if kind == "stat":
            fields = common + [str(e.size), str(e.mtime_ns), str(e.ctime_ns), str(e.ino), e.target]
        elif e.ftype == "f":
            if e.member not in fresh:
                continue  # vanished before it could be read
            fields = common + [fresh[e.member][4]]
        else:
            fields = common + [e.target]
        digest.update("\0".join(fields).encode("utf-8", "surrogateescape") + b"\n")
        count += 1
    return Survey(digest=digest.hexdigest(), kind=kind, entries=count, started_at=started,
                  changed_since=oldest_change, hashes=fresh)
