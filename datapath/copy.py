"""Copying a committed backup to another storage location: other regions' stores, offsite
stores (with their own key category) and cold storage.

A copy is committed like a backup: every object first, the manifest last. Objects move
byte for byte (streamed, never held whole in memory), hashed while they are copied and
compared with the manifest's SHA-256 before the object is committed; each object is then
read back from the destination and hashed again (for a cold storage class the store will
not serve, its size is checked instead). Only then is the manifest written, with
``if_absent`` so an existing copy is never overwritten by an ordinary copy.

The objects are not re-encrypted. When the destination's key category differs from the
source's, the backup's data key is unwrapped with the source's keyring and wrapped with
the destination category's active master key; the copy's manifest carries only the
destination category's entries (docs/format.md, "Copies").

Data sovereignty holds here, not only in the plan check or the task: a region-only
dataset is never written to a location outside its region, whatever the caller asks.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

from drfleet.backup_format.datakey import DataKey, wrap_data_key
from drfleet.backup_format.errors import ManifestError
from drfleet.backup_format.layout import manifest_key, object_key
from drfleet.backup_format.manifest import Manifest
from drfleet.datapath.catalog import find_backup, read_manifest
from drfleet.datapath.errors import DataPathError, IntegrityError, WrongRegion
from drfleet.datapath.locations import copy_locations, home_location, key_category_for_location, keyring_for, store_for
from drfleet.datapath.reading import data_key_for
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.plan.rules import location_region
from drfleet.providers.storage import ObjectArchived, ObjectExists, ObjectNotFound, Store

logger = logging.getLogger("drfleet.copy")

CHUNK = 1 << 20


class SovereigntyViolation(DataPathError):
    hint = ("a region-only dataset may only be copied to locations in its own region (or offsite "
            "locations with that jurisdiction); fix the message or the plan")


class UnknownLocation(DataPathError):
    hint = "use a storage location declared under `storage:` in the plan"


class CopyHashMismatch(IntegrityError):
    """An object's bytes differ from the manifest's size or SHA-256 (at the source, or as
    stored at the destination). The copy is refused and not committed."""


class ParentMissing(DataPathError):
    hint = "an incremental needs its parents: copy or restore the parent backups first (`drfleet copies check`)"


@dataclass
class CopyResult:
    dataset: str
    backup_id: str
    source: str
    location: str
    status: str  # "copied", "present" or "repaired"
    storage_class: str | None = None
    key_category: str | None = None
    objects: int = 0
    bytes: int = 0
    seconds: float = 0.0
    parents_copied: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def check_sovereignty(plan: Plan, dataset: str, location: str) -> None:
    """Raise SovereigntyViolation when ``dataset`` is region-only and ``location`` is not
    under its region's law; UnknownLocation when the plan has no such location."""
    if location not in plan.storage:
        raise UnknownLocation(f"storage location {location!r} is not in the plan", dataset=dataset,
                              known=", ".join(sorted(plan.storage)))
    ds = plan.dataset(dataset)
    where = location_region(plan.storage[location].model_dump())
    if ds.sovereign and where != ds.region:
        raise SovereigntyViolation(f"refusing to copy region-only dataset {dataset} outside {ds.region}",
                                   dataset=dataset, location=location, location_region=where or "none",
                                   dataset_region=ds.region)


def storage_class_for(plan: Plan, dataset: str, policy: str, location: str) -> str | None:
    """The storage class objects get at ``location``: its cold class when the policy sends
    a cold copy there (falling back to its ordinary class), else its ordinary class."""
    loc = plan.storage[location]
    try:
        cold = dict(copy_locations(plan, dataset, policy)).get(location, False)
    except (DrfleetError, KeyError, ValueError):  # a policy gone from the plan: an ordinary copy
        cold = False
    return (loc.cold_storage_class or loc.storage_class) if cold else loc.storage_class


