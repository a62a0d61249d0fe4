"""The WAL archive: ``push`` (archive_command), ``fetch`` (restore_command), listing.

Layout and record format: docs/format.md, "WAL archive". A file is archived exactly when
its record exists; the object is stored (and fsynced by the store) first, the record
last, with put-if-absent. So a push killed at any moment leaves either nothing visible
or the whole file, and PostgreSQL simply retries. Pushing a file that is already
archived with the same content succeeds without writing; different content under an
existing name raises WalConflict.

This module is on the archive_command's hot path: it imports only the plan loader, the
format and the stores (no Celery, no Redis).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

from drfleet import settings
from drfleet.backup_format.datakey import DataKey, unwrap_data_key, wrap_data_key
from drfleet.backup_format.envelope import decrypt_bytes, encrypt_bytes
from drfleet.backup_format.errors import WrongKey
from drfleet.backup_format.layout import check_dataset
from drfleet.backup_format.manifest import canonical_json, format_timestamp
from drfleet.datapath.locations import home_location, keyring_for, store_for
from drfleet.pitr.errors import NotAPostgresDataset, WalConflict, WalFileUnreadable, WalNotArchived, WalRecordInvalid
from drfleet.pitr.walnames import check_wal_name, timeline_of
from drfleet.plan.models import Plan
from drfleet.providers.storage import ObjectExists, ObjectNotFound, Store

RECORD_FORMAT = "drfleet-wal-record"
RECORD_VERSION = 1
DEFAULT_LEVEL = 1  # WAL compresses well at level 1; higher levels cost push time under load
_MAC_INFO = b"drfleet/v1/manifest-mac"
_UNSIGNED = ("mac", "keys")
MAX_RECORD_BYTES = 64 << 10  # a record is about 1 KiB; anything this large is not one


def wal_prefix(dataset: str) -> str:
    return f"datasets/{check_dataset(dataset)}/wal/"


def record_key(dataset: str, name: str) -> str:
    """``datasets/{dataset}/wal/{timeline}/{name lowercase}.json``."""
    check_wal_name(name)
    return f"{wal_prefix(dataset)}{name[:8].lower()}/{name.lower()}.json"


def object_key(dataset: str, name: str, object_name: str) -> str:
    return f"{wal_prefix(dataset)}{name[:8].lower()}/{object_name}"


def compression_level() -> int:
    return settings.WAL_ZSTD_LEVEL.get(default=DEFAULT_LEVEL)


@dataclass(frozen=True)
class WalRecord:
    """One archived WAL file's record (see docs/format.md)."""

    dataset: str
    name: str
    object: str
    plaintext_size: int
    plaintext_sha256: str
    stored_size: int
    stored_sha256: str
    level: int
    pushed_at: datetime
    keys: list[dict[str, str]] = field(default_factory=list)
    mac: str | None = None

    @property
    def timeline(self) -> int:
        return timeline_of(self.name)

    def _signed_doc(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "version": RECORD_VERSION, "dataset": self.dataset,
                "name": self.name, "timeline": self.timeline, "object": self.object,
                "plaintext_size": self.plaintext_size, "plaintext_sha256": self.plaintext_sha256,
                "stored_size": self.stored_size, "stored_sha256": self.stored_sha256,
                "compression": {"algorithm": "zstd", "level": self.level},
                "pushed_at": format_timestamp(self.pushed_at)}

    def compute_mac(self, data_key: DataKey) -> str:
        return hmac.new(data_key.derive(_MAC_INFO), canonical_json(self._signed_doc()),
                        hashlib.sha256).hexdigest()

    def to_bytes(self) -> bytes:
        return canonical_json({**self._signed_doc(), "keys": self.keys, "mac": self.mac}) + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> "WalRecord":
        """Parse a stored record; raises WalRecordInvalid (MAC not checked: ``verify``) for
        anything but a record, including one too large or nested too deeply to be one."""
        from drfleet.safe_load import DocumentRefused, load_json
        try:
            doc = load_json(data, source=source, max_bytes=MAX_RECORD_BYTES)
            if doc.get("format") != RECORD_FORMAT or doc.get("version") != RECORD_VERSION:
                raise ValueError(f"format {doc.get('format')!r} version {doc.get('version')!r}")
            record = cls(dataset=doc["dataset"], name=check_wal_name(doc["name"]), object=doc["object"],
                         plaintext_size=int(doc["plaintext_size"]), plaintext_sha256=doc["plaintext_sha256"],
                         stored_size=int(doc["stored_size"]), stored_sha256=doc["stored_sha256"],
                         level=int(doc["compression"]["level"]),
                         pushed_at=datetime.fromisoformat(doc["pushed_at"].replace("Z", "+00:00")),
                         keys=list(doc["keys"]), mac=doc["mac"])
        except (ValueError, KeyError, TypeError, AttributeError, WalFileUnreadable, DocumentRefused) as exc:
            raise WalRecordInvalid(f"unreadable WAL record ({exc})", record=source) from None
        if doc.get("timeline") != record.timeline:
            raise WalRecordInvalid("record's timeline does not match its file name", record=source)
        return record

    def verify(self, data_key: DataKey) -> None:
        if not self.mac or not hmac.compare_digest(self.mac, self.compute_mac(data_key)):
            raise WalRecordInvalid("WAL record fails its MAC (tampered, or not this data key's)",
                                   dataset=self.dataset, wal_file=self.name)


