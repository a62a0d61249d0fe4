"""Legal holds: a backup on hold is never pruned, whatever its policy says.

A hold lives in the stores themselves, next to the backup, so it survives the loss of the
fleet's Redis: ``datasets/{dataset}/holds/{backup_id}.json`` (see docs/format.md, "Holds")
holding who placed it, when, and why. ``place_hold`` writes the marker into every storage
location that has the backup's manifest; ``release_hold`` removes it from every location.
A backup counts as held when any of the plan's stores has a marker for it, and
``held_backup_ids`` refuses to answer (``HoldsUnreadable``) when a store cannot be listed,
so prune deletes nothing it cannot prove is free of holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from drfleet.backup_format.layout import check_backup_id, check_dataset, manifest_key
from drfleet.backup_format.manifest import format_timestamp
from drfleet.datapath.catalog import find_backup
from drfleet.datapath.errors import DataPathError
from drfleet.datapath.locations import store_for
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan

HOLD_FORMAT = "drfleet-hold"
HOLD_VERSION = 1


class HoldsUnreadable(DataPathError):
    hint = "make the store reachable again; prune deletes nothing of this dataset until every store's holds can be read"


class HoldIncomplete(DataPathError):
    hint = "run the same hold/release command again once the store is reachable"


def holds_prefix(dataset: str) -> str:
    """Prefix of the hold markers of ``dataset``; raises InvalidName for an unsafe name."""
    return f"datasets/{check_dataset(dataset)}/holds/"


def hold_key(dataset: str, backup_id: str) -> str:
    """Key of the hold marker of ``backup_id``; raises InvalidName for a bad component."""
    return f"{holds_prefix(dataset)}{check_backup_id(backup_id)}.json"


@dataclass(frozen=True)
class Hold:
    dataset: str
    backup_id: str
    by: str
    at: str
    reason: str
    locations: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "backup_id": self.backup_id, "by": self.by, "at": self.at,
                "reason": self.reason, "locations": list(self.locations)}


def place_hold(plan: Plan, backup_id: str, *, by: str, reason: str = "",
               now: datetime | None = None) -> Hold:
    """Put ``backup_id`` (an id or ``DATASET/ID``) on hold in every location holding it.

    Raises BackupNotFound when no location has its manifest, and HoldIncomplete (naming the
    locations written and failed) when some store could not be written; one marker already
    protects the backup everywhere, and running the command again completes it.
    """
    record = find_backup(plan, backup_id)
    dataset, backup_id = record.dataset, record.backup_id
    at = format_timestamp(now or datetime.now(timezone.utc))
    body = json.dumps({"format": HOLD_FORMAT, "version": HOLD_VERSION, "dataset": dataset,
                       "backup_id": backup_id, "by": by, "at": at, "reason": reason},
                      sort_keys=True).encode() + b"\n"
    written, failed = [], []
    for location in plan.storage:
        try:
            store = store_for(plan, location)
            if store.exists(manifest_key(dataset, backup_id)):
                store.put_bytes(hold_key(dataset, backup_id), body)
                written.append(location)
        except DrfleetError as exc:
            failed.append(f"{location}: {exc.message}")
    if failed:
        raise HoldIncomplete(f"backup {backup_id} is on hold in {len(written)} location(s) but not all",
                             dataset=dataset, backup_id=backup_id, written=", ".join(written) or "none",
                             failed=failed)
    return Hold(dataset, backup_id, by, at, reason, tuple(written))


def release_hold(plan: Plan, backup_id: str, *, dataset: str | None = None) -> list[str]:
    """Remove the hold on ``backup_id`` (an id or ``DATASET/ID``) from every location;
    returns the locations that had a marker (empty: it was not on hold). Works even when
    the backup itself is gone. Raises HoldIncomplete naming the stores that failed (the
    backup stays held there)."""
    if "/" in backup_id:
        dataset, backup_id = backup_id.split("/", 1)
    removed, failed = [], []
    for ds in [dataset] if dataset else list(plan.datasets):
        key = hold_key(ds, backup_id)
        for location in plan.storage:
            try:
                store = store_for(plan, location)
                if store.exists(key):
                    store.delete(key)
                    removed.append(location)
            except DrfleetError as exc:
                failed.append(f"{location}: {exc.message}")
    if failed:
        raise HoldIncomplete(f"the hold on {backup_id} is not released everywhere",
                             backup_id=backup_id, released=", ".join(removed) or "none", failed=failed)
    return removed


def held_backup_ids(plan: Plan, dataset: str) -> set[str]:
    """Ids of ``dataset``'s backups with a hold marker in any of the plan's stores.

    Raises HoldsUnreadable naming the store when one cannot be listed.
    """
    held: set[str] = set()
    prefix = holds_prefix(dataset)
    for location in plan.storage:
        try:
            keys = [info.key for info in store_for(plan, location).list(prefix)]
        except DrfleetError as exc:
            raise HoldsUnreadable(f"cannot read the legal holds of {dataset} in {location}",
                                  dataset=dataset, location=location, error=exc.message) from exc
        held.update(_backup_id_of(key, prefix) for key in keys)
    held.discard(None)
    return held


def list_holds(plan: Plan, dataset: str | None = None) -> list[Hold]:
    """Every hold in every readable store (one entry per backup, its locations merged),
    oldest backup first. Unreadable markers are listed with what is known."""
    found: dict[tuple[str, str], Hold] = {}
    for ds in [dataset] if dataset else list(plan.datasets):
        prefix = holds_prefix(ds)
        for location in plan.storage:
            try:
                store = store_for(plan, location)
                infos = list(store.list(prefix))
            except DrfleetError:
                continue
            for info in infos:
                backup_id = _backup_id_of(info.key, prefix)
                if backup_id is None:
                    continue
                hold = found.get((ds, backup_id)) or _read(store, info.key, ds, backup_id)
                found[(ds, backup_id)] = Hold(hold.dataset, hold.backup_id, hold.by, hold.at, hold.reason,
                                              hold.locations + (location,))
    return sorted(found.values(), key=lambda h: (h.backup_id, h.dataset))


def _read(store, key: str, dataset: str, backup_id: str) -> Hold:
    try:
        data = json.loads(store.get_bytes(key))
        return Hold(dataset, backup_id, str(data.get("by", "?")), str(data.get("at", "?")),
                    str(data.get("reason", "")))
    except (DrfleetError, ValueError, AttributeError):
        return Hold(dataset, backup_id, "?", "?", "(marker unreadable; still counts as a hold)")


def _backup_id_of(key: str, prefix: str) -> str | None:
    name = key[len(prefix):]
    if "/" in name or not name.endswith(".json"):
        return None
    try:
        return check_backup_id(name[:-len(".json")])
    except DrfleetError:
        return None
