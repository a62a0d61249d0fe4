"""File-level base backups of PostgreSQL: full, differential and incremental
(docs/format.md, "File-level base backups").

The backup is taken with the non-exclusive backup API on one connection
(``pg_backup_start`` ... ``pg_backup_stop``) while this process reads the data directory
itself, so an unchanged file costs one ``lstat`` and a differential or an incremental
stores only what changed. Files are concatenated into the *file stream*, cut into pieces of
``PIECE_SIZE`` bytes; the calling thread reads and hashes, N workers compress, seal and
store pieces at once, and at most 2N pieces are in memory. The file manifest (every file of
the data directory with size, mtime, SHA-256 and the backup that holds its content) is the
last object; the backup manifest is written after it, so nothing half-written is visible.

From a standby (``standby_conn``): start and stop are called on the primary (the only
work it does); the files are read from the standby once it has replayed past the start
LSN and made a restartpoint; the primary's archive supplies the WAL.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

from drfleet.backup_format.envelope import ObjectSealer
from drfleet.backup_format.layout import object_key
from drfleet.backup_format.manifest import Manifest, ObjectEntry
from drfleet.datapath.backup_run import BackupRun
from drfleet.datapath.streams import seal_stream
from drfleet.errors import DrfleetError
from drfleet.pitr.errors import BaseBackupFailed, NotAPostgresDataset, NotAStandby, PhysicalBackupRefused
from drfleet.plan.models import Plan

logger = logging.getLogger("drfleet.pitr.physical")

METHOD = "files"
INDEX_OBJECT = "pgindex-0000.zst.dfe"
INDEX_FORMAT = "drfleet-pg-files"
PIECE_SIZE = 8 << 20
MAX_CHAIN = 100
RACY_NS = 2_000_000_000
BACKUP_TYPES = ("full", "differential", "incremental")

#: directories recorded empty: their contents are never copied
EMPTY_DIRS = frozenset({"pg_wal", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots",
                        "pg_stat_tmp", "pg_subtrans"})
#: files never copied (anywhere for pg_internal.init and pgsql_tmp*; at the top for the rest)
SKIPPED_TOP = frozenset({"postmaster.pid", "postmaster.opts", "standby.signal", "recovery.signal",
                         "backup_label", "backup_label.old", "tablespace_map", "tablespace_map.old"})


def piece_name(number: int) -> str:
    return f"data-{number:04d}.zst.dfe"


def is_physical(manifest: Manifest) -> bool:
    """A file-level base backup (chain-capable)."""
    return manifest.kind == "postgres" and (manifest.labels or {}).get("method") == METHOD


# --- the file manifest ------------------------------------------------------------------

@dataclass
class Entry:
    path: str
    type: str               # dir | file | symlink
    mode: int
    size: int
    mtime_ns: int
    value: str = ""         # sha256 | symlink target | ""
    holder: str = ""
    offset: int = 0

    def row(self) -> list:
        return [self.path, self.type, self.mode, self.size, self.mtime_ns, self.value, self.holder, self.offset]


@dataclass
class PgIndex:
    header: dict[str, Any]
    entries: list[Entry] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        header = {**self.header, "entries": len(self.entries)}
        lines = [json.dumps(header, sort_keys=True, separators=(",", ":"))]
        lines += [json.dumps(e.row(), separators=(",", ":")) for e in self.entries]
        return ("\n".join(lines) + "\n").encode("ascii")

    @classmethod
    def parse(cls, data: bytes, *, source: str) -> "PgIndex":
        lines = data.decode("ascii").splitlines()
        try:
            header = json.loads(lines[0])
            entries = [Entry(*json.loads(line)) for line in lines[1:]]
        except (ValueError, TypeError, IndexError) as exc:
            raise BaseBackupFailed(f"the file manifest of {source} is unreadable ({exc})", backup=source) from None
        if header.get("format") != INDEX_FORMAT or header.get("version") != 1 or header.get("entries") != len(entries):
            raise BaseBackupFailed(f"the file manifest of {source} is not a version 1 {INDEX_FORMAT} document "
                                   "with as many entries as it announces", backup=source)
        return cls(header, entries)

    def files(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries if e.type == "file"}


def read_pg_index(store, manifest: Manifest, data_key) -> PgIndex:
    """The file manifest of file-level base backup ``manifest`` (MAC, object hash and
    envelope checked by the reader)."""
    from drfleet.datapath.reading import open_object
    with open_object(store, manifest, data_key, INDEX_OBJECT) as stream:
        data = stream.read()
    return PgIndex.parse(data, source=f"{store.name}:{manifest.dataset}/{manifest.backup_id}")


# --- walking the data directory -----------------------------------------------------------

def _skipped(rel: str, name: str) -> bool:
    if name.startswith(("pgsql_tmp", ".s.PGSQL.")) or name == "pg_internal.init":
        return True
    return "/" not in rel and rel in SKIPPED_TOP


def walk(data_dir: str) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of what a backup records, sorted by path, ``.`` first."""
    yield ".", os.lstat(data_dir)
    yield from _walk(data_dir, "")


