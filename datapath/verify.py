"""Verifying backups, three depths:

* quick: every object is present with the size the manifest records (cheap; after each
  backup and copy).
* full: every object is re-read; its SHA-256, every envelope chunk's AEAD tag, and the
  plaintext's size and SHA-256 are checked.
* deep: full, plus a restore into a scratch target whose fingerprint must equal the one
  recorded at backup time (row counts and checksums, key counts, file hashes).
"""

from __future__ import annotations

import time

from backup_format.layout import object_key
from datapath.catalog import BackupRecord, find_backup
from datapath.locations import store_for
from datapath.reading import BackupReader, data_key_for
from datapath.scratch import scratch_target
from datapath.sources import source_for
from fleet.errors import DrfleetError
from plan.models import Plan
from providers.datasources import get_source
from providers.storage import ObjectNotFound


def quick_check(plan: Plan, record: BackupRecord) -> list[str]:
    """Problems found by checking presence and sizes; empty when all is well."""
    store = store_for(plan, record.location)
    m = record.manifest
    problems = []
    for obj in m.objects:
        key = object_key(m.dataset, m.backup_id, obj.name)
        try:
            info = store.stat(key)
        except ObjectNotFound:
            problems.append(f"{record.location}:{key}: missing")
            continue
        if info.size != obj.size:
            problems.append(f"{record.location}:{key}: {info.size} bytes, manifest says {obj.size}")
    return problems


def verify_backup(plan: Plan, backup_id: str, *, depth: str = "full", location: str | None = None) -> dict:
    """Verify one backup; returns {"ok": bool, "problems": [...], ...}. Never raises for
    damage it finds (it reports it); raises only BackupNotFound."""
    started = time.monotonic()
    record = find_backup(plan, backup_id, location=location)
    m = record.manifest
    result = {"backup_id": m.backup_id, "dataset": m.dataset, "location": record.location, "depth": depth}
    problems = quick_check(plan, record)
    if not problems and depth in ("full", "deep"):
        try:
            reader = BackupReader(store_for(plan, record.location), m, data_key_for(plan, m))
            if depth == "deep":
                _, source_conn, _ = source_for(plan, m.dataset) if m.kind != "files" else (None, "", None)
                module = get_source(m.kind)
                with scratch_target(m.kind, source_conn) as (target, options):
                    module.restore(target, reader, options)
                    reader.finish()
                    restored = module.fingerprint(target, {})
                if restored != m.fingerprint:
                    problems.append(f"fingerprint mismatch: restored data differs from the data backed up "
                                    f"({_diff(m.fingerprint, restored)})")
            else:
                reader.finish()
        except DrfleetError as exc:
            problems.append(str(exc).splitlines()[0] + _facts(exc))
    result.update(ok=not problems, problems=problems, seconds=round(time.monotonic() - started, 3))
    return result


def _facts(exc: DrfleetError) -> str:
    shown = {k: v for k, v in exc.facts.items() if k in ("object", "object_name", "backup_id", "key_id", "needed_key_ids")}
    return (" (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")") if shown else ""


def _diff(expected: dict, actual: dict) -> str:
    keys = sorted(set(expected) | set(actual))
    changed = [k for k in keys if expected.get(k) != actual.get(k)]
    return "differs in: " + ", ".join(changed[:5]) if changed else "no field differs"