def copy_backup(plan: Plan, backup_id: str, location: str, *, source: str | None = None,
                region: str | None = None, repair: bool = False, _seen: set | None = None) -> CopyResult:
    """Copy ``backup_id`` (an id or DATASET/ID) from ``source`` (default: the dataset's home
    store) to ``location``; returns what was done.

    A copy already committed at ``location`` is left alone (status "present") unless
    ``repair``: then every object is rewritten from the source and a manifest that differs
    is replaced (``copies check`` re-seeding a damaged copy). Parents of an incremental
    missing at ``location`` are copied first, oldest first.

    Raises, before writing anything: UnknownLocation, SovereigntyViolation, WrongRegion
    (``region`` given and not the dataset's home), BackupNotFound, ParentMissing (a parent
    is at neither place), WrongKey/ManifestTampered (the source manifest does not
    authenticate). While copying: CopyHashMismatch naming the object and location, and
    store errors (StoreUnavailable etc.). On any failure no manifest is written at the
    destination and objects this call committed there are removed where possible.
    """
    started = time.monotonic()
    dataset, _, bare_id = backup_id.rpartition("/")
    record = find_backup(plan, bare_id, dataset=dataset or None,
                         location=source or (home_location(plan, dataset) if dataset else None))
    m, source = record.manifest, record.location
    check_sovereignty(plan, m.dataset, location)
    if region is not None and region != plan.dataset(m.dataset).region:
        raise WrongRegion(f"copies of {m.dataset} run in {plan.dataset(m.dataset).region}, not {region}",
                          dataset=m.dataset, backup_id=m.backup_id)
    src, dst = store_for(plan, source), store_for(plan, location)
    result = CopyResult(m.dataset, m.backup_id, source, location, "present")
    if location == source:
        return result
    present, existing = _existing_manifest(dst, m)
    if present and not repair:
        return result

    seen = _seen if _seen is not None else set()
    seen.add(m.backup_id)
    for parent in m.parents:
        if parent in seen or dst.exists(manifest_key(m.dataset, parent)):
            continue
        if not src.exists(manifest_key(m.dataset, parent)):
            raise ParentMissing(f"incremental backup {m.backup_id} needs parent {parent}, which is "
                                f"neither at {source} nor at {location}", dataset=m.dataset,
                                backup_id=m.backup_id, parent=parent, source=source, location=location)
        copy_backup(plan, f"{m.dataset}/{parent}", location, source=source, _seen=seen)
        result.parents_copied.append(parent)

    data_key = data_key_for(plan, m)  # also authenticates the source manifest
    category = key_category_for_location(plan, m.dataset, location)
    copy_manifest = _rewrapped(plan, m, data_key, category)
    storage_class = storage_class_for(plan, m.dataset, m.policy, location)
    committed: list[str] = []
    try:
        for obj in m.objects:
            key = object_key(m.dataset, m.backup_id, obj.name)
            _copy_object(src, dst, key, obj.size, obj.sha256, storage_class, source, location)
            committed.append(key)
            _check_stored(dst, key, obj.size, obj.sha256, location)
            result.objects += 1
            result.bytes += obj.size
        body = copy_manifest.to_bytes()
        if not present:
            _put_manifest(dst, m, body, location)
        elif existing is None or existing.to_bytes() != body:
            dst.put_bytes(manifest_key(m.dataset, m.backup_id), body)  # repair: replace in place
    except BaseException:
        if not present:
            _remove_uncommitted(dst, m, committed)
        raise
    result.status = "repaired" if present else "copied"
    result.storage_class, result.key_category = storage_class, category
    result.seconds = round(time.monotonic() - started, 3)
    logger.info("copied %s/%s from %s to %s (%d objects, %d bytes, class %s, key category %s)",
                m.dataset, m.backup_id, source, location, result.objects, result.bytes,
                storage_class or "default", category)
    return result


