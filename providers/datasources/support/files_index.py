"""The file index of a files backup: every entry of the tree with the stat facts change
detection needs and the content hash the fingerprint needs (docs/format.md, "The file
index").

``FileIndex.parse`` reads an index back (the previous backup's, to find what changed);
``IndexWriter`` writes one while a tree is archived, spilling to a temporary file past a
few MiB so memory stays flat; ``Entry`` is one line. ``is_unchanged`` is the change rule.
"""

from __future__ import annotations

import io
import json
import stat
import tempfile
from json.encoder import encode_basestring_ascii as _json_string
from typing import BinaryIO, Iterable, Iterator, NamedTuple

from drfleet.providers.datasources.errors import DataSourceError
from drfleet.safe_load import DocumentRefused, load_json

INDEX_FORMAT = "drfleet-file-index"
INDEX_VERSION = 1
RACY_WINDOW_NS = 2_000_000_000  # coarser than any file system's timestamp tick we support
SPOOL_BYTES = 16 << 20
MAX_HEADER_BYTES = 1 << 20  # the header holds the root and the exclude patterns


class IndexInvalid(DataSourceError):
    """A stored file index cannot be read: wrong format, unknown version, bad line."""

    hint = "the backup's index object is damaged or was written by an unknown version; take a full backup"

    def __init__(self, reason: str, **facts) -> None:
        self.reason = reason
        super().__init__(f"the file index cannot be read: {reason}", **facts)


class Entry(NamedTuple):
    """One index line (see docs/format.md for the field meanings)."""

    path: str
    type: str  # "dir" | "file" | "symlink"
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    nlink: int
    value: str  # file: sha256 hex; symlink: target; dir: ""

    def to_line(self) -> bytes:
        """The JSON array line, as ``json.dumps(ensure_ascii=True)`` with no spaces writes it."""
        return (f'[{_json_string(self.path)},"{self.type}",{self.mode},{self.uid},{self.gid},'
                f'{self.size},{self.mtime_ns},{self.ctime_ns},{self.inode},{self.nlink},'
                f'{_json_string(self.value)}]\n').encode("ascii")

    @classmethod
    def from_stat(cls, path: str, kind: str, st, value: str) -> "Entry":
        return cls(path, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                   st.st_size if kind != "dir" else 0, st.st_mtime_ns, st.st_ctime_ns,
                   st.st_ino, st.st_nlink, value)

    def fingerprint_entry(self) -> dict[str, str]:
        """This entry as ``files.fingerprint`` describes it."""
        if self.type == "dir":
            return {"type": "dir", "mode": f"{self.mode:04o}"}
        if self.type == "symlink":
            return {"type": "symlink", "target": self.value}
        return {"type": "file", "mode": f"{self.mode:04o}", "sha256": self.value}

    def fingerprint_json(self) -> str:
        """``json.dumps(self.fingerprint_entry(), sort_keys=True)``, without building it."""
        if self.type == "dir":
            return f'{{"mode": "{self.mode:04o}", "type": "dir"}}'
        if self.type == "symlink":
            return f'{{"target": {_json_string(self.value)}, "type": "symlink"}}'
        return f'{{"mode": "{self.mode:04o}", "sha256": {_json_string(self.value)}, "type": "file"}}'


def entry_type(st) -> str | None:
    """"dir", "file", "symlink", or None for what is not backed up (devices, FIFOs...)."""
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return None


_TYPES = frozenset({"dir", "file", "symlink"})


def _first_bad_line(body: bytes) -> int:
    """The 1-based document line number of the first entry line that does not parse."""
    for number, line in enumerate(body.split(b"\n"), start=2):
        try:
            row = json.loads(line)
            if Entry(*row).type not in _TYPES or not isinstance(row[0], str):
                return number
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
            return number
    return 2


