"""Legal holds: a backup on hold is never pruned, whatever its policy says.

A hold lives in the stores themselves, next to the backup, so it survives the loss of the
fleet's Redis: ``datasets/{dataset}/holds/{backup_id}.json`` (see docs/format.md, "Holds")
holding who placed it, when, and why. ``place_hold`` writes the marker into every storage
location that has the backup's manifest; ``release_hold`` removes it from every location.
A backup counts as held when any of the plan's stores has a *valid* marker for it, and
``held_backup_ids`` refuses to answer (``HoldsUnreadable``) when a store cannot be listed
or a marker read, so prune deletes nothing it cannot prove is free of holds.

Markers are authenticated: each carries an HMAC-SHA256 (``mac``) under a key derived from
a master key of the dataset's keyring (``key_id`` names which), so credentials that can
write to a store but do not hold the keyring cannot forge a hold (to keep data past its
retention, say). A marker without a valid MAC is refused (it does not hold anything) and
reported: in prune's problems, in the log, and in ``list_holds``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from drfleet.backup_format.layout import check_backup_id, check_dataset, manifest_key
from drfleet.backup_format.manifest import format_timestamp
from drfleet.datapath.catalog import find_backup
from drfleet.datapath.errors import DataPathError
from drfleet.datapath.locations import keyring_for, store_for
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan

HOLD_FORMAT = "drfleet-hold"
HOLD_VERSION = 2
_MAC_CONTEXT = b"drfleet/v1/hold-mac"
logger = logging.getLogger(__name__)


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
    valid: bool = True  # False: a marker refused (no valid MAC); it holds nothing

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "backup_id": self.backup_id, "by": self.by, "at": self.at,
                "reason": self.reason, "locations": list(self.locations), "valid": self.valid}


class HoldRefused(ValueError):
    """A marker that does not authenticate; the message says why (never key material)."""


def _mac(material: bytes, fields: dict) -> str:
    mac_key = hmac.new(material, _MAC_CONTEXT, hashlib.sha256).digest()
    signed = json.dumps({k: v for k, v in fields.items() if k != "mac"}, sort_keys=True,
                        separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(mac_key, signed, hashlib.sha256).hexdigest()


MAX_MARKER_BYTES = 64 << 10  # a marker is a few hundred bytes; anything this large is not one


def sign_marker(fields: dict, keyring) -> bytes:
    """The marker document for ``fields``, signed with the keyring's active key."""
    key = keyring.active
    fields = {**fields, "key_id": key.id}
    return json.dumps({**fields, "mac": _mac(key.material, fields)}, sort_keys=True).encode() + b"\n"


def verify_marker(data: bytes, keyring, dataset: str, backup_id: str) -> dict:
    """The marker's fields if it is a v2 marker for this backup with a valid MAC under a
    key of ``keyring``; raises HoldRefused saying why otherwise."""
    from drfleet.safe_load import DocumentRefused, load_json
    try:
        fields = load_json(data, source="hold marker", max_bytes=MAX_MARKER_BYTES)
    except DocumentRefused as exc:
        raise HoldRefused(f"the marker is not a hold ({exc.reason})") from None
    if not isinstance(fields, dict) or fields.get("format") != HOLD_FORMAT:
        raise HoldRefused("the marker is not a drfleet hold")
    if "mac" not in fields or "key_id" not in fields:
        raise HoldRefused("the marker is not signed (written by an older drfleet or by hand: "
                          "place the hold again with `drfleet hold`)")
    key_id = fields["key_id"]
    if not isinstance(key_id, str) or key_id not in keyring:
        raise HoldRefused(f"the marker names key {key_id!r}, which the {keyring.category} keyring does not have")
    if not hmac.compare_digest(str(fields["mac"]), _mac(keyring.get(key_id).material, fields)):
        raise HoldRefused("the marker's MAC does not match: it was not signed with the plan's key")
    if fields.get("dataset") != dataset or fields.get("backup_id") != backup_id:
        raise HoldRefused("the marker is signed for another backup (copied from elsewhere)")
    return fields


def _keyring_of(plan: Plan, dataset: str):
    return keyring_for(plan, plan.dataset(dataset).key)


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
    body = sign_marker({"format": HOLD_FORMAT, "version": HOLD_VERSION, "dataset": dataset,
                        "backup_id": backup_id, "by": by, "at": at, "reason": reason},
                       _keyring_of(plan, dataset))
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
                store = store_for(plan, location, role="prune")  # the identity that may delete
                if store.exists(key):
                    store.delete(key)
                    removed.append(location)
            except DrfleetError as exc:
                failed.append(f"{location}: {exc.message}")
    if failed:
        raise HoldIncomplete(f"the hold on {backup_id} is not released everywhere",
                             backup_id=backup_id, released=", ".join(removed) or "none", failed=failed)
    return removed


def held_backup_ids(plan: Plan, dataset: str, *, refused: list[str] | None = None) -> set[str]:
    """Ids of ``dataset``'s backups with a valid hold marker in any of the plan's stores.

    A marker that does not authenticate holds nothing; it is logged and described in
    ``refused`` (when given). Raises HoldsUnreadable naming the store when one cannot be
    listed or a marker read, or when the dataset's keyring cannot be loaded.
    """
    held: set[str] = set()
    prefix = holds_prefix(dataset)
    keyring = None
    for location in plan.storage:
        try:
            store = store_for(plan, location)
            keys = [info.key for info in store.list(prefix)]
            for key in keys:
                backup_id = _backup_id_of(key, prefix)
                if backup_id is None or backup_id in held:
                    continue
                data = store.get_bytes(key)
                keyring = keyring or _keyring_of(plan, dataset)
                try:
                    verify_marker(data, keyring, dataset, backup_id)
                except HoldRefused as why:
                    note = f"hold marker {key} in {location} refused: {why}"
                    logger.warning("%s", note)
                    if refused is not None:
                        refused.append(note)
                    continue
                held.add(backup_id)
        except DrfleetError as exc:
            raise HoldsUnreadable(f"cannot read the legal holds of {dataset} in {location}",
                                  dataset=dataset, location=location, error=exc.message) from exc
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
                hold = found.get((ds, backup_id)) or _read(plan, store, info.key, ds, backup_id)
                found[(ds, backup_id)] = Hold(hold.dataset, hold.backup_id, hold.by, hold.at, hold.reason,
                                              hold.locations + (location,), hold.valid)
    return sorted(found.values(), key=lambda h: (h.backup_id, h.dataset))


def _read(plan: Plan, store, key: str, dataset: str, backup_id: str) -> Hold:
    try:
        raw = store.get_bytes(key)
    except DrfleetError:
        return Hold(dataset, backup_id, "?", "?", "(marker unreadable; prune deletes nothing of the dataset)")
    try:
        data = verify_marker(raw, _keyring_of(plan, dataset), dataset, backup_id)
    except HoldRefused as why:
        return Hold(dataset, backup_id, "?", "?", f"(refused, holds nothing: {why})", valid=False)
    except DrfleetError as exc:
        return Hold(dataset, backup_id, "?", "?", f"(cannot be checked: {exc.message})", valid=False)
    return Hold(dataset, backup_id, str(data.get("by", "?")), str(data.get("at", "?")),
                str(data.get("reason", "")))


def _backup_id_of(key: str, prefix: str) -> str | None:
    name = key[len(prefix):]
    if "/" in name or not name.endswith(".json"):
        return None
    try:
        return check_backup_id(name[:-len(".json")])
    except DrfleetError:
        return None
