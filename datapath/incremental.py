"""Files backups, full and incremental (docs/format.md, "Incremental file backups").

Every files backup stores two objects: the tar of what it holds (``data-0000``) and the
file index of the whole tree (``index-0000``). A full holds every entry. An incremental
(policy ``mode: incremental``) reads its parent's index back from the store -- the newest
backup of the dataset there that has one -- and holds only what is new or changed; its
manifest's ``parents`` names the chain, full first. No state is kept on the worker, so a
worker that moves hosts continues the chain.

An unchanged tree still commits a backup (an empty archive plus the index): the slot is
accounted for, and the walk is cheap (one lstat per entry, no file read).

When an incremental has no usable parent (none in the store, one without an index, one
whose tree root or excludes differ, one this worker cannot open, or a chain already
MAX_CHAIN links long) it is taken as a full and labelled ``full_reason``; a backup is
never refused for lack of a parent.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Callable

from drfleet.backup_format.layout import manifests_prefix, parse_manifest_key
from drfleet.backup_format.manifest import Manifest
from drfleet.datapath.backup_run import OBJECT_NAME, BackupRun, close_quietly
from drfleet.datapath.catalog import read_manifest
from drfleet.datapath.reading import data_key_for, open_object
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.providers.datasources import files
from drfleet.providers.datasources.support.files_index import FileIndex
from drfleet.providers.storage import Store

logger = logging.getLogger("drfleet.incremental")

INDEX_OBJECT = "index-0000.zst.dfe"
MAX_CHAIN = 100  # links (full included) an incremental may need; beyond, take a full


@dataclass
class Parent:
    manifest: Manifest
    index: FileIndex

    @property
    def chain(self) -> list[str]:
        """``parents`` of a backup taken on top of this one."""
        return [*self.manifest.parents, self.manifest.backup_id]


def has_index(manifest: Manifest) -> bool:
    return any(o.name == INDEX_OBJECT for o in manifest.objects)


def read_index(plan: Plan, store: Store, manifest: Manifest, data_key=None) -> FileIndex:
    """The file index of files backup ``manifest`` in ``store`` (MAC, object hash and
    envelope checked). Raises KeyError without one, IndexInvalid, IntegrityError, WrongKey."""
    data_key = data_key or data_key_for(plan, manifest)
    with open_object(store, manifest, data_key, INDEX_OBJECT) as stream:
        index = FileIndex.parse(stream, source=f"{store.name}:{manifest.dataset}/{manifest.backup_id}")
        stream.read()  # to the end: the object's hash is checked there
    return index


def newest_manifest(plan: Plan, store: Store, dataset: str) -> Manifest | None:
    """The newest readable manifest of ``dataset`` in ``store`` (by start time: backup ids
    sort by the second, ``started_at`` orders backups started in the same second)."""
    ids = sorted((parse_manifest_key(info.key)[1] for info in store.list(manifests_prefix(dataset))),
                 reverse=True)
    for second, group in itertools.groupby(ids, key=lambda backup_id: backup_id.split("-")[0]):
        readable = []
        for backup_id in group:
            try:
                readable.append(read_manifest(store, dataset, backup_id))
            except DrfleetError as exc:
                logger.warning("skipping unreadable manifest %s/%s: %s", dataset, backup_id, exc.message)
        if readable:
            return max(readable, key=lambda m: (m.started_at, m.created_at, m.backup_id))
    return None


def choose_parent(plan: Plan, store: Store, dataset: str, root_id: str,
                  exclude: tuple[str, ...]) -> tuple[Parent | None, str]:
    """The parent of an incremental of ``dataset`` in ``store``, or (None, why not)."""
    manifest = newest_manifest(plan, store, dataset)
    if manifest is None:
        return None, "no earlier backup of the dataset in this store"
    backup_id = manifest.backup_id
    if manifest.kind != "files" or not has_index(manifest):
        return None, f"the newest backup {backup_id} has no file index"
    if len(manifest.parents) + 2 > MAX_CHAIN:
        return None, f"the chain would exceed {MAX_CHAIN} backups"
    try:
        index = read_index(plan, store, manifest)
    except DrfleetError as exc:
        return None, f"the index of {backup_id} cannot be read: {exc.message}"
    if index.header.get("root") != root_id or tuple(index.header.get("exclude", ())) != exclude:
        return None, f"the tree root or excludes changed since {backup_id}"
    return Parent(manifest, index), ""


def back_up_tree(plan: Plan, dataset: str, policy: str, *, region: str, slot: str | None = None,
                 task_id: str | None = None, progress: Callable[[dict], None] | None = None,
                 location: str | None = None) -> dict:
    """Back files dataset ``dataset`` up (full, or incremental when the policy says so).

    Returns the summary of ``run_backup`` plus ``mode``, ``parents``, ``entries``,
    ``stored_entries``, ``deleted_entries``. Raises as ``run_backup``; a remote tree's
    staging errors (``remote_trees``) happen before anything is stored.
    """
    from drfleet.datapath.remote_trees import staged_tree  # SSH only when a tree is backed up

    started = time.monotonic()
    run = BackupRun(plan, dataset, policy, region=region, slot=slot, task_id=task_id,
                    progress=progress, location=location)
    wants_incremental = plan.policy(dataset, policy).mode == "incremental"
    with staged_tree(plan, dataset) as tree:
        parent, full_reason = (choose_parent(plan, run.store, dataset, tree.root_id, tree.exclude)
                               if wants_incremental else (None, ""))
        producer = files.dump_tree(tree.path, {"exclude": list(tree.exclude)},
                                   previous=parent.index if parent else None, root_id=tree.root_id,
                                   quiescent=tree.quiescent)
        try:
            _store_objects(run, producer)
        finally:
            producer.scan.index.close()
    scan = producer.scan
    labels = {"mode": "incremental" if parent else "full", "entries": str(scan.entries),
              "stored_entries": str(scan.stored), "deleted_entries": str(scan.deleted)}
    if wants_incremental and not parent:
        labels["full_reason"] = full_reason
    position = {"root": tree.root_id, "index_object": INDEX_OBJECT,
                "scan_started_ns": scan.index.header["scan_started_ns"]}
    parents = parent.chain if parent else []
    run.commit(fingerprint=scan.fingerprint, source_position=position, parents=parents,
               tool_versions=files.tool_versions(), labels=labels)
    seconds = time.monotonic() - started
    logger.info("%s backup %s of %s/%s committed to %s: %d entries, %d stored, %d deleted, "
                "%d bytes stored in %.1fs", labels["mode"], run.backup_id, dataset, policy,
                run.location, scan.entries, scan.stored, scan.deleted, run.stored_size, seconds)
    return {**run.summary(seconds), "mode": labels["mode"], "parents": parents,
            "entries": scan.entries, "stored_entries": scan.stored, "deleted_entries": scan.deleted,
            **({"full_reason": full_reason} if wants_incremental and not parent else {})}


def _store_objects(run: BackupRun, producer) -> None:
    """Seal the archive, then the index; on any failure remove what was stored."""
    try:
        run.seal(OBJECT_NAME, producer)
    except BaseException:
        producer.kill()
        close_quietly(producer)
        run.discard()
        raise
    try:
        producer.close()  # raises FileUnreadable / SourceToolFailed even after output
        with producer.scan.index.document() as document:
            run.seal(INDEX_OBJECT, document, step="index")
    except BaseException:
        run.discard()
        raise