class FileIndex:
    """A parsed index: ``header`` (dict) and ``entries`` (path -> Entry, archive order)."""

    def __init__(self, header: dict, entries: dict[str, Entry],
                 lines: dict[str, bytes] | None = None) -> None:
        self.header, self.entries = header, entries
        self.lines = lines or {}  # path -> its line as stored, reused for unchanged entries

    @property
    def scan_started_ns(self) -> int:
        return int(self.header["scan_started_ns"])

    @classmethod
    def parse(cls, stream: BinaryIO, *, source: str = "file index") -> "FileIndex":
        """Read an index document; raises IndexInvalid (naming ``source``) for a wrong
        format or version, a header line longer than MAX_HEADER_BYTES or nested, a malformed
        line (a nested one too: entries are flat, and the C decoder's recursion limit ends
        a nested bomb at once), or an entry count that does not match."""
        header_line = stream.readline(MAX_HEADER_BYTES + 1)
        try:
            header = load_json(header_line, source=source, max_bytes=MAX_HEADER_BYTES, max_depth=4)
        except DocumentRefused as exc:
            raise IndexInvalid(f"no header line ({exc.reason})", source=source) from None
        if not isinstance(header, dict) or header.get("format") != INDEX_FORMAT:
            raise IndexInvalid(f"not a {INDEX_FORMAT} document", source=source)
        if header.get("version") != INDEX_VERSION:
            raise IndexInvalid(f"unknown index version {header.get('version')!r} (this "
                               f"reader knows {INDEX_VERSION})", source=source)
        body = stream.read().rstrip(b"\n")
        try:  # one document for the C decoder: several times faster than line by line
            rows = json.loads(b"[" + body.replace(b"\n", b",") + b"]") if body else []
            entries = {row[0]: Entry(*row) for row in rows}
            lines = {row[0]: line + b"\n" for row, line in zip(rows, body.split(b"\n"))}
            if not all(isinstance(e.path, str) and e.type in _TYPES for e in entries.values()):
                raise ValueError("bad entry")
        except (ValueError, TypeError, IndexError, UnicodeDecodeError, RecursionError):
            raise IndexInvalid(f"line {_first_bad_line(body)} is not an index entry",
                               source=source) from None
        if header.get("entries") != len(entries) or not isinstance(header.get("scan_started_ns"), int):
            raise IndexInvalid(f"the header announces {header.get('entries')!r} entries, "
                               f"{len(entries)} follow", source=source)
        return cls(header, entries, lines)

    def is_unchanged(self, previous: Entry | None, kind: str, st, link_target: str) -> bool:
        """True when an entry found now (``kind``, lstat ``st``, symlink target) may reuse
        ``previous`` (this index's entry of the same path) without being stored again."""
        if previous is None or previous.type != kind:
            return False
        # The names of one inode share its stat, and linking or unlinking a name changes
        # its ctime: they are changed or unchanged together, so every name of a stored
        # multi-link inode is in the same archive and its hard links survive a restore.
        if not self.header.get("quiescent"):
            racy_from = self.scan_started_ns - RACY_WINDOW_NS
            if previous.mtime_ns >= racy_from or previous.ctime_ns >= racy_from:
                return False
        return (previous.mode == stat.S_IMODE(st.st_mode) and previous.uid == st.st_uid
                and previous.gid == st.st_gid and previous.mtime_ns == st.st_mtime_ns
                and previous.ctime_ns == st.st_ctime_ns and previous.inode == st.st_ino
                and previous.nlink == st.st_nlink
                and (kind == "dir" or previous.size == st.st_size)
                and (kind != "symlink" or previous.value == link_target))


class IndexWriter:
    """Collects entry lines (spilling to a temporary file), then serves the document."""

    def __init__(self, *, root: str, exclude: Iterable[str], scan_started_ns: int,
                 quiescent: bool = False) -> None:
        self.header = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "root": root,
                       "exclude": list(exclude), "scan_started_ns": scan_started_ns,
                       "quiescent": quiescent}
        self.count = 0
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, prefix="drfleet-index-")
        self._pending: list[bytes] = []

    def add(self, entry: Entry, line: bytes | None = None) -> None:
        """Add ``entry``; ``line`` is its line when already rendered (an unchanged entry)."""
        self._pending.append(line or entry.to_line())
        self.count += 1
        if len(self._pending) >= 4096:
            self._flush()

    def _flush(self) -> None:
        self._spool.write(b"".join(self._pending))
        self._pending.clear()

    def document(self) -> BinaryIO:
        """A readable of the whole document (header first); call once, after the walk."""
        self._flush()
        self._spool.seek(0)
        header = json.dumps({**self.header, "entries": self.count}, ensure_ascii=True,
                            separators=(",", ":"), sort_keys=True).encode("ascii") + b"\n"
        return _Concatenated([io.BytesIO(header), self._spool])

    def close(self) -> None:
        self._spool.close()


class _Concatenated(io.RawIOBase):
    def __init__(self, parts: list[BinaryIO]) -> None:
        super().__init__()
        self._parts: Iterator[BinaryIO] = iter(parts)
        self._current: BinaryIO | None = next(self._parts)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while self._current is not None:
            data = self._current.read(len(buf))
            if data:
                buf[:len(data)] = data
                return len(data)
            self._current = next(self._parts, None)
        return 0
