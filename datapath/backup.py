"""Taking one backup: source -> zstd -> envelope -> the home region's store, objects
first, manifest last. Copies to the policy's other locations follow (datapath.copy).

A backup is visible only once its manifest is written. Any failure before that — the
producer exiting non-zero (even after writing data), a store error, a full disk, a kill —
aborts the object being written and deletes the objects already stored, so nothing
half-written remains visible.

Files datasets take their own route (``datapath.incremental``: a tar of what changed
plus a file index, full or incremental); both routes share ``BackupRun``.
"""

from __future__ import annotations

import logging
from typing import Callable

from drfleet.datapath.backup_run import OBJECT_NAME, BackupRun, close_quietly
from drfleet.datapath.incremental import back_up_tree
from drfleet.datapath.sources import source_for
from drfleet.plan.models import Plan

logger = logging.getLogger("drfleet.backup")

def run_backup(plan: Plan, dataset: str, policy: str, *, region: str, slot: str | None = None,
               task_id: str | None = None, progress: Callable[[dict], None] | None = None,
               location: str | None = None) -> dict:
    """Back ``dataset`` up under ``policy`` into its home store (or ``location``).

    Returns a summary (backup id, location, sizes, seconds; for files also the mode and
    entry counts). Raises WrongRegion when ``region`` is not the dataset's home, the data
    source's errors (SourceToolFailed with the tool's stderr tail), keyring errors, store
    errors, and for remote trees the staging errors of ``datapath.remote_trees``; in every
    failure case no manifest is written and the objects are removed.
    """
    if plan.dataset(dataset).kind == "files":
        return back_up_tree(plan, dataset, policy, region=region, slot=slot, task_id=task_id,
                            progress=progress, location=location)
    run = BackupRun(plan, dataset, policy, region=region, slot=slot, task_id=task_id,
                    progress=progress, location=location)
    module, conn, options = source_for(plan, dataset)
    producer = module.dump(conn, options)
    try:
        stats = run.seal(OBJECT_NAME, producer, sole=True)
    except BaseException:
        producer.kill()
        close_quietly(producer)
        raise
    try:
        producer.close()  # raises SourceToolFailed if the dump failed, even after output
    except BaseException:
        run.discard()
        raise
    try:
        # A source that fingerprints inside the dump's own snapshot exposes it on the producer.
        fingerprint = getattr(producer, "fingerprint", None) or module.fingerprint(conn, options)
    except BaseException:
        run.discard()
        raise
    run.commit(fingerprint=fingerprint, source_position=dict(getattr(producer, "position", None) or {}),
               tool_versions=module.tool_versions())
    logger.info("backup %s of %s/%s committed to %s: %d bytes -> %d stored in %.1fs",
                run.backup_id, dataset, policy, run.location, run.plaintext_size, run.stored_size,
                stats.seconds)
    return run.summary(stats.seconds)
