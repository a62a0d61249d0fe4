"""Point-in-time drills: a PostgreSQL dataset restored from its base backup plus archived
WAL to a point in time, a MongoDB dataset from its dump plus oplog slices to a timestamp,
each compared with a fingerprint taken at that point.

Without an explicit point, a PostgreSQL drill picks a random logical backup taken after the
oldest base backup and restores to the WAL position recorded when that dump began; the
dump's fingerprint is the reference. (That position is read just before pg_dump's snapshot
is exported, so on a database written to in that instant the two differ by those writes
and the drill reports the tables that differ.) A MongoDB drill needs the point, the
reference fingerprint and a staging target (no scratch MongoDB can be created here).

The drill is recorded like a restore drill (kind ``restore``, scenario ``pitr`` or
``oplog``): RTO the time to a verified restore, RPO the age of the newest point archived
WAL or oplog reaches at the start. The scratch cluster is stopped and removed on every path.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from typing import Any

from drfleet.datapath.catalog import list_backups
from drfleet.errors import error_text
from drfleet.plan.models import Plan
from drfleet.runbooks.drills import FingerprintMismatch, _announce, step
from drfleet.state import drills as drill_state
from drfleet.state.drills import DatasetOutcome, DrillRecord
from drfleet.statuses import DrillResult


def _differs(restored: dict, expected: dict) -> list[str]:
    """Keys that differ; inside a mapping (``per_table``, ``collections``), the tables or
    collections that differ."""
    out = []
    for k in sorted(set(restored) | set(expected)):
        a, b = restored.get(k), expected.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [t for t in sorted(set(a) | set(b)) if a.get(t) != b.get(t)] or [k]
        else:
            out.append(k)
    return out


def _reference(plan: Plan, dataset: str, rng: random.Random) -> tuple[str, dict, str]:
    """(LSN, fingerprint, backup id) of a random logical backup after the oldest base backup."""
    from drfleet.pitr.basebackup import list_base_backups
    from drfleet.pitr.walnames import parse_lsn

    bases = list_base_backups(plan, dataset)
    if not bases:
        raise FingerprintMismatch(f"{dataset} has no base backup to start a point-in-time restore from",
                                  dataset=dataset, hint="take one: `drfleet wal basebackup DATASET`")
    oldest = parse_lsn(bases[0].manifest.source_position["start_lsn"])
    dumps = [b for b in list_backups(plan, dataset).backups
             if (b.manifest.labels or {}).get("type") is None and (b.manifest.source_position or {}).get("lsn")
             and parse_lsn(b.manifest.source_position["lsn"]) >= oldest and b.manifest.fingerprint]
    if not dumps:
        raise FingerprintMismatch(f"{dataset} has no logical backup after its oldest base backup to compare with",
                                  dataset=dataset)
    chosen = rng.choice(dumps)
    return chosen.manifest.source_position["lsn"], chosen.manifest.fingerprint, chosen.backup_id


def pitr_drill(plan: Plan, dataset: str, *, region: str | None = None, at: str | None = None,
               expected: dict | None = None, target: str | None = None, client_factory: Any = None,
               rng: random.Random | None = None, actor: str = "api") -> DrillRecord:
    """Run one point-in-time drill of ``dataset`` and return its finished record (saved,
    audited, counted; a failure notified). ``at``: an LSN or time (postgres) or ``T:I`` /
    ISO time (mongodb); ``expected``: the fingerprint at that point. Raises UnknownPlanName
    for an unknown dataset and ValueError for a kind without point-in-time recovery or a
    MongoDB drill without ``at``, ``expected`` and ``target``."""
    ds = plan.dataset(dataset)
    if ds.kind not in ("postgres", "mongodb"):
        raise ValueError(f"{dataset} is {ds.kind}: point-in-time drills are for postgres and mongodb")
    if ds.kind == "mongodb" and not (at and expected and target):
        raise ValueError("a MongoDB point-in-time drill needs at, expected and a staging target")
    rng = rng or random.SystemRandom()
    record = DrillRecord(kind="restore", region=region or ds.region, scenario="pitr" if ds.kind == "postgres"
                         else "oplog", scope=f"{dataset} to a point in time", actor=actor)
    drill_state.save(record)
    outcome = DatasetOutcome(dataset, ok=False)
    try:
        newest = _newest_point(plan, dataset, ds.kind)
        outcome.rpo_seconds = round(max(0.0, record.started_at - newest), 3) if newest else None
        if ds.kind == "postgres":
            _postgres(plan, dataset, record, outcome, at, expected, rng)
        else:
            _mongodb(plan, dataset, record, outcome, at, expected, target, client_factory)
        outcome.ok, outcome.rto_seconds = True, round(time.time() - record.started_at, 3)
    except Exception as exc:  # noqa: BLE001 - a drill reports every failure
        failed = next((s for s in record.steps if s.ok is False), None)
        outcome.reason = (f"{failed.name.split(': ', 1)[-1]} failed: {failed.detail}" if failed
                          else error_text(exc))
    record.datasets.append(outcome)
    record.result = DrillResult.PASSED if outcome.ok else DrillResult.FAILED
    record.reason = "" if outcome.ok else f"{dataset}: {outcome.reason}"
    record.rto_seconds, record.rpo_seconds = outcome.rto_seconds, outcome.rpo_seconds
    record.ended_at = time.time()
    drill_state.save(record)
    _announce(record)
    if not outcome.ok:
        from drfleet.runbooks.notify import notify
        notify(plan, "drill-failed", f"point-in-time drill of {dataset} failed", record.reason,
               drill_id=record.drill_id)
    return record


def _newest_point(plan: Plan, dataset: str, kind: str) -> float | None:
    if kind == "postgres":
        from drfleet.pitr.archive import newest_recoverable_time
        return newest_recoverable_time(plan, dataset)
    from drfleet.pitr.oplog import slices
    chain = slices(plan, dataset)
    return float(chain[-1].manifest.source_position["last_ts"][0]) if chain else None


def _postgres(plan, dataset, record, outcome, at, expected, rng) -> None:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from drfleet.datapath.sources import source_for
    from drfleet.pitr import cluster
    from drfleet.pitr.recovery import restore_to
    from drfleet.providers.datasources import open_source

    if at is None or expected is None:
        with step(record, f"{dataset}: choose a point (a random logical backup's position)"):
            at, expected, backup_id = _reference(plan, dataset, rng)
            outcome.backup_id = backup_id
    source = source_for(plan, dataset)[1]
    work = tempfile.mkdtemp(prefix="drfleet-pitr-drill-")
    data_dir = f"{work}/data"
    try:
        with step(record, f"{dataset}: restore base backup + WAL to {at}"):
            cluster.chown_tree(work)
            result = restore_to(plan, dataset, data_dir, at)
        with step(record, f"{dataset}: compare fingerprint"):
            dbname = conninfo_to_dict(source).get("dbname") or "postgres"
            restored = open_source("postgres").fingerprint(
                make_conninfo(source, host="127.0.0.1", port=str(result["port"]), dbname=dbname), {}, like=expected)
            differs = _differs(restored, expected)
            if differs:
                raise FingerprintMismatch("the database restored to the point differs from the fingerprint there",
                                          dataset=dataset, at=at, differs_in=", ".join(differs[:5]))
    finally:
        with step(record, f"{dataset}: remove scratch cluster"):
            try:
                cluster.stop(data_dir, mode="immediate")
            except Exception:  # noqa: BLE001 - not started, or already gone
                pass
            shutil.rmtree(work, ignore_errors=True)


def _mongodb(plan, dataset, record, outcome, at, expected, target, client_factory) -> None:
    from drfleet.pitr.oplog import restore_to_timestamp
    from drfleet.providers.datasources import open_source
    from drfleet.secrets import parse_target

    target = parse_target(target, what=f"staging target of {dataset}")
    with step(record, f"{dataset}: restore dump + oplog to {at}"):
        result = restore_to_timestamp(plan, dataset, target, at, client_factory=client_factory)
        outcome.backup_id = result["dump"]
    with step(record, f"{dataset}: compare fingerprint"):
        restored = open_source("mongodb").fingerprint(target, {}, like=expected)
        differs = _differs(restored, expected)
        if differs:
            raise FingerprintMismatch("the database restored to the point differs from the fingerprint there",
                                      dataset=dataset, at=at, differs_in=", ".join(differs[:5]))