def _walk(root: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    directory = os.path.join(root, prefix) if prefix else root
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for name in names:
        rel = f"{prefix}/{name}" if prefix else name
        if _skipped(rel, name):
            continue
        try:
            st = os.lstat(os.path.join(root, rel))
        except FileNotFoundError:
            continue  # dropped while we walked: WAL replay recreates nothing it needs
        if stat.S_ISDIR(st.st_mode):
            yield rel, st
            if rel not in EMPTY_DIRS:
                yield from _walk(root, rel)
        elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            yield rel, st


# --- storing pieces with N workers ----------------------------------------------------------

class _MemoryReader:
    """A readable over a piece held in memory (no copy of it)."""

    def __init__(self, data) -> None:
        self.view, self.position = memoryview(data), 0

    def readinto(self, buf) -> int:
        n = min(len(buf), len(self.view) - self.position)
        buf[:n] = self.view[self.position:self.position + n]
        self.position += n
        return n


class PieceWriter:
    """The file stream of one backup: files are read straight into the current piece;
    a full piece goes to a hashing thread (the dump stream's SHA-256, in piece order) and
    to one of N workers that compress, seal and store it. At most 2N pieces are held."""

    def __init__(self, run: BackupRun, workers: int) -> None:
        import queue
        self.run, self.workers = run, max(1, workers)
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="drfleet-piece")
        self.slots = threading.BoundedSemaphore(self.workers * 2)
        self.buffer, self.fill = bytearray(PIECE_SIZE), 0
        self.offset = 0           # bytes of the file stream so far
        self.futures: list[Future] = []
        self.entries: dict[int, ObjectEntry] = {}
        self.hash_queue: queue.Queue = queue.Queue(maxsize=self.workers * 2)
        self.hash_error: BaseException | None = None
        self.hasher = threading.Thread(target=self._hash, name="drfleet-piece-hash", daemon=True)
        self.hasher.start()

    def _hash(self) -> None:
        while True:
            piece = self.hash_queue.get()
            if piece is None:
                return
            try:
                self.run._plaintext_sha.update(piece)
                self.run.plaintext_size += len(piece)
            except BaseException as exc:  # noqa: BLE001 - reported by finish()
                self.hash_error = exc

    def read_file(self, handle, sha) -> int:
        """Read ``handle`` to its end into the stream, updating ``sha``; bytes read."""
        total = 0
        while True:
            view = memoryview(self.buffer)[self.fill:]
            n = handle.readinto(view)
            if not n:
                return total
            sha.update(view[:n])
            self.fill += n
            self.offset += n
            total += n
            if self.fill == PIECE_SIZE:
                self._flush()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = PIECE_SIZE - self.fill
            part = view[:room]
            self.buffer[self.fill:self.fill + len(part)] = part
            self.fill += len(part)
            self.offset += len(part)
            view = view[room:]
            if self.fill == PIECE_SIZE:
                self._flush()

    def _flush(self) -> None:
        if not self.fill:
            return
        for done in [f for f in self.futures if f.done()]:
            done.result()  # raise a worker's error early
        piece = self.buffer if self.fill == PIECE_SIZE else self.buffer[:self.fill]
        number = len(self.futures)
        self.buffer, self.fill = bytearray(PIECE_SIZE), 0
        self.slots.acquire()
        self.hash_queue.put(piece)
        self.futures.append(self.pool.submit(self._store, number, piece))

    def _store(self, number: int, piece: bytearray) -> None:
        try:
            name = piece_name(number)
            key = object_key(self.run.dataset, self.run.backup_id, name)
            with self.run.store.writer(key) as writer:
                stats = seal_stream(_MemoryReader(piece), writer.write, ObjectSealer(self.run.data_key, name),
                                    level=self.run.level, threads=0, hash_plaintext=False)
                writer.commit()
            self.run._written.append(key)
            self.entries[number] = ObjectEntry(name=name, size=stats.stored_size, sha256=stats.stored_sha256,
                                               plaintext_size=stats.compressed_size)
        finally:
            self.slots.release()

    def finish(self) -> None:
        self._flush()
        self.hash_queue.put(None)
        self.hasher.join()
        for f in self.futures:
            f.result()
        self.pool.shutdown()
        if self.hash_error is not None:
            raise self.hash_error
        self.run.objects = [self.entries[n] for n in range(len(self.futures))]
        self.run.stored_size = sum(o.size for o in self.run.objects)

    def abort(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.hash_queue.put(None)
        self.hasher.join(10)


# --- choosing what to compare with ----------------------------------------------------------

@dataclass
class Compared:
    manifest: Manifest
    index: PgIndex

    def parents_for(self, backup_type: str) -> list[str]:
        m = self.manifest
        return [m.backup_id] if backup_type == "differential" else [*m.parents, m.backup_id]


def choose_compared(plan: Plan, store, dataset: str, backup_type: str, facts: dict,
                    data_dir: str) -> tuple[Compared | None, str]:
    """The backup a differential/incremental compares with, or (None, why a full)."""
    from drfleet.backup_format.layout import manifests_prefix, parse_manifest_key
    from drfleet.datapath.catalog import read_manifest
    from drfleet.datapath.reading import data_key_for

    if backup_type == "full":
        return None, ""
    ids = sorted((parse_manifest_key(i.key)[1] for i in store.list(manifests_prefix(dataset))), reverse=True)
    for backup_id in ids:
        try:
            m = read_manifest(store, dataset, backup_id)
        except DrfleetError:
            continue
        if not is_physical(m):
            continue
        if backup_type == "differential" and m.labels.get("backup_type") != "full":
            continue
        if len(m.parents) + 2 > MAX_CHAIN:
            return None, f"the chain would exceed {MAX_CHAIN} backups"
        if m.fingerprint.get("system_identifier") != facts["system_identifier"]:
            return None, (f"the newest file-level base backup {backup_id} is of another cluster "
                          f"(system identifier {m.fingerprint.get('system_identifier')}, "
                          f"now {facts['system_identifier']})")
        try:
            index = read_pg_index(store, m, data_key_for(plan, m))
        except DrfleetError as exc:
            return None, f"the file manifest of {backup_id} cannot be read: {exc.message}"
        return Compared(m, index), ""
    wanted = "full file-level base backup" if backup_type == "differential" else "file-level base backup"
    return None, f"no {wanted} of the dataset in this store"


# --- the backup -------------------------------------------------------------------------------

def _connect(conn: str):
    import psycopg
    return psycopg.connect(conn, connect_timeout=10, autocommit=True)


def _server(db) -> dict[str, Any]:
    system_id, = db.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    version, = db.execute("SHOW server_version_num").fetchone()
    data_dir, = db.execute("SHOW data_directory").fetchone()
    in_recovery, = db.execute("SELECT pg_is_in_recovery()").fetchone()
    archive_mode, = db.execute("SHOW archive_mode").fetchone()
    seg, unit = db.execute("SELECT setting::bigint, unit FROM pg_settings WHERE name = 'wal_segment_size'").fetchone()
    return {"system_identifier": system_id, "server_version_num": int(version), "data_directory": data_dir,
            "in_recovery": bool(in_recovery), "archive_mode": archive_mode,
            "wal_segment_size": int(seg) * (8192 if unit == "8kB" else 1)}


def default_workers() -> int:
    from drfleet import settings
    return max(1, settings.PHYSICAL_WORKERS.get())


def run_physical_backup(plan: Plan, dataset: str, *, backup_type: str = "full", workers: int | None = None,
                        policy: str | None = None, region: str | None = None, slot: str | None = None,
                        task_id: str | None = None, location: str | None = None,
                        standby_conn: str | None = None, data_dir: str | None = None) -> dict:
    """Take a file-level base backup of PostgreSQL ``dataset`` and commit it; a summary.

    ``backup_type``: full, differential (files changed since the newest full) or
    incremental (since the newest file-level base backup of any type). ``workers``: pieces
    compressed, sealed and stored at once (default: the policy's ``workers``, else
    $DRFLEET_PHYSICAL_WORKERS). ``standby_conn``: read the files from this
    standby (start/stop on the primary); default: the dataset's ``standby_connection``
    when the policy says ``from_standby``. ``data_dir``: where this process reads the data
    directory (default: the server's ``data_directory``).

    Raises NotAPostgresDataset, PhysicalBackupRefused (server too old, archive_mode off,
    data directory unreadable here, tablespaces), NotAStandby, BaseBackupFailed, and the
    data path's keyring/store errors; then no manifest exists and the pieces are removed.
    """
    from drfleet.datapath.sources import source_for
    from drfleet.pitr.basebackup import _policy_for
    from drfleet.pitr.walnames import format_lsn, parse_lsn, segment_of_lsn

    if backup_type not in BACKUP_TYPES:
        raise PhysicalBackupRefused(f"unknown backup type {backup_type!r}", choices=", ".join(BACKUP_TYPES))
    ds = plan.dataset(dataset)
    if ds.kind != "postgres":
        raise NotAPostgresDataset(f"dataset {dataset} is of kind {ds.kind}", dataset=dataset)
    if policy is None:
        policy = next((p.name for p in ds.policies if p.physical == backup_type), None)
    policy = _policy_for(plan, dataset, policy)
    chosen = plan.policy(dataset, policy)
    workers = workers or chosen.workers or default_workers()
    if standby_conn is None and chosen.from_standby:
        from drfleet.secrets import resolve_secret
        standby_conn = resolve_secret(ds.standby_connection, what=f"dataset {dataset} standby_connection")
    started = time.monotonic()
    run = BackupRun(plan, dataset, policy, region=region or ds.region, slot=slot, task_id=task_id,
                    progress=None, location=location)
    _, conn, _ = source_for(plan, dataset)
    with _connect(conn) as primary:
        facts = _server(primary)
        if facts["server_version_num"] < 150000:
            raise PhysicalBackupRefused("file-level base backups need PostgreSQL 15 or later (pg_backup_start)",
                                        dataset=dataset, server_version_num=facts["server_version_num"])
        if facts["in_recovery"]:
            raise PhysicalBackupRefused("the dataset's connection reaches a server in recovery; give the "
                                        "primary as the connection and the standby as --standby",
                                        dataset=dataset)
        if facts["archive_mode"] == "off":
            raise BaseBackupFailed("archive_mode is off: a base backup without archived WAL cannot be restored",
                                   dataset=dataset)
        standby = _connect(standby_conn) if standby_conn else None
        try:
            source_facts = facts
            if standby is not None:
                source_facts = _server(standby)
                if not source_facts["in_recovery"]:
                    raise NotAStandby("the server given as the standby is not in recovery (it is a primary)",
                                      dataset=dataset, standby_data_directory=source_facts["data_directory"],
                                      standby_system_identifier=source_facts["system_identifier"])
                if source_facts["system_identifier"] != facts["system_identifier"]:
                    raise NotAStandby("the standby is of another cluster",
                                      dataset=dataset, primary_system_identifier=facts["system_identifier"],
                                      standby_system_identifier=source_facts["system_identifier"])
            root = data_dir or source_facts["data_directory"]
            _check_readable(root, dataset)
            compared, full_reason = choose_compared(plan, run.store, dataset, backup_type, facts, root)
            actual_type = backup_type if compared else "full"
            label = f"drfleet {dataset} {run.backup_id}"
            start_lsn, = primary.execute("SELECT pg_backup_start(%s, true)::text", (label,)).fetchone()
            if standby is not None:
                _wait_replayed(standby, start_lsn, dataset)
                standby.execute("CHECKPOINT")  # a restartpoint: what the standby replayed is on disk
            writer = PieceWriter(run, workers)
            try:
                index = _copy_files(run, writer, root, compared, actual_type, facts)
                lsn, labelfile, spcmap = primary.execute(
                    "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(true)").fetchone()
                now_ns = time.time_ns()
                for name, content in (("backup_label", labelfile), ("tablespace_map", spcmap)):
                    if content:
                        data = content.encode()
                        index.entries.append(Entry(name, "file", 0o600, len(data), now_ns,
                                                   hashlib.sha256(data).hexdigest(), run.backup_id, writer.offset))
                        writer.write(data)
                index.entries.sort(key=lambda e: (e.path != ".", e.path))
                writer.finish()
            except BaseException:
                writer.abort()
                raise
        except BaseException:
            run.discard()
            if standby is not None:
                standby.close()
            raise
        if standby is not None:
            standby.close()
    try:
        run.seal(INDEX_OBJECT, io.BytesIO(index.to_bytes()), step="index")
        import re
        start = re.search(r"START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+)", labelfile)
        tli = re.search(r"START TIMELINE: (\d+)", labelfile)
        if not start or not tli:
            raise BaseBackupFailed("pg_backup_stop returned a backup_label without START WAL LOCATION / TIMELINE",
                                   dataset=dataset)
        start_lsn_i, stop_lsn_i, timeline = parse_lsn(start.group(1)), parse_lsn(lsn), int(tli.group(1))
        seg = facts["wal_segment_size"]
        position = {"start_lsn": format_lsn(start_lsn_i), "stop_lsn": format_lsn(stop_lsn_i), "timeline": timeline,
                    "start_wal": segment_of_lsn(start_lsn_i, timeline, seg).name,
                    "stop_wal": segment_of_lsn(max(stop_lsn_i - 1, start_lsn_i), timeline, seg).name,
                    "segment_size": seg, "index_object": INDEX_OBJECT}
        stored = sum(1 for e in index.entries if e.type == "file" and e.holder == run.backup_id)
        files = sum(1 for e in index.entries if e.type == "file")
        labels = {"type": "basebackup", "method": METHOD, "backup_type": actual_type, "label": label,
                  "piece_size": str(PIECE_SIZE), "files": str(files), "stored_files": str(stored),
                  "referenced_files": str(files - stored), "workers": str(writer.workers),
                  **({"from_standby": "true"} if standby_conn else {}),
                  **({"full_reason": full_reason} if backup_type != actual_type else {})}
        parents = compared.parents_for(actual_type) if compared else []
        run.commit(fingerprint={k: facts[k] for k in ("system_identifier", "server_version_num", "wal_segment_size")},
                   source_position=position, parents=parents, labels=labels,
                   tool_versions={"postgresql": str(facts["server_version_num"])})
    except BaseException:
        run.discard()
        raise
    seconds = time.monotonic() - started
    logger.info("%s base backup %s of %s: %d files, %d stored, %d bytes stored in %.1fs", actual_type,
                run.backup_id, dataset, files, stored, run.stored_size, seconds)
    return {**run.summary(seconds), "type": "basebackup", "method": METHOD, "backup_type": actual_type,
            "parents": parents, "files": files, "stored_files": stored, "referenced_files": files - stored,
            "stored_bytes_files": writer.offset, "workers": writer.workers, **position,
            **({"full_reason": full_reason} if backup_type != actual_type else {}),
            **({"from_standby": True} if standby_conn else {})}


def _check_readable(root: str, dataset: str) -> None:
    if not os.path.isfile(os.path.join(root, "PG_VERSION")) or not os.access(os.path.join(root, "global"), os.R_OK):
        raise PhysicalBackupRefused("the data directory is not readable here", dataset=dataset, data_directory=root)
    spc = os.path.join(root, "pg_tblspc")
    if os.path.isdir(spc) and os.listdir(spc):
        raise PhysicalBackupRefused("the cluster has tablespaces outside the data directory, which file-level "
                                    "base backups do not support yet", dataset=dataset,
                                    tablespaces=", ".join(sorted(os.listdir(spc))))


def _wait_replayed(standby, start_lsn: str, dataset: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done, = standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (start_lsn,)).fetchone()
        if done:
            return
        if time.monotonic() > deadline:
            raise NotAStandby("the standby did not replay to the backup's start in time", dataset=dataset,
                              start_lsn=start_lsn, seconds=int(timeout))
        time.sleep(0.1)


def _copy_files(run: BackupRun, writer: PieceWriter, root: str, compared: Compared | None,
                backup_type: str, facts: dict) -> PgIndex:
    previous = compared.index.files() if compared else {}
    racy_before = (compared.index.header["started_ns"] - RACY_NS) if compared else 0
    header = {"format": INDEX_FORMAT, "version": 1, "backup_type": backup_type,
              "system_identifier": facts["system_identifier"], "server_version_num": facts["server_version_num"],
              "data_directory": root, "piece_size": PIECE_SIZE, "started_ns": time.time_ns(),
              "compared_with": compared.manifest.backup_id if compared else None}
    index = PgIndex(header)
    for rel, st in walk(root):
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            index.entries.append(Entry(rel, "dir", mode, 0, st.st_mtime_ns))
            continue
        if stat.S_ISLNK(st.st_mode):
            index.entries.append(Entry(rel, "symlink", mode, 0, st.st_mtime_ns, os.readlink(os.path.join(root, rel))))
            continue
        old = previous.get(rel)
        if old is not None and old.size == st.st_size and old.mtime_ns == st.st_mtime_ns and old.mtime_ns < racy_before:
            index.entries.append(Entry(rel, "file", mode, old.size, old.mtime_ns, old.value, old.holder, old.offset))
            continue
        offset, sha = writer.offset, hashlib.sha256()
        try:
            handle = open(os.path.join(root, rel), "rb", buffering=0)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            continue  # dropped between lstat and open
        with handle:
            size = writer.read_file(handle, sha)
        index.entries.append(Entry(rel, "file", mode, size, st.st_mtime_ns, sha.hexdigest(), run.backup_id, offset))
    return index
