"""One backup being written (``BackupRun``), shared by the two routes a backup takes:
``datapath.backup`` (a data source's dump, one object) and ``datapath.incremental``
(a files tree: a tar of what changed plus a file index). Objects first, manifest last;
``discard`` removes what was stored after a failure."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from typing import BinaryIO, Callable

from drfleet import settings
from drfleet.backup_format.datakey import DataKey, wrap_data_key
from drfleet.backup_format.envelope import ObjectSealer
from drfleet.backup_format.layout import manifest_key, new_backup_id, object_key
from drfleet.backup_format.manifest import Compression, Manifest, ObjectEntry
from drfleet.datapath.errors import WrongRegion
from drfleet.datapath.locations import home_location, keyring_for, store_for
from drfleet.datapath.streams import DEFAULT_LEVEL, DEFAULT_THREADS, StreamStats, seal_stream
from drfleet.plan.models import Plan
from drfleet.statuses import JobStatus

logger = logging.getLogger("drfleet.backup")

OBJECT_NAME = "data-0000.zst.dfe"


def compression_level() -> int:
    return settings.ZSTD_LEVEL.get(default=DEFAULT_LEVEL)


class BackupRun:
    """One backup being written: its id, data key and store; objects sealed so far, and
    the running size and SHA-256 of the whole dump stream (all objects' plaintext in
    order). ``seal`` stores an object, ``commit`` writes the manifest, ``discard``
    removes what was stored (best effort) after a failure."""

    def __init__(self, plan: Plan, dataset: str, policy: str, *, region: str, slot: str | None,
                 task_id: str | None, progress: Callable[[dict], None] | None,
                 location: str | None) -> None:
        ds = plan.dataset(dataset)
        plan.policy(dataset, policy)
        if ds.region != region:
            raise WrongRegion(f"dataset {dataset} lives in {ds.region}, not {region}", dataset=dataset)
        self.plan, self.dataset, self.policy, self.region = plan, dataset, policy, region
        self.slot, self.task_id, self.progress = slot, task_id, progress
        self.kind = ds.kind
        self.master = keyring_for(plan, ds.key).active
        self.data_key = DataKey.generate()
        self.started = datetime.now(timezone.utc)
        self.backup_id = new_backup_id(self.started)
        self.location = location or home_location(plan, dataset)
        self.store = store_for(plan, self.location)
        self.level = compression_level()
        self.objects: list[ObjectEntry] = []
        self.plaintext_size = 0
        self.stored_size = 0
        self._plaintext_sha = hashlib.sha256()
        self._written: list[str] = []
        self._sole_sha256: str | None = None

    def report(self, step: str, done: int, seconds: float = 0.0) -> None:
        if self.progress:
            self.progress({"dataset": self.dataset, "backup_id": self.backup_id, "bytes": done,
                           "rate_bytes_per_second": int(done / seconds) if seconds else 0,
                           "step": step})

    def seal(self, name: str, source: BinaryIO, *, step: str = "dump", sole: bool = False) -> StreamStats:
        """Compress, seal and store ``source`` (read to its end) as object ``name``.
        ``sole``: the backup's only object (its plaintext hash is the stream's; no second
        hash pass). Raises what reading or the store raised; the object is then aborted."""
        key = object_key(self.dataset, self.backup_id, name)
        with self.store.writer(key) as writer:
            stats = seal_stream(source if sole else _Hashing(source, self), writer.write,
                                ObjectSealer(self.data_key, name), level=self.level,
                                threads=DEFAULT_THREADS,
                                progress=lambda done, seconds: self.report(step, done, seconds))
            writer.commit()
        self._written.append(key)
        self.objects.append(ObjectEntry(name=name, size=stats.stored_size, sha256=stats.stored_sha256,
                                        plaintext_size=stats.compressed_size))
        self.stored_size += stats.stored_size
        if sole:
            self.plaintext_size, self._sole_sha256 = stats.plaintext_size, stats.plaintext_sha256
        return stats

    def commit(self, *, fingerprint: dict, source_position: dict, tool_versions: dict[str, str],
               parents: list[str] | None = None, labels: dict[str, str] | None = None) -> Manifest:
        """Write the manifest (the commit point); on failure remove the objects and raise."""
        try:
            manifest = Manifest(
                backup_id=self.backup_id, dataset=self.dataset, kind=self.kind, policy=self.policy,
                region=self.region, slot=self.slot, created_at=self.started, started_at=self.started,
                finished_at=datetime.now(timezone.utc), source_position=source_position,
                plaintext_size=self.plaintext_size,
                plaintext_sha256=self._sole_sha256 or self._plaintext_sha.hexdigest(),
                compression=Compression(algorithm="zstd", level=self.level), objects=self.objects,
                keys=[wrap_data_key(self.data_key, self.master)], fingerprint=fingerprint,
                parents=list(parents or []), tool_versions={**tool_versions, "drfleet": "0.1.0"},
                labels={**({"task_id": self.task_id} if self.task_id else {}), **(labels or {})},
            ).sign(self.data_key)
            self.store.put_bytes(manifest_key(self.dataset, self.backup_id), manifest.to_bytes(),
                                 if_absent=True)
        except BaseException:
            self.discard()  # objects without a manifest are not a backup; do not leave them
            raise
        self.report("committed", self.plaintext_size)
        return manifest

    def discard(self) -> None:
        for key in self._written:
            try:
                self.store.delete(key)
            except Exception:  # noqa: BLE001 - garbage collection removes what remains
                logger.warning("could not delete %s of an uncommitted backup", key)
        self._written.clear()

    def summary(self, seconds: float) -> dict:
        return {"status": JobStatus.COMMITTED, "backup_id": self.backup_id, "dataset": self.dataset,
                "policy": self.policy, "location": self.location, "slot": self.slot,
                "plaintext_size": self.plaintext_size, "stored_size": self.stored_size,
                "seconds": round(seconds, 3)}


class _Hashing:
    """Reads through ``source``, adding what passes to the run's dump-stream size and hash."""

    def __init__(self, source: BinaryIO, run: BackupRun) -> None:
        self.source, self.run = source, run

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.run._plaintext_sha.update(data)
        self.run.plaintext_size += len(data)
        return data


def close_quietly(producer) -> None:
    try:
        producer.close()
    except Exception:  # noqa: BLE001 - the first error is the one reported
        pass
