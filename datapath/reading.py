"""Reading a backup back: unwrap its data key, check the manifest's MAC, then stream every
object in order through the envelope opener and zstd, checking each object's stored size
and SHA-256 and, at the end, the plaintext's."""

from __future__ import annotations

from typing import Iterator

from backup_format.datakey import DataKey, unwrap_data_key
from backup_format.envelope import ObjectOpener
from backup_format.errors import WrongKey
from backup_format.layout import object_key
from backup_format.manifest import Manifest
from datapath.errors import IntegrityError
from datapath.locations import keyring_for
from datapath.streams import ChunksReader, HashingReader, decompressing_reader
from plan.models import Plan
from providers.storage import Store


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


class BackupReader:
    """A readable of a backup's plaintext. Read it to the end, then call ``finish()``,
    which raises IntegrityError if the plaintext's size or SHA-256 differ from the
    manifest. Envelope errors (corrupt, truncated, trailing data) and per-object hash
    mismatches are raised while reading, naming the object."""

    def __init__(self, store: Store, manifest: Manifest, data_key: DataKey) -> None:
        self.store, self.manifest, self.data_key = store, manifest, data_key
        self.stream = HashingReader(decompressing_reader(ChunksReader(self._chunks())))

    def _chunks(self) -> Iterator[bytes]:
        m = self.manifest
        for obj in m.objects:
            key = object_key(m.dataset, m.backup_id, obj.name)
            with self.store.open(key) as raw:
                stored = HashingReader(raw)
                yield from ObjectOpener(self.data_key, obj.name).read_stream(stored, expected_size=obj.size)
                rest = stored.read(1)
                if rest:
                    raise IntegrityError("object is longer than the manifest says", object=key,
                                         backup_id=m.backup_id, store=self.store.name)
            if stored.size != obj.size or stored.sha.hexdigest() != obj.sha256:
                raise IntegrityError("object does not match its manifest hash", object=key,
                                     backup_id=m.backup_id, store=self.store.name,
                                     expected_sha256=obj.sha256, actual_sha256=stored.sha.hexdigest())

    def read(self, n: int = -1) -> bytes:
        return self.stream.read(n)

    def readinto(self, buf) -> int:
        return self.stream.readinto(buf)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.stream.read(1 << 20):
            pass

    def finish(self) -> None:
        self.drain()
        m = self.manifest
        if self.stream.size != m.plaintext_size or self.stream.sha.hexdigest() != m.plaintext_sha256:
            raise IntegrityError("restored data does not match the manifest", backup_id=m.backup_id,
                                 dataset=m.dataset, expected_size=m.plaintext_size, actual_size=self.stream.size)
