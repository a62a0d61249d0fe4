"""From plan names to things that do work: storage locations to stores, key categories
to keyrings, copy targets to location names."""

from __future__ import annotations

from functools import lru_cache

from drfleet.backup_format.keyring import Keyring, load_keyring
from drfleet.plan.models import Plan, StorageLocation
from drfleet.plan.rules import resolve_copy_target
from drfleet.providers.storage import Store, open_store
from drfleet.secrets import resolve_secret


def store_for(plan: Plan, location: str) -> Store:
    """The store behind plan location ``location`` (credentials resolved here)."""
    return _store(location, plan.storage[location])


@lru_cache(maxsize=64)
def _store(name: str, loc: StorageLocation) -> Store:
    if loc.kind == "filesystem":
        return open_store("filesystem", {"root": loc.path, "name": name})
    if loc.kind == "sftp":
        return open_store("sftp", {"host": loc.host, "port": loc.port or 22, "root": loc.path,
                                   "user": loc.user or "root", "key_file": loc.key_file,
                                   "known_hosts_file": loc.known_hosts, "name": name})
    if loc.kind == "rclone":
        return open_store("rclone", {"remote": loc.remote, "config_file": loc.rclone_config,
                                     "name": name})
    settings = {"bucket": loc.bucket, "prefix": loc.prefix, "endpoint_url": loc.endpoint_url,
                "region": loc.s3_region, "storage_class": loc.storage_class, "name": name}
    if loc.access_key:
        settings["access_key_id"] = resolve_secret(loc.access_key, what=f"location {name} access key")
    if loc.secret_key:
        settings["secret_access_key"] = resolve_secret(loc.secret_key, what=f"location {name} secret key")
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
