"""Reading a backup back: unwrap its data key, check the manifest's MAC, then stream every
object in order through the envelope opener and zstd, checking each object's stored size
and SHA-256 and, at the end, the plaintext's."""

from __future__ import annotations

import contextvars
import io
from collections.abc import Callable, Iterator
from typing import BinaryIO

from drfleet.backup_format.datakey import DataKey, unwrap_data_key
from drfleet.backup_format.envelope import ObjectOpener
from drfleet.backup_format.errors import WrongKey
from drfleet.backup_format.layout import object_key
from drfleet.backup_format.manifest import Manifest, ObjectEntry
from drfleet.datapath.errors import IntegrityError
from drfleet.datapath.locations import keyring_for
from drfleet.datapath.streams import ChunksReader, HashingReader, decompressing_reader
from drfleet.plan.models import Plan
from drfleet.providers.storage import Store


def data_key_for(plan: Plan, manifest: Manifest) -> DataKey:
    """Unwrap the backup's data key with any keyring of the plan that holds one of its
    master keys, and check the manifest MAC. Raises WrongKey (naming key ids) or
    ManifestTampered."""
    categories = []
    for entry in manifest.keys:
        if entry.get("category") in plan.keys and entry["category"] not in categories:
            categories.append(entry["category"])
    error: Exception | None = None
    for category in categories:
        try:
            data_key = unwrap_data_key(manifest.keys, keyring_for(plan, category), backup_id=manifest.backup_id)
        except WrongKey as exc:
            error = exc
            continue
        manifest.verify_mac(data_key)
        return data_key
    if error:
        raise error
    raise WrongKey(",".join(sorted({e.get("category", "?") for e in manifest.keys})),
                   [e.get("key_id", "?") for e in manifest.keys], [], backup_id=manifest.backup_id)


def object_chunks(store: Store, manifest: Manifest, data_key: DataKey, obj: ObjectEntry) -> Iterator[bytes]:
    """The authenticated plaintext chunks (zstd bytes) of one object of ``manifest``.
    Raises envelope errors while reading and IntegrityError at the end when the stored
    object's size or SHA-256 differ from the manifest's."""
    m = manifest
    key = object_key(m.dataset, m.backup_id, obj.name)
    with store.open(key) as raw:
        stored = HashingReader(raw)
        yield from ObjectOpener(data_key, obj.name).read_stream(stored, expected_size=obj.size)
        rest = stored.read(1)
        if rest:
            raise IntegrityError("object is longer than the manifest says", object=key,
                                 backup_id=m.backup_id, store=store.name)
    if stored.size != obj.size or stored.sha.hexdigest() != obj.sha256:
        raise IntegrityError("object does not match its manifest hash", object=key,
                             backup_id=m.backup_id, store=store.name,
                             expected_sha256=obj.sha256, actual_sha256=stored.sha.hexdigest())


def open_object(store: Store, manifest: Manifest, data_key: DataKey, name: str) -> BinaryIO:
    """A buffered readable (lines iterate) of the decompressed plaintext of the one object
    ``name`` of ``manifest``, whose MAC ``data_key_for`` has checked. Read it to its end:
    the object's size and SHA-256 are checked there (IntegrityError); envelope errors
    are raised while reading. Raises KeyError when the manifest has no such object."""
    entry = next((o for o in manifest.objects if o.name == name), None)
    if entry is None:
        raise KeyError(f"backup {manifest.backup_id} has no object {name}")
    raw = decompressing_reader(ChunksReader(object_chunks(store, manifest, data_key, entry)))
    return io.BufferedReader(raw, buffer_size=1 << 20)


# Set by a task that wants to show progress (restore, verify): called as
# ``report(backup_id, plaintext_bytes_read, plaintext_size)`` after every read of a
# BackupReader in this context; it must be cheap (throttle there).
read_progress: contextvars.ContextVar[Callable[[str, int, int], None] | None] = contextvars.ContextVar(
    "drfleet_read_progress", default=None)


class BackupReader:
    """A readable of a backup's plaintext. The read that reaches the end raises
    IntegrityError if the plaintext's size or SHA-256 differ from the manifest, so a
    consumer that spools the stream (pg_restore) never starts on data that fails its
    hash; ``finish()`` reads to the end and makes the same check. Envelope errors (corrupt,
    truncated, trailing data) and per-object hash mismatches are raised while reading,
    naming the object."""

    def __init__(self, store: Store, manifest: Manifest, data_key: DataKey) -> None:
        self.store, self.manifest, self.data_key = store, manifest, data_key
        self.stream = HashingReader(decompressing_reader(ChunksReader(self._chunks())))
        self._checked = False

    def _chunks(self) -> Iterator[bytes]:
        for obj in self.manifest.objects:
            yield from object_chunks(self.store, self.manifest, self.data_key, obj)

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self._report()
        if not data and n != 0:
            self._check()
        return data

    def readinto(self, buf) -> int:
        n = self.stream.readinto(buf)
        self._report()
        if not n and len(buf):
            self._check()
        return n

    def _report(self) -> None:
        report = read_progress.get()
        if report is not None:
            report(self.manifest.backup_id, self.stream.size, self.manifest.plaintext_size)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def finish(self) -> None:
        self.drain()
        self._check()

    def _check(self) -> None:
        if self._checked:
            return
        m = self.manifest
        if self.stream.size != m.plaintext_size or self.stream.sha.hexdigest() != m.plaintext_sha256:
            raise IntegrityError("restored data does not match the manifest", backup_id=m.backup_id,
                                 dataset=m.dataset, expected_size=m.plaintext_size, actual_size=self.stream.size)
        self._checked = True
