"""Taking one backup: source -> zstd -> envelope -> the home region's store, objects
first, manifest last. Copies to the policy's other locations follow (datapath.copy).

A backup is visible only once its manifest is written. Any failure before that — the
producer exiting non-zero (even after writing data), a store error, a full disk, a kill —
aborts the object writer, so nothing half-written remains visible.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from typing import Callable

from backup_format.datakey import DataKey, wrap_data_key
from backup_format.envelope import ObjectSealer
from backup_format.layout import manifest_key, new_backup_id, object_key
from backup_format.manifest import Compression, Manifest, ObjectEntry
from datapath.errors import WrongRegion
from datapath.locations import home_location, keyring_for, store_for
from datapath.sources import source_for
from datapath.streams import DEFAULT_LEVEL, DEFAULT_THREADS, seal_stream
from plan.models import Plan

logger = logging.getLogger("drfleet.backup")

OBJECT_NAME = "data-0000.zst.dfe"


def compression_level() -> int:
    return int(os.environ.get("DRFLEET_ZSTD_LEVEL", DEFAULT_LEVEL))


def run_backup(plan: Plan, dataset: str, policy: str, *, region: str, slot: str | None = None,
               task_id: str | None = None, progress: Callable[[dict], None] | None = None,
               location: str | None = None) -> dict:
    """Back ``dataset`` up under ``policy`` into its home store (or ``location``).

    Returns a summary (backup id, location, sizes, seconds). Raises WrongRegion when
    ``region`` is not the dataset's home, the data source's errors (SourceToolFailed with
    the tool's stderr tail), keyring errors, and store errors; in every failure case no
    manifest is written and the partial object is removed.
    """
    ds = plan.dataset(dataset)
    plan.policy(dataset, policy)
    if ds.region != region:
        raise WrongRegion(f"dataset {dataset} lives in {ds.region}, not {region}", dataset=dataset)
    module, conn, options = source_for(plan, dataset)
    master = keyring_for(plan, ds.key).active
    data_key = DataKey.generate()
    started = datetime.now(timezone.utc)
    backup_id = new_backup_id(started)
    location = location or home_location(plan, dataset)
    store = store_for(plan, location)
    level = compression_level()

    def report(done: int, seconds: float) -> None:
        if progress:
            progress({"dataset": dataset, "backup_id": backup_id, "bytes": done,
                      "rate_bytes_per_second": int(done / seconds) if seconds else 0, "step": "dump"})

    obj_key = object_key(dataset, backup_id, OBJECT_NAME)
    with store.writer(obj_key) as writer:
        producer = module.dump(conn, options)
        try:
            stats = seal_stream(producer, writer.write, ObjectSealer(data_key, OBJECT_NAME),
                                level=level, threads=DEFAULT_THREADS, progress=report)
        except BaseException:
            producer.kill()
            _close_quietly(producer)
            raise
        producer.close()  # raises SourceToolFailed if the dump failed, even after output
        writer.commit()
    try:
        fingerprint = module.fingerprint(conn, options)
        manifest = Manifest(
            backup_id=backup_id, dataset=dataset, kind=ds.kind, policy=policy, region=region,
            slot=slot, created_at=started, started_at=started, finished_at=datetime.now(timezone.utc),
            source_position=dict(getattr(producer, "position", None) or {}),
            plaintext_size=stats.plaintext_size, plaintext_sha256=stats.plaintext_sha256,
            compression=Compression(algorithm="zstd", level=level),
            objects=[ObjectEntry(name=OBJECT_NAME, size=stats.stored_size, sha256=stats.stored_sha256,
                                 plaintext_size=stats.compressed_size)],
            keys=[wrap_data_key(data_key, master)], fingerprint=fingerprint, parents=[],
            tool_versions={**module.tool_versions(), "drfleet": "0.1.0"},
            labels={"task_id": task_id} if task_id else {},
        ).sign(data_key)
        store.put_bytes(manifest_key(dataset, backup_id), manifest.to_bytes(), if_absent=True)
    except BaseException:
        store.delete(obj_key)  # an object without a manifest is not a backup; do not leave it
        raise
    logger.info("backup %s of %s/%s committed to %s: %d bytes -> %d stored in %.1fs",
                backup_id, dataset, policy, location, stats.plaintext_size, stats.stored_size, stats.seconds)
    if progress:
        progress({"dataset": dataset, "backup_id": backup_id, "bytes": stats.plaintext_size,
                  "step": "committed"})
    return {"status": "committed", "backup_id": backup_id, "dataset": dataset, "policy": policy,
            "location": location, "slot": slot, "plaintext_size": stats.plaintext_size,
            "stored_size": stats.stored_size, "seconds": round(stats.seconds, 3)}


def _close_quietly(producer) -> None:
    try:
        producer.close()
    except Exception:  # noqa: BLE001 - the first error is the one reported
        pass
