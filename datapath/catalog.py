"""The catalog is the stores themselves: a backup exists where its manifest exists.

Listing reads manifests only (``datasets/{dataset}/manifests/*.json``); objects without a
manifest are not backups. Unreadable manifests are reported as problems, never skipped
silently, and never fatal for the others: a manifest too large to be one (its stored size
is checked before it is read), nested too deeply or otherwise invalid is one problem line,
and every other manifest and dataset is still listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drfleet.backup_format.errors import ManifestInvalid
from drfleet.backup_format.layout import manifest_key, manifests_prefix, parse_manifest_key
from drfleet.backup_format.manifest import MAX_MANIFEST_BYTES, Manifest
from drfleet.datapath.errors import BackupNotFound
from drfleet.datapath.locations import store_for
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.providers.storage import ObjectNotFound, Store


@dataclass(frozen=True)
class BackupRecord:
    location: str
    manifest: Manifest

    @property
    def backup_id(self) -> str:
        return self.manifest.backup_id

    @property
    def dataset(self) -> str:
        return self.manifest.dataset


@dataclass
class Listing:
    backups: list[BackupRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_manifest(store: Store, dataset: str, backup_id: str, *, size: int | None = None) -> Manifest:
    """The manifest of ``backup_id`` in ``store``. ``size``: its stored size when a listing
    gave it (else the store is asked): a manifest larger than MAX_MANIFEST_BYTES is refused
    unread. Raises ObjectNotFound, or the format's ManifestInvalid/UnknownManifestVersion."""
    key = manifest_key(dataset, backup_id)
    source = f"{store.name}:{key}"
    size = store.stat(key).size if size is None else size
    if size > MAX_MANIFEST_BYTES:
        raise ManifestInvalid(source, f"the stored object is {size:,} bytes, more than the "
                                      f"{MAX_MANIFEST_BYTES:,} a manifest may have; not read")
    return Manifest.from_bytes(store.get_bytes(key), source=source)


def list_backups(plan: Plan, dataset: str | None = None, *, locations: list[str] | None = None) -> Listing:
    """Every committed backup of ``dataset`` (or of every dataset) in ``locations``
    (default: all), oldest first; a backup copied to three places appears three times."""
    listing = Listing()
    datasets = [dataset] if dataset else list(plan.datasets)
    for location in locations or list(plan.storage):
        try:
            store = store_for(plan, location)
        except DrfleetError as exc:
            listing.problems.append(f"{location}: {exc.message}")
            continue
        for ds in datasets:
            try:
                infos = list(store.list(manifests_prefix(ds)))
            except DrfleetError as exc:
                listing.problems.append(f"{location}: cannot list {ds}: {exc.message}")
                break
            for info in infos:
                try:
                    _, backup_id = parse_manifest_key(info.key)
                    listing.backups.append(BackupRecord(location, read_manifest(store, ds, backup_id,
                                                                                size=info.size)))
                except DrfleetError as exc:
                    listing.problems.append(f"{location}:{info.key}: {exc.message}")
    listing.backups.sort(key=lambda r: (r.manifest.created_at, r.backup_id, r.location))
    return listing


def find_backup(plan: Plan, backup_id: str, *, dataset: str | None = None,
                location: str | None = None) -> BackupRecord:
    """The first readable copy of ``backup_id`` (in ``location`` if given, else the home
    region's store first). Raises BackupNotFound naming where it looked."""
    if "/" in backup_id:
        dataset, backup_id = backup_id.split("/", 1)
    datasets = [dataset] if dataset else list(plan.datasets)
    looked = []
    for ds in datasets:
        order = [location] if location else _home_first(plan, ds)
        for loc in order:
            looked.append(loc)
            try:
                return BackupRecord(loc, read_manifest(store_for(plan, loc), ds, backup_id))
            except ObjectNotFound:
                continue
    raise BackupNotFound(f"no manifest for backup {backup_id}", dataset=dataset,
                         looked_in=", ".join(sorted(set(looked))))


def _home_first(plan: Plan, dataset: str) -> list[str]:
    region = plan.dataset(dataset).region
    return sorted(plan.storage, key=lambda n: (plan.storage[n].region != region, plan.storage[n].offsite, n))
