"""Drills: proof that backups restore, timed.

* restore: a random dataset (or the one given), a random kept backup, restored into a
  scratch target and its fingerprint compared with the one recorded at backup time; the
  wall time from the drill's start to "verified" is the measured RTO.
* region: every dataset of ``region`` restored from copies outside that region (as if it
  were gone); full: every dataset of the plan from offsite copies only. The drill fails
  if any dataset has no usable copy there.
* failover: the scenario's runbook run end to end in this process
  (``runbooks.runner.run_failover_drill``); when the plan's ``recovery:`` section names
  nothing for it in the region, the drill is recorded as ``not-available``.

``run_drill`` never raises for what a drill finds: every failure (restore failed, scratch
target not created, fingerprint mismatch, no copy) becomes a failed drill with the reason,
and the scratch target is removed whatever happens. The record is saved at the start and
at the end (``state.drills``), audited, and counted in the metrics.
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Callable, Iterator

from drfleet.datapath.catalog import BackupRecord, list_backups
from drfleet.datapath.errors import DataPathError
from drfleet.datapath.locations import store_for
from drfleet.datapath.reading import BackupReader, data_key_for
from drfleet.datapath.scratch import scratch_target
from drfleet.datapath.sources import source_for
from drfleet.errors import DrfleetError, error_text
from drfleet.plan.models import Plan
from drfleet.providers.datasources import open_source
from drfleet.runbooks.runner import run_failover_drill
from drfleet.state import drills as drill_state
from drfleet.state.drills import DatasetOutcome, DrillRecord, DrillStep
from drfleet.statuses import DrillResult

KINDS = ("restore", "failover", "region", "full")
PITR_LABELS = ("basebackup", "oplog-slice")   # parts of a point-in-time chain, not restorable alone


class FingerprintMismatch(DataPathError):
    hint = "the backup does not hold the data it claims: take a new backup now and inspect how the source changed"


class NoUsableCopy(DataPathError):
    hint = "add a copy target outside the region (all-regions, offsite) to the dataset's policies"


@contextlib.contextmanager
def step(record: DrillRecord, name: str) -> Iterator[DrillStep]:
    """Record one step; an exception marks it failed (with the error) and propagates."""
    current = DrillStep(name=name, started_at=time.time())
    record.steps.append(current)
    try:
        yield current
    except BaseException as exc:
        current.ok, current.detail = False, error_text(exc)
        raise
    finally:
        current.ended_at = time.time()
    current.ok = True


def restorable(plan: Plan, backup: BackupRecord) -> bool:
    """Backups a restore drill can restore and fingerprint: full backups, and files
    incrementals (restored with their whole chain: the tree of that day). Base backups and
    oplog slices are parts of a point-in-time chain (``pitr_drill``)."""
    m = backup.manifest
    if (m.labels or {}).get("type") in PITR_LABELS:
        return False
    if m.parents:
        return m.kind == "files"
    ds = plan.datasets.get(m.dataset)
    policy = next((p for p in ds.policies if p.name == m.policy), None) if ds else None
    return policy is None or policy.mode in ("full", "incremental", "oplog", "wal")


@contextlib.contextmanager
def scratch_steps(record: DrillRecord, dataset: str, kind: str, source_conn: str) -> Iterator[tuple[str, dict]]:
    """A scratch target whose creation and removal are drill steps; removed on every path."""
    with step(record, f"{dataset}: create scratch target"):
        manager = scratch_target(kind, source_conn)
        target, options = manager.__enter__()
    try:
        yield target, options
    except BaseException as exc:
        with step(record, f"{dataset}: remove scratch target"):
            manager.__exit__(type(exc), exc, exc.__traceback__)
        raise
    with step(record, f"{dataset}: remove scratch target"):
        manager.__exit__(None, None, None)


def restore_into_scratch(plan: Plan, backup: BackupRecord, record: DrillRecord) -> None:
    """Restore ``backup`` into a fresh scratch target and compare fingerprints; raises
    the first error (ScratchUnavailable, the source's RestoreFailed, envelope/integrity
    errors, FingerprintMismatch). The scratch target is removed on every path."""
    m = backup.manifest
    with step(record, f"{m.dataset}: open {m.backup_id} at {backup.location}"):
        module = open_source(m.kind)
        source_conn = "" if m.kind == "files" else source_for(plan, m.dataset)[1]
        reader = BackupReader(store_for(plan, backup.location), m, data_key_for(plan, m))
    with scratch_steps(record, m.dataset, m.kind, source_conn) as (target, options):
        with step(record, f"{m.dataset}: restore" + (f" (chain of {len(m.parents) + 1})" if m.parents else "")):
            if m.parents:   # an incremental: the chain, full first, gives that day's tree
                from drfleet.datapath.tree_restore import restore_tree
                restore_tree(plan, backup, target)
            else:
                module.restore(target, reader, options)
                reader.finish()
        with step(record, f"{m.dataset}: compare fingerprint"):
            restored = module.fingerprint(target, {}, like=m.fingerprint)
            if restored != m.fingerprint:
                changed = sorted(k for k in set(restored) | set(m.fingerprint)
                                 if restored.get(k) != m.fingerprint.get(k))
                raise FingerprintMismatch("restored data differs from the data backed up", dataset=m.dataset,
                                          backup_id=m.backup_id, differs_in=", ".join(changed[:5]) or "?")


def drill_dataset(plan: Plan, record: DrillRecord, dataset: str, backups: list[BackupRecord],
                  choose: Callable[[list[BackupRecord]], BackupRecord], where: str) -> DatasetOutcome:
    """Restore one chosen backup of ``dataset``; the outcome carries RTO (from the drill's
    start) and RPO (age of the newest candidate at the drill's start)."""
    candidates = [b for b in backups if b.dataset == dataset and restorable(plan, b)]
    if not candidates:
        reason = f"no usable backup of {dataset} {where}"
        record.steps.append(DrillStep(f"{dataset}: choose a backup", time.time(), time.time(), False, reason))
        return DatasetOutcome(dataset, ok=False, reason=reason)
    newest = max(candidates, key=lambda b: b.manifest.created_at)
    rpo = max(0.0, record.started_at - newest.manifest.created_at.timestamp())
    chosen = choose(candidates)
    first_step = len(record.steps)
    outcome = DatasetOutcome(dataset, ok=False, backup_id=chosen.backup_id, location=chosen.location,
                             rpo_seconds=round(rpo, 3))
    try:
        restore_into_scratch(plan, chosen, record)
    except Exception as exc:  # noqa: BLE001 - a drill reports every failure
        failed = next((s for s in record.steps[first_step:] if s.ok is False), None)
        outcome.reason = f"{failed.name.split(': ', 1)[-1]} failed: {failed.detail}" if failed else error_text(exc)
        return outcome
    outcome.ok, outcome.rto_seconds = True, round(time.time() - record.started_at, 3)
    return outcome


def outside_region(plan: Plan, region: str) -> list[str]:
    """Locations that survive the loss of ``region``: other regions' and offsite ones
    (an offsite location whose jurisdiction is ``region`` does not count)."""
    return [name for name, loc in plan.storage.items()
            if (loc.offsite and loc.jurisdiction != region) or (not loc.offsite and loc.region != region)]


def run_drill(plan: Plan, kind: str, *, region: str, dataset: str | None = None, scenario: str | None = None,
              scope: str | None = None, actor: str = "api", task_id: str | None = None,
              rng: random.Random | None = None, drill_id: str | None = None,
              backup_id: str | None = None) -> DrillRecord:
    """Run one drill and return its finished record. ``backup_id`` (restore drills, with
    ``dataset``): drill that backup instead of a random one (an incremental: "day N").
    Raises ValueError for an unknown kind and UnknownPlanName for an unknown dataset
    (before anything is recorded)."""
    if kind not in KINDS:
        raise ValueError(f"unknown drill kind {kind!r}; kinds are {', '.join(KINDS)}")
    if dataset is not None:
        plan.dataset(dataset)
    rng = rng or random.SystemRandom()
    record = DrillRecord(kind=kind, region=region, scope=scope, scenario=scenario, actor=actor, task_id=task_id,
                         **({"drill_id": drill_id} if drill_id else {}))
    drill_state.save(record)
    try:
        if kind == "failover":
            _failover(plan, record)
        else:
            _restores(plan, record, dataset, rng, backup_id)
    except Exception as exc:  # noqa: BLE001 - the drill machinery itself broke: still a result
        record.result, record.reason = DrillResult.FAILED, f"drill aborted: {error_text(exc)}"
    record.ended_at = time.time()
    if record.result == DrillResult.PASSED and record.rto_seconds is None:
        record.rto_seconds = round(record.ended_at - record.started_at, 3)
    drill_state.save(record)
    _announce(record)
    if record.result == DrillResult.FAILED:
        from drfleet.runbooks.notify import notify
        notify(plan, "drill-failed", f"{record.kind} drill failed", record.reason or "no reason recorded",
               drill_id=record.drill_id, region=record.region)
    return record


def _restores(plan: Plan, record: DrillRecord, dataset: str | None, rng: random.Random,
              backup_id: str | None = None) -> None:
    if record.kind == "restore":
        names = [dataset] if dataset else [rng.choice(sorted(plan.datasets))]
        locations, where, choose = None, "in any location", rng.choice
        if backup_id:
            where = f"with id {backup_id}"

            def choose(backups: list[BackupRecord]) -> BackupRecord:
                named = [b for b in backups if b.backup_id == backup_id]
                if not named:
                    raise DataPathError(f"backup {backup_id} of {dataset} is not restorable here",
                                        dataset=dataset, backup_id=backup_id)
                return named[0]
    elif record.kind == "region":
        if record.region not in plan.region_names:
            raise DataPathError(f"region {record.region!r} is not in the plan", regions=", ".join(plan.region_names))
        names = [dataset] if dataset else [n for n, d in plan.datasets.items() if d.region == record.region]
        locations = outside_region(plan, record.region)
        where, choose = f"outside region {record.region}", _newest
    else:
        names = [dataset] if dataset else list(plan.datasets)
        locations = [n for n, loc in plan.storage.items() if loc.offsite]
        where, choose = "in an offsite location", _newest
    names.sort(key=lambda n: (plan.dataset(n).priority, n))
    record.scope = record.scope or ", ".join(names)
    if locations == []:
        listing_backups: list[BackupRecord] = []
    else:
        with step(record, f"list backups {where}"):
            listing_backups = list_backups(plan, None if len(names) > 1 else names[0], locations=locations).backups
    for name in names:
        record.datasets.append(drill_dataset(plan, record, name, listing_backups, choose, where))
    failed = [o for o in record.datasets if not o.ok]
    record.result = DrillResult.FAILED if failed or not names else DrillResult.PASSED
    record.reason = "; ".join(f"{o.dataset}: {o.reason}" for o in failed) if failed else (
        "" if names else f"no dataset {where}")
    rpos = [o.rpo_seconds for o in record.datasets if o.rpo_seconds is not None]
    record.rpo_seconds = max(rpos) if rpos else None
    if record.result == DrillResult.PASSED:
        record.rto_seconds = max(o.rto_seconds for o in record.datasets)


def _newest(backups: list[BackupRecord]) -> BackupRecord:
    return max(backups, key=lambda b: (b.manifest.created_at, b.backup_id))


def _failover(plan: Plan, record: DrillRecord) -> None:
    """Run the scenario's runbook in this process (``run_failover_drill``, which returns its
    run report) for a service, database or region the plan's ``recovery:`` section names in
    the drill's region."""
    scenario = _failover_scenario(record.scenario or record.scope)  # beat sends the plan's scope text
    record.scenario = scenario
    params = _failover_target(plan, scenario, record.region)
    if params is None:
        record.result = DrillResult.NOT_AVAILABLE
        record.reason = (f"the plan's recovery section names nothing for a {scenario} drill in "
                         f"{record.region}; add recovery.services / recovery.databases (docs/runbooks.md)")
        return
    with step(record, f"runbook {scenario} {' '.join(f'{k}={v}' for k, v in params.items())}"):
        outcome = run_failover_drill(plan, scenario, **params) or {}
    for s in outcome.get("steps", []):
        status = s.get("status")
        record.steps.append(DrillStep(
            name=str(s.get("name", "?")), started_at=float(s.get("started_at") or 0),
            ended_at=s.get("finished_at", s.get("ended_at")),
            ok=None if status in (None, "pending") else status in ("succeeded", "skipped"),
            detail=str(s.get("error") or s.get("output") or s.get("detail") or "")))
    ok = bool(outcome.get("ok", outcome.get("result") == "succeeded"))
    record.result = DrillResult.PASSED if ok else DrillResult.FAILED
    record.reason = str(outcome.get("reason") or outcome.get("error") or "")
    if ok:
        record.rto_seconds = outcome.get("rto_seconds") or round(time.time() - record.started_at, 3)


def _failover_scenario(asked: str | None) -> str:
    """The runbook scenario for a drill's scenario or scope text ("simulated service failure",
    "data center failover", "database-failure", ...)."""
    text = (asked or "").lower()
    if text in ("service-failure", "database-failure", "region-failure", "catastrophic"):
        return text
    if "database" in text or "db" in text.split():
        return "database-failure"
    if "region" in text or "data center" in text or "datacenter" in text:
        return "region-failure"
    if "catastroph" in text:
        return "catastrophic"
    return "service-failure"


def _failover_target(plan: Plan, scenario: str, region: str) -> dict | None:
    """Parameters for the runbook: a random service or database of ``region`` from the
    recovery section (None when there is none), or the region itself."""
    if scenario in ("region-failure", "catastrophic"):
        return {"region": region} if scenario == "region-failure" else {}
    if not plan.recovery:
        return None
    from drfleet.plan.recovery import recovery_config
    rec = recovery_config(plan)
    if scenario == "service-failure":
        names = sorted(n for n, svc in rec.services.items() if svc.region == region)
        return {"service": random.choice(names)} if names else None
    names = sorted(n for n in rec.databases if n in plan.datasets and plan.datasets[n].region == region)
    return {"dataset": random.choice(names)} if names else None


def _announce(record: DrillRecord) -> None:
    """Audit the drill and count it; a failed drill is what the DrillFailed alert sees."""
    from drfleet import metrics
    from drfleet.state import audit

    metrics.observe_drill(record.kind, record.result, record.rto_seconds)
    audit.record("drill", actor=record.actor, outcome=record.result, drill_id=record.drill_id, kind=record.kind,
                 region=record.region, task_id=record.task_id, reason=record.reason or None,
                 datasets=[o.dataset for o in record.datasets], rto_seconds=record.rto_seconds,
                 rpo_seconds=record.rpo_seconds)


def cold_locations(plan: Plan) -> list[str]:
    """Locations some policy copies to as cold storage (``offsite-cold``), sorted."""
    from drfleet.datapath.locations import copy_locations

    cold = set()
    for name, ds in plan.datasets.items():
        for policy in ds.policies:
            try:
                cold.update(loc for loc, is_cold in copy_locations(plan, name, policy.name) if is_cold)
            except (KeyError, DrfleetError):
                continue
    return sorted(cold)
