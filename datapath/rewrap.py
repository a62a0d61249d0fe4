"""Re-wrapping old backups under a key category's active master key, without touching
their data.

After ``drfleet keys rotate``, new backups use the new key and old ones stay readable while
their key is in the keyring. ``rewrap`` moves the old ones over so the old key can retire:
for every manifest (in every storage location) that holds the category's data key wrapped
under a non-active master key, it unwraps the data key with the old key, checks the
manifest's MAC with it, wraps it under the active key, signs again, proves the new
manifest opens with the active key alone, and replaces the manifest in one atomic write.
Objects are never read or rewritten: the data key itself does not change.

A manifest that changed between reading and writing (a copy or prune running at the same
moment) is left alone and reported, not overwritten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from drfleet.backup_format.datakey import unwrap_data_key, wrap_data_key
from drfleet.backup_format.keyring import Keyring
from drfleet.backup_format.layout import manifest_key
from drfleet.backup_format.manifest import Manifest
from drfleet.datapath.catalog import list_backups
from drfleet.datapath.locations import keyring_for, store_for
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan

logger = logging.getLogger("drfleet.rewrap")


class RewrapFailed(DrfleetError):
    hint = ("keep the old key in the keyring until every backup is re-wrapped; fix the listed "
            "manifests (see `drfleet verify`) and run `drfleet keys rewrap` again: it is idempotent")


@dataclass(frozen=True)
class RewrapItem:
    """One manifest copy: where it is, which old key(s) wrap its data key now."""

    location: str
    dataset: str
    backup_id: str
    old_key_ids: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.location}: {self.dataset}/{self.backup_id} ({', '.join(self.old_key_ids)})"


@dataclass
class RewrapReport:
    category: str
    active_key_id: str
    pending: list[RewrapItem] = field(default_factory=list)   # to do (dry run) or not done
    rewrapped: list[RewrapItem] = field(default_factory=list)
    current: int = 0  # manifests already wrapped under the active key
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"category": self.category, "active_key_id": self.active_key_id,
                "rewrapped": [i.describe() for i in self.rewrapped],
                "pending": [i.describe() for i in self.pending],
                "already_current": self.current, "problems": self.problems}


def _entries_of(manifest: Manifest, category: str) -> list[dict]:
    return [e for e in manifest.keys if e.get("category") == category]


def find_old_wrappings(plan: Plan, category: str, keyring: Keyring | None = None) -> RewrapReport:
    """Every manifest copy whose data key for ``category`` is wrapped under a master key
    other than the active one. Reads manifests only. Raises the keyring's errors
    (KeyringNotFound, KeyFilePermissionError, ...) and UnknownPlanName-like KeyError for
    an unknown category; unreadable manifests are listed as problems."""
    if category not in plan.keys:
        raise RewrapFailed(f"unknown key category {category!r}", known=", ".join(sorted(plan.keys)),
                           hint="use a category listed under keys: in the plan")
    keyring = keyring or keyring_for(plan, category)
    report = RewrapReport(category, keyring.active.id)
    listing = list_backups(plan)
    report.problems.extend(listing.problems)
    for record in listing.backups:
        entries = _entries_of(record.manifest, category)
        if not entries:
            continue
        if any(e.get("key_id") == keyring.active.id for e in entries) and len(entries) == 1:
            report.current += 1
            continue
        report.pending.append(RewrapItem(record.location, record.dataset, record.backup_id,
                                         tuple(sorted({str(e.get("key_id")) for e in entries}))))
    return report


def rewrapped_manifest(manifest: Manifest, keyring: Keyring) -> Manifest:
    """``manifest`` with its data key for the keyring's category wrapped under the active
    key only (other categories' entries kept), signed again. Raises WrongKey when no old
    key in the keyring opens it, ManifestTampered when its MAC does not match."""
    category = keyring.category
    data_key = unwrap_data_key(_entries_of(manifest, category), keyring, backup_id=manifest.backup_id)
    manifest.verify_mac(data_key)
    keys = [e for e in manifest.keys if e.get("category") != category] + [wrap_data_key(data_key, keyring.active)]
    new = manifest.replace(keys=keys).sign(data_key)
    # prove the result opens with the active key alone before anything is written
    only_active = Keyring(category, [keyring.active], keyring.active.id)
    reopened = unwrap_data_key(_entries_of(new, category), only_active, backup_id=new.backup_id)
    new.verify_mac(reopened)
    return new


def rewrap_category(plan: Plan, category: str, *, dry_run: bool = False,
                    on_rewrapped: Callable[[RewrapItem, str], None] | None = None) -> RewrapReport:
    """Re-wrap every old manifest copy of ``category`` under the active key (or, with
    ``dry_run``, only list them). ``on_rewrapped(item, new_key_id)`` is called after each
    replaced manifest (the CLI audits there). Per-manifest failures (wrong key, tampered
    manifest, a manifest changed meanwhile, store errors) are collected in ``problems`` and
    the item stays in ``pending``; the others proceed. Raises the keyring's errors."""
    keyring = keyring_for(plan, category)
    report = find_old_wrappings(plan, category, keyring)
    if dry_run:
        return report
    todo, report.pending = report.pending, []
    for item in todo:
        try:
            _rewrap_one(plan, item, keyring)
        except DrfleetError as exc:
            report.pending.append(item)
            report.problems.append(f"{item.describe()}: {exc.message}")
            continue
        report.rewrapped.append(item)
        logger.info("re-wrapped %s/%s at %s: %s -> %s", item.dataset, item.backup_id, item.location,
                    ",".join(item.old_key_ids), keyring.active.id)
        if on_rewrapped:
            on_rewrapped(item, keyring.active.id)
    return report


def _rewrap_one(plan: Plan, item: RewrapItem, keyring: Keyring) -> None:
    store = store_for(plan, item.location)
    key = manifest_key(item.dataset, item.backup_id)
    before = store.get_bytes(key)
    manifest = Manifest.from_bytes(before, source=f"{store.name}:{key}")
    new = rewrapped_manifest(manifest, keyring)
    if store.get_bytes(key) != before:
        raise RewrapFailed("the manifest changed while it was being re-wrapped; left as it is",
                           location=item.location, backup_id=item.backup_id)
    store.put_bytes(key, new.to_bytes())  # one atomic replace (temp + rename, or one S3 PUT)