@dataclass(frozen=True)
class PushResult:
    name: str
    status: str  # "archived" | "already-archived"
    plaintext_size: int
    stored_size: int
    seconds: float


def _home_store(plan: Plan, dataset: str) -> Store:
    ds = plan.dataset(dataset)
    if ds.kind != "postgres":
        raise NotAPostgresDataset(f"dataset {dataset} is of kind {ds.kind}", dataset=dataset)
    return store_for(plan, home_location(plan, dataset))


def read_record(store: Store, dataset: str, name: str) -> WalRecord:
    """The record of ``name``; raises ObjectNotFound or WalRecordInvalid."""
    key = record_key(dataset, name)
    return WalRecord.from_bytes(store.get_bytes(key), source=f"{store.name}:{key}")


def push_wal(plan: Plan, dataset: str, path: str, *, store: Store | None = None) -> PushResult:
    """Archive the WAL file at ``path`` (the archive_command's %p) for ``dataset``.

    Returns once the file is durably stored (or was already, with the same content).
    Raises WalFileUnreadable (bad name or unreadable file), WalConflict (another file
    already archived under the name), keyring errors, and store errors (nothing visible).
    """
    started = time.monotonic()
    name = check_wal_name(os.path.basename(path))
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise WalFileUnreadable(f"cannot read WAL file: {exc.strerror}", dataset=dataset, path=path) from None
    sha = hashlib.sha256(data).hexdigest()
    store = store or _home_store(plan, dataset)
    existing = _existing(store, dataset, name, sha, len(data))
    if existing is not None:
        return PushResult(name, "already-archived", len(data), existing.stored_size, time.monotonic() - started)

    import zstandard
    level = compression_level()
    data_key = DataKey.generate()
    master = keyring_for(plan, plan.dataset(dataset).key).active
    object_name = f"{name.lower()}.{secrets.token_hex(4)}.zst.dfe"
    sealed = encrypt_bytes(data_key, object_name, zstandard.ZstdCompressor(level=level).compress(data))
    obj_key = object_key(dataset, name, object_name)
    store.put_bytes(obj_key, sealed)
    record = WalRecord(dataset=dataset, name=name, object=object_name, plaintext_size=len(data),
                       plaintext_sha256=sha, stored_size=len(sealed),
                       stored_sha256=hashlib.sha256(sealed).hexdigest(), level=level,
                       pushed_at=datetime.now(timezone.utc), keys=[wrap_data_key(data_key, master)])
    record = WalRecord(**{**record.__dict__, "mac": record.compute_mac(data_key)})
    try:
        store.put_bytes(record_key(dataset, name), record.to_bytes(), if_absent=True)
    except ObjectExists:
        winner = _existing(store, dataset, name, sha, len(data))  # WalConflict if different
        if winner is not None and winner.object == object_name:  # our own put, retried
            return PushResult(name, "archived", len(data), len(sealed), time.monotonic() - started)
        store.delete(obj_key)  # someone archived it first: ours is a leftover
        return PushResult(name, "already-archived", len(data), len(sealed), time.monotonic() - started)
    except BaseException:
        store.delete(obj_key)
        raise
    return PushResult(name, "archived", len(data), len(sealed), time.monotonic() - started)