def _existing_manifest(store: Store, m: Manifest) -> tuple[bool, Manifest | None]:
    """(present, manifest) of ``m``'s backup at ``store``. An unreadable manifest is present
    but None: a plain copy never overwrites it; ``copies check`` repairs it."""
    try:
        return True, read_manifest(store, m.dataset, m.backup_id)
    except ObjectNotFound:
        return False, None
    except ManifestError:
        return True, None


def _rewrapped(plan: Plan, m: Manifest, data_key: DataKey, category: str) -> Manifest:
    """The manifest as the destination stores it: keys of the destination's category only
    (existing entries kept, else one wrapped under its active master key), re-signed."""
    keys = [entry for entry in m.keys if entry.get("category") == category]
    if not keys:
        keys = [wrap_data_key(data_key, keyring_for(plan, category).active)]
    signed = m.replace(keys=keys).sign(data_key)
    signed.verify_mac(data_key)
    return signed


def _copy_object(src: Store, dst: Store, key: str, size: int, sha256: str,
                 storage_class: str | None, source: str, location: str) -> None:
    digest, done = hashlib.sha256(), 0
    with src.open(key) as reader, dst.writer(key, storage_class=storage_class) as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if done > size:
                break
            writer.write(chunk)
        if done != size or digest.hexdigest() != sha256:
            raise CopyHashMismatch("object at the source does not match its manifest; copy refused",
                                   object=key, location=source, destination=location,
                                   expected_size=size, actual_size=done if done <= size else f">{size}",
                                   expected_sha256=sha256, actual_sha256=digest.hexdigest())
        writer.commit()


def _check_stored(dst: Store, key: str, size: int, sha256: str, location: str) -> None:
    """Read the committed object back from the destination and compare it with the manifest."""
    digest, done = hashlib.sha256(), 0
    try:
        with dst.open(key) as reader:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                done += len(chunk)
    except ObjectArchived:  # a cold class the store will not serve without a restore
        done, digest = dst.stat(key).size, None
    if done != size or (digest is not None and digest.hexdigest() != sha256):
        raise CopyHashMismatch("object stored at the destination does not match its manifest; copy refused",
                               object=key, location=location, expected_size=size, actual_size=done,
                               expected_sha256=sha256,
                               actual_sha256=digest.hexdigest() if digest is not None else "unreadable (archived)")


def _put_manifest(dst: Store, m: Manifest, body: bytes, location: str) -> None:
    key = manifest_key(m.dataset, m.backup_id)
    try:
        dst.put_bytes(key, body, if_absent=True)
    except ObjectExists:
        # another copier committed first; same signed content is the same backup
        theirs = read_manifest(dst, m.dataset, m.backup_id)
        if theirs.mac != m.mac:
            raise IntegrityError("a different manifest for this backup already exists at the destination",
                                 backup_id=m.backup_id, dataset=m.dataset, location=location) from None


def _remove_uncommitted(dst: Store, m: Manifest, keys: list[str]) -> None:
    """Objects without a manifest are garbage; remove the ones this copy wrote, unless a
    manifest appeared meanwhile. Best effort: the original error is what matters."""
    try:
        if not keys or dst.exists(manifest_key(m.dataset, m.backup_id)):
            return
        for key in keys:
            dst.delete(key)
    except Exception as exc:  # noqa: BLE001
        logger.warning("could not remove uncommitted objects of %s/%s at %s: %s",
                       m.dataset, m.backup_id, dst.name, exc)


def copy_to_policy_locations(plan: Plan, backup_id: str, *, source: str | None = None) -> list[CopyResult]:
    """Copy one backup to every location its policy names (besides where it is); used by
    tests and by hand. Raises what ``copy_backup`` raises, at the first failing location."""
    record = find_backup(plan, backup_id, location=source)
    m = record.manifest
    return [copy_backup(plan, f"{m.dataset}/{m.backup_id}", loc, source=record.location)
            for loc, _cold in copy_locations(plan, m.dataset, m.policy) if loc != record.location]
