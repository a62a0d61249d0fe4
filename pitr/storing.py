"""Committing a stream as a backup of the format (objects first, manifest last), for the
streams PITR produces: base backup tars and oplog slices. Same rules as
``datapath.backup.run_backup``: any failure before the manifest is written removes the
object, so nothing half-written is visible."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, BinaryIO, Callable

from drfleet.backup_format.datakey import DataKey, wrap_data_key
from drfleet.backup_format.envelope import ObjectSealer
from drfleet.backup_format.layout import manifest_key, new_backup_id, object_key
from drfleet.backup_format.manifest import Compression, Manifest, ObjectEntry
from drfleet.datapath.locations import home_location, keyring_for, store_for
from drfleet.datapath.streams import DEFAULT_THREADS, seal_stream
from drfleet.plan.models import Plan

logger = logging.getLogger("drfleet.pitr")

OBJECT_NAME = "data-0000.zst.dfe"


@dataclass
class Description:
    """What the manifest says besides sizes and hashes; ``finish`` may fill it in after the
    stream ended (a base backup's stop LSN is known only then)."""

    kind: str
    policy: str
    labels: dict[str, str] = field(default_factory=dict)
    source_position: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)
    tool_versions: dict[str, str] = field(default_factory=dict)


def commit_stream(plan: Plan, dataset: str, stream: BinaryIO, description: Description, *,
                  region: str, slot: str | None = None, level: int = 3, location: str | None = None,
                  finish: Callable[[Description], None] | None = None,
                  abort: Callable[[], None] | None = None) -> Manifest:
    """Seal ``stream`` into one object of a new backup of ``dataset`` and commit its manifest.

    ``finish(description)`` runs after the stream is read to its end and before the
    manifest is written (it may raise to refuse the backup, e.g. the producer failed);
    ``abort()`` runs when sealing fails. Returns the committed manifest. Raises keyring and
    store errors, and whatever ``finish`` raises; then no manifest exists and the object
    is removed.
    """
    ds = plan.dataset(dataset)
    master = keyring_for(plan, ds.key).active
    data_key = DataKey.generate()
    started = datetime.now(timezone.utc)
    backup_id = new_backup_id(started)
    location = location or home_location(plan, dataset)
    store = store_for(plan, location)
    obj_key = object_key(dataset, backup_id, OBJECT_NAME)
    with store.writer(obj_key) as writer:
        try:
            stats = seal_stream(stream, writer.write, ObjectSealer(data_key, OBJECT_NAME),
                                level=level, threads=DEFAULT_THREADS)
        except BaseException:
            if abort:
                abort()
            raise
        if finish:
            finish(description)
        writer.commit()
    try:
        manifest = Manifest(
            backup_id=backup_id, dataset=dataset, kind=description.kind, policy=description.policy,
            region=region, slot=slot, created_at=started, started_at=started,
            finished_at=datetime.now(timezone.utc), source_position=description.source_position,
            plaintext_size=stats.plaintext_size, plaintext_sha256=stats.plaintext_sha256,
            compression=Compression(algorithm="zstd", level=level),
            objects=[ObjectEntry(name=OBJECT_NAME, size=stats.stored_size, sha256=stats.stored_sha256,
                                 plaintext_size=stats.compressed_size)],
            keys=[wrap_data_key(data_key, master)], fingerprint=description.fingerprint,
            parents=description.parents,
            tool_versions={**description.tool_versions, "drfleet": "0.1.0"}, labels=description.labels,
        ).sign(data_key)
        store.put_bytes(manifest_key(dataset, backup_id), manifest.to_bytes(), if_absent=True)
    except BaseException:
        store.delete(obj_key)
        raise
    logger.info("%s %s of %s committed to %s: %d bytes -> %d stored", description.labels.get("type", "backup"),
                backup_id, dataset, location, stats.plaintext_size, stats.stored_size)
    return manifest
