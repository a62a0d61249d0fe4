"""Key rotation on the plan's schedule: a key category with ``rotate_every`` gets a new
active master key once its active key is that old (checked daily by beat, on the primary
region's control lane; ``tasks.keys``). Rotation only adds: every older key stays in the
keyring, so backups wrapped with them stay readable for as long as they are kept (the
result says how many backups still need an older key; `drfleet keys rewrap` moves them).
``retire_key`` removes an old key only once no backup copy in any location needs it.

A keyring kept in an environment variable is not rotated (drfleet cannot write it): the
result says so, and the audit records it as skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drfleet.backup_format.keyring import load_keyring, rotate_keyring
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan


def rotation_due(plan: Plan, category: str, *, now: datetime | None = None) -> dict:
    """Whether ``category``'s active key is due for rotation: {"category", "status":
    "due" | "not-due" | "not-scheduled" | "skipped", "active_key", "due_at", "reason"}."""
    ref = plan.keys[category]
    now = now or datetime.now(UTC)
    if not ref.rotate_every:
        return {"category": category, "status": "not-scheduled"}
    if not ref.file:
        return {"category": category, "status": "skipped",
                "reason": f"the keyring is kept in ${ref.env}; drfleet does not rotate it"}
    keyring = load_keyring(category, file=ref.file)
    due_at = keyring.active.created + timedelta(seconds=ref.rotate_every)
    return {"category": category, "status": "due" if due_at <= now else "not-due",
            "active_key": keyring.active.id, "due_at": due_at.isoformat()}


def rotate_if_due(plan: Plan, category: str, *, now: datetime | None = None) -> dict:
    """Rotate ``category`` when due (``rotation_due``); returns what happened, with the new
    key, the keys kept and how many backups still need an older key."""
    result = rotation_due(plan, category, now=now)
    if result["status"] != "due":
        return result
    from drfleet.datapath.rewrap import find_old_wrappings

    ref = plan.keys[category]
    new_key = rotate_keyring(ref.file)
    keyring = load_keyring(category, file=ref.file)
    try:
        needing_old = len(find_old_wrappings(plan, category, keyring).pending)
    except Exception:  # noqa: BLE001 - a count for the record; the rotation itself is done
        needing_old = None
    return {**result, "status": "rotated", "old_key": result["active_key"], "active_key": new_key,
            "kept_keys": [k for k in keyring.key_ids if k != new_key], "backups_on_older_keys": needing_old}


class KeyStillNeeded(DrfleetError):
    hint = "re-wrap those backups under the active key first: `drfleet keys rewrap CATEGORY`"


def retire_key(plan: Plan, category: str, key_id: str) -> dict:
    """Remove old key ``key_id`` from ``category``'s keyring file, only when no backup copy in
    any location still needs it. Raises KeyStillNeeded naming how many (and the first few),
    or when a location could not be read (then nobody can tell), KeyNotInKeyring for an
    unknown id, KeyringError for the active key or a keyring kept in a variable."""
    from drfleet.backup_format.errors import KeyringError
    from drfleet.backup_format.keyring import remove_key
    from drfleet.datapath.rewrap import find_old_wrappings

    ref = plan.keys[category]
    if not ref.file:
        raise KeyringError(f"key category {category} lives in ${ref.env}; drfleet does not edit that keyring")
    keyring = load_keyring(category, file=ref.file)
    keyring.get(key_id)
    report = find_old_wrappings(plan, category, keyring)
    needing = [item for item in report.pending if key_id in item.old_key_ids]
    if needing:
        raise KeyStillNeeded(f"{len(needing)} backup cop{'y' if len(needing) == 1 else 'ies'} of {category} "
                             f"still need{'s' if len(needing) == 1 else ''} key {key_id}", first=", ".join(i.describe() for i in needing[:3]))
    if report.problems:
        raise KeyStillNeeded(f"cannot tell whether backups still need key {key_id}: "
                             f"{len(report.problems)} location(s) or manifest(s) could not be read",
                             first=report.problems[0], hint="fix the listed problem, then retire the key")
    remove_key(ref.file, key_id)
    return {"category": category, "retired_key": key_id, "active_key": keyring.active.id,
            "kept_keys": [k for k in keyring.key_ids if k != key_id]}
