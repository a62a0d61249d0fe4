"""Verifying backups, three depths:

* quick: every object is present with the size the manifest records (cheap; after each
  backup and copy).
* full: every object is re-read; its SHA-256, every envelope chunk's AEAD tag, and the
  plaintext's size and SHA-256 are checked.
* deep: full, plus a restore into a scratch target whose fingerprint must equal the one
  recorded at backup time (row counts and checksums, key counts, file hashes).

An incremental files backup is checked with its chain: quick and full also check that
every backup its ``parents`` names is present (quick-checked where it was found); deep
restores the whole chain, so its fingerprint is the restored tree of that day.
"""

from __future__ import annotations

import time

from drfleet.backup_format.layout import object_key
from drfleet.datapath.catalog import BackupRecord, find_backup
from drfleet.datapath.locations import store_for
from drfleet.datapath.reading import BackupReader, data_key_for
from drfleet.datapath.scratch import scratch_target
from drfleet.datapath.sources import source_for
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.providers.datasources import open_source
from drfleet.providers.storage import ObjectNotFound


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
    if not problems and m.parents:
        problems = _chain_problems(plan, record, reread=depth in ("full", "deep"))
    if not problems and depth in ("full", "deep"):
        try:
            if depth == "deep" and m.labels.get("type") in NOT_LOGICAL:
                # a physical base backup or an oplog slice has no logical scratch restore:
                # it is re-read in full, and proven by `drfleet restore --at` / drills instead
                BackupReader(store_for(plan, record.location), m, data_key_for(plan, m)).finish()
                result["note"] = (f"{m.labels['type']}: deep check is the full check; restore it with "
                                  "`drfleet restore DATASET --to DIR --at latest` to prove it")
            elif depth == "deep":
                restored = _restored_fingerprint(plan, record)
                if restored != m.fingerprint:
                    problems.append(f"fingerprint mismatch: restored data differs from the data backed up "
                                    f"({_diff(m.fingerprint, restored)})")
            else:
                BackupReader(store_for(plan, record.location), m, data_key_for(plan, m)).finish()
        except DrfleetError as exc:
            problems.append(str(exc).splitlines()[0] + _facts(exc))
    result.update(ok=not problems, problems=problems, seconds=round(time.monotonic() - started, 3))
    return result


NOT_LOGICAL = ("basebackup", "oplog-slice")  # manifest labels.type of backups no scratch restore reads


def _restored_fingerprint(plan: Plan, record: BackupRecord) -> dict:
    """Restore ``record`` into a scratch target (files: with its chain) and fingerprint it."""
    m = record.manifest
    module = open_source(m.kind)
    if m.kind == "files":
        from drfleet.datapath.tree_restore import restore_tree

        with scratch_target(m.kind, "") as (target, _):
            restore_tree(plan, record, target)
            return module.fingerprint(target, {}, like=m.fingerprint)
    _, source_conn, _ = source_for(plan, m.dataset)
    reader = BackupReader(store_for(plan, record.location), m, data_key_for(plan, m))
    with scratch_target(m.kind, source_conn) as (target, options):
        module.restore(target, reader, options)
        reader.finish()
        return module.fingerprint(target, {}, like=m.fingerprint)


def _chain_problems(plan: Plan, record: BackupRecord, *, reread: bool = False) -> list[str]:
    """Problems with the backups an incremental needs where it is: missing, mismatching,
    damaged (a copy whose chain is incomplete at its location is reported). ``reread``: a
    file-level base backup's links are also re-read in full (a restore reads any of them)."""
    from drfleet.datapath.tree_restore import resolve_chain

    try:
        links = resolve_chain(plan, record, same_location=True)[:-1]
    except DrfleetError as exc:
        return [str(exc).splitlines()[0] + _facts(exc)]
    problems = [problem for link in links for problem in quick_check(plan, link)]
    if problems or not reread or record.manifest.kind != "postgres":
        return problems
    for link in links:
        try:
            BackupReader(store_for(plan, link.location), link.manifest, data_key_for(plan, link.manifest)).finish()
        except DrfleetError as exc:
            problems.append(f"parent {link.backup_id}: " + str(exc).splitlines()[0] + _facts(exc))
    return problems


def _facts(exc: DrfleetError) -> str:
    shown = {k: v for k, v in exc.facts.items()
             if k in ("object", "object_name", "backup_id", "key_id", "needed_key_ids", "missing", "link")}
    return (" (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")") if shown else ""


def _diff(expected: dict, actual: dict) -> str:
    keys = sorted(set(expected) | set(actual))
    changed = [k for k in keys if expected.get(k) != actual.get(k)]
    return "differs in: " + ", ".join(changed[:5]) if changed else "no field differs"
