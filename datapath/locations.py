"""From plan names to things that do work: storage locations to stores, key categories
to keyrings, copy targets to location names."""

from __future__ import annotations

from functools import lru_cache

from drfleet.backup_format.keyring import Keyring, load_keyring
from drfleet.plan.models import Plan, StorageLocation
from drfleet.plan.rules import resolve_copy_target
from drfleet.providers.storage import InvalidStoreSettings, Store, open_store
from drfleet.secrets import resolve_secret


def store_for(plan: Plan, location: str, *, role: str = "worker") -> Store:
    """The store behind plan location ``location`` (credentials resolved here).

    ``role="prune"`` uses the location's prune identity (``prune_access_key``/
    ``prune_secret_key``) where it has one: the only credentials meant to delete."""
    loc = plan.storage[location]
    return _store(location, loc, "prune" if role == "prune" and loc.prune_access_key else "worker",
                  lock_seconds(plan, location) if loc.object_lock else None)


def lock_seconds(plan: Plan, location: str) -> int:
    """How long objects written to ``location`` are locked: its ``object_lock.retain``, or
    else the shortest time-based ``keep`` of the policies writing there (so a backup's lock
    ends with its retention). ``plan check`` makes sure one of the two exists."""
    lock = plan.storage[location].object_lock
    if lock is not None and lock.retain is not None:
        return lock.retain
    cached = _IMPLICIT_LOCKS.get((id(plan), location))
    if cached is not None and cached[0] is plan:
        return cached[1]
    keeps = [policy.keep.keep_seconds for name, ds in plan.datasets.items() for policy in ds.policies
             if policy.keep.keep_seconds is not None
             and location in dict(copy_locations(plan, name, policy.name))]
    if not keeps:
        raise InvalidStoreSettings("object_lock has no retain and no policy with a time-based keep "
                                   "writes here", store=location, hint="give the lock a 'retain'")
    if len(_IMPLICIT_LOCKS) > 64:
        _IMPLICIT_LOCKS.clear()
    _IMPLICIT_LOCKS[(id(plan), location)] = (plan, min(keeps))
    return min(keeps)


_IMPLICIT_LOCKS: dict[tuple[int, str], tuple[Plan, int]] = {}


@lru_cache(maxsize=64)
def _store(name: str, loc: StorageLocation, role: str = "worker", lock: int | None = None) -> Store:
    limit = {"bandwidth_limit": loc.bandwidth_limit} if loc.bandwidth_limit else {}
    if loc.kind == "filesystem":
        return open_store("filesystem", {"root": loc.path, "name": name, **limit})
    if loc.kind == "sftp":
        return open_store("sftp", {"host": loc.host, "port": loc.port or 22, "root": loc.path,
                                   "user": loc.user or "root", "key_file": loc.key_file,
                                   "known_hosts_file": loc.known_hosts, "name": name, **limit})
    if loc.kind == "rclone":
        return open_store("rclone", {"remote": loc.remote, "config_file": loc.rclone_config,
                                     "name": name, **limit})
    settings = {"bucket": loc.bucket, "prefix": loc.prefix, "endpoint_url": loc.endpoint_url,
                "region": loc.s3_region, "storage_class": loc.storage_class, "name": name,
                "versioning": loc.versioning, **limit}
    if loc.object_lock:
        settings.update(lock_mode=loc.object_lock.mode, lock_seconds=lock)
    access, secret = ((loc.prune_access_key, loc.prune_secret_key) if role == "prune"
                      else (loc.access_key, loc.secret_key))
    if access:
        settings["access_key_id"] = resolve_secret(access, what=f"location {name} {role} access key")
    if secret:
        settings["secret_access_key"] = resolve_secret(secret, what=f"location {name} {role} secret key")
    return open_store("s3", settings)


def home_location(plan: Plan, dataset: str) -> str:
    """The first storage location in the dataset's home region: where backups commit first."""
    region = plan.dataset(dataset).region
    for name, loc in plan.storage.items():
        if not loc.offsite and loc.region == region:
            return name
    raise KeyError(f"region {region!r} has no storage location")


def keyring_for(plan: Plan, category: str) -> Keyring:
    """The keyring of key category ``category`` (KeyringNotFound etc. from backup_format)."""
    ref = plan.keys[category]
    return load_keyring(category, file=ref.file, env=ref.env)


def copy_locations(plan: Plan, dataset: str, policy: str) -> list[tuple[str, bool]]:
    """(location, cold) for every location the policy's copies go to, home first, no repeats."""
    ds = plan.dataset(dataset)
    doc = plan.model_dump(mode="python")
    out: dict[str, bool] = {home_location(plan, dataset): False}
    for target in plan.policy(dataset, policy).copies:
        for name in resolve_copy_target(doc, ds.region, target):
            out[name] = out.get(name, False) or target.cold
    return list(out.items())


def key_category_for_location(plan: Plan, dataset: str, location: str) -> str:
    """The key category wrapping copies at ``location``: the location's own (offsite keys)
    or the dataset's."""
    return plan.storage[location].key or plan.dataset(dataset).key
