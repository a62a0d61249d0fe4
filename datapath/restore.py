"""Restoring a backup into a target: a directory for files, a database for the others."""

from __future__ import annotations

import logging
import time

from drfleet import inline_secrets
from drfleet.datapath.catalog import find_backup
from drfleet.datapath.errors import RestoreTargetInvalid
from drfleet.datapath.locations import store_for
from drfleet.datapath.reading import BackupReader, data_key_for
from drfleet.plan.models import Plan
from drfleet.providers.datasources import open_source
from drfleet.secrets import parse_target

logger = logging.getLogger("drfleet.restore")


def describe_restore(plan: Plan, backup_id: str, target: str, *, location: str | None = None) -> dict:
    """What a restore would do, touching nothing (``--dry-run``)."""
    record = find_backup(plan, backup_id, location=location)
    m = record.manifest
    return {"backup_id": m.backup_id, "dataset": m.dataset, "kind": m.kind, "location": record.location,
            "created_at": m.created_at.isoformat(), "objects": [o.name for o in m.objects],
            "plaintext_size": m.plaintext_size, "target": _display_target(target),
            **({"chain": [*m.parents, m.backup_id]} if m.parents else {})}


def restore_backup(plan: Plan, backup_id: str, target: str, *, location: str | None = None,
                   options: dict | None = None) -> dict:
    """Restore ``backup_id`` into ``target``; returns a summary with the wall time.

    A files backup is restored with its whole chain (``datapath.tree_restore``): an
    incremental gives the exact tree of its day; the summary then lists the ``chain``.
    Raises InlineSecretRefused when ``target`` holds a password (use ``env:VAR`` or
    ``file:PATH``), BackupNotFound, WrongKey, envelope errors naming the object,
    IntegrityError (ChainBroken for an incremental missing a link), and the data source's
    RestoreFailed (with the tool's stderr tail).
    """
    started = time.monotonic()
    inline_secrets.refuse(target, what="the restore target")  # before it is logged or used
    record = find_backup(plan, backup_id, location=location)
    m = record.manifest
    if not target:
        raise RestoreTargetInvalid("no restore target given", backup_id=m.backup_id)
    if (m.labels or {}).get("type") == "basebackup":
        raise RestoreTargetInvalid("a base backup is restored into a data directory with WAL replay",
                                   backup_id=m.backup_id, dataset=m.dataset,
                                   hint=f"drfleet restore {m.dataset}/{m.backup_id} --to NEW_DATA_DIR --at latest "
                                        "(add --delta to repair the stopped data directory of the same cluster)")
    conn = parse_target(target, what=f"restore target of {m.backup_id}")
    extra = {}
    if m.kind == "files":
        from drfleet.datapath.tree_restore import restore_tree

        owners = (options or {}).get("owners")
        extra = {"chain": restore_tree(plan, record, conn, owners=owners)["chain"]}
    else:
        module = open_source(m.kind)
        reader = BackupReader(store_for(plan, record.location), m, data_key_for(plan, m))
        module.restore(conn, reader, options or {})
        reader.finish()
    seconds = time.monotonic() - started
    logger.info("restored %s/%s from %s into %s in %.1fs", m.dataset, m.backup_id, record.location,
                _display_target(target), seconds)
    return {"status": "restored", "backup_id": m.backup_id, "dataset": m.dataset,
            "location": record.location, "target": _display_target(target),
            "bytes": m.plaintext_size, "seconds": round(seconds, 3), **extra}


def _display_target(target: str) -> str:
    """The target as it may be shown: references as written, URLs without password."""
    if target.startswith(("env:", "file:")) or "://" not in target:
        return target
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(target)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