def _existing(store: Store, dataset: str, name: str, sha: str, size: int) -> WalRecord | None:
    try:
        record = read_record(store, dataset, name)
    except ObjectNotFound:
        return None
    if record.plaintext_sha256 != sha or record.plaintext_size != size:
        raise WalConflict(f"a different {name} is already archived for {dataset}; refusing to overwrite it",
                          dataset=dataset, wal_file=name, store=store.name,
                          archived_sha256=record.plaintext_sha256, this_sha256=sha,
                          archived_at=format_timestamp(record.pushed_at))
    return record


def data_key_of(plan: Plan, record: WalRecord) -> DataKey:
    """Unwrap ``record``'s data key with the plan's keyrings and check its MAC."""
    error: Exception | None = None
    for category in dict.fromkeys(e.get("category") for e in record.keys):
        if category not in plan.keys:
            continue
        try:
            data_key = unwrap_data_key(record.keys, keyring_for(plan, category), backup_id=record.name)
        except WrongKey as exc:
            error = exc
            continue
        record.verify(data_key)
        return data_key
    if error:
        raise error
    raise WrongKey(",".join(sorted({str(e.get("category")) for e in record.keys})),
                   [str(e.get("key_id")) for e in record.keys], [], backup_id=record.name)


def read_wal(plan: Plan, dataset: str, name: str, *, store: Store | None = None) -> bytes:
    """The archived content of WAL file ``name``, every check passed.

    Raises WalNotArchived, WalRecordInvalid (bad record or MAC), WrongKey, envelope errors,
    and WalRecordInvalid when the object's or the plaintext's size/SHA-256 differ.
    """
    import zstandard
    check_wal_name(name)
    store = store or _home_store(plan, dataset)
    try:
        record = read_record(store, dataset, name)
    except ObjectNotFound:
        raise WalNotArchived(f"{name} is not archived for {dataset}", dataset=dataset, wal_file=name,
                             store=store.name) from None
    data_key = data_key_of(plan, record)
    key = object_key(dataset, name, record.object)
    try:
        sealed = store.get_bytes(key)
    except ObjectNotFound:
        raise WalRecordInvalid("the record names an object that is missing", dataset=dataset,
                               wal_file=name, object=key) from None
    if len(sealed) != record.stored_size or hashlib.sha256(sealed).hexdigest() != record.stored_sha256:
        raise WalRecordInvalid("archived object does not match its record's size/SHA-256",
                               dataset=dataset, wal_file=name, object=key)
    data = zstandard.ZstdDecompressor().decompress(decrypt_bytes(data_key, record.object, sealed),
                                                   max_output_size=max(record.plaintext_size, 1))
    if len(data) != record.plaintext_size or hashlib.sha256(data).hexdigest() != record.plaintext_sha256:
        raise WalRecordInvalid("restored WAL does not match its record's size/SHA-256",
                               dataset=dataset, wal_file=name)
    return data


def fetch_wal(plan: Plan, dataset: str, name: str, destination: str, *, store: Store | None = None) -> int:
    """Write archived ``name`` to ``destination`` (the restore_command's %f and %p) via a
    temporary file in the same directory, fsynced and renamed. Returns its size.
    Raises what ``read_wal`` raises (WalNotArchived when absent)."""
    data = read_wal(plan, dataset, name, store=store)
    directory = os.path.dirname(os.path.abspath(destination))
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".drfleet-fetch-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, destination)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    return len(data)


def list_records(store: Store, dataset: str) -> Iterator[tuple[str, int]]:
    """(WAL file name in PostgreSQL's spelling, record size) of every record, by key."""
    for info in store.list(wal_prefix(dataset)):
        base = info.key.rsplit("/", 1)[-1]
        if base.endswith(".json"):
            name = base[: -len(".json")]
            upper = name.upper().replace(".HISTORY", ".history").replace(".BACKUP", ".backup") \
                .replace(".PARTIAL", ".partial")
            yield upper, info.size


def list_objects(store: Store, dataset: str) -> Iterator[str]:
    """Keys of every sealed object in the WAL archive of ``dataset``."""
    for info in store.list(wal_prefix(dataset)):
        if info.key.endswith(".zst.dfe"):
            yield info.key
