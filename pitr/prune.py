"""Retention with WAL: the data path's prune (``datapath.prune``) plus, for every
WAL-archived PostgreSQL dataset at its home location, the archived WAL that no kept base
backup needs any more (``pitr.archive.prune_wal``; with no kept base backup, nothing).

``prune_location`` and ``prune_region`` take and return what ``datapath.prune``'s do and
raise what they raise; the WAL step runs under the same prune lock, after the dataset's
backups were deleted. A WAL retention failure is a problem in the location's report, not
an exception.
"""

from __future__ import annotations

from drfleet.datapath import prune as backups
from drfleet.datapath.locations import home_location
from drfleet.datapath.prune import LocationReport, PrunedDataset
from drfleet.errors import DrfleetError
from drfleet.pitr import archive
from drfleet.plan.models import Plan
from drfleet.state import audit


def prune_location(plan: Plan, location: str, **options) -> LocationReport:
    """``datapath.prune.prune_location`` with WAL retention."""
    return backups.prune_location(plan, location, after_dataset=prune_wal_of, **options)


def prune_region(plan: Plan, region: str, **options) -> list[LocationReport]:
    """``datapath.prune.prune_region`` with WAL retention."""
    return backups.prune_region(plan, region, after_dataset=prune_wal_of, **options)


def prune_wal_of(pruned: PrunedDataset) -> None:
    """Delete the archived WAL of ``pruned.dataset`` that no kept base backup needs, when
    the dataset archives WAL and this is its home location; record what went in the report
    and the audit log."""
    plan, dataset = pruned.plan, pruned.dataset
    ds = plan.dataset(dataset)
    if ds.kind != "postgres" or not any(p.mode == "wal" for p in ds.policies):
        return
    if pruned.location != home_location(plan, dataset):
        return  # WAL is archived to the home store only
    kept = [pruned.manifests[v.backup.backup_id] for v in pruned.decision.kept
            if pruned.manifests[v.backup.backup_id].labels.get("type") == "basebackup"]
    try:
        outcome = archive.prune_wal(plan, dataset, kept, store=pruned.store)
    except DrfleetError as exc:
        pruned.report.problems.append(f"{dataset}: WAL retention failed: {exc.message}")
        return
    if outcome.get("deleted"):
        audit.record("prune.wal", actor=pruned.actor, outcome="succeeded", client=pruned.client, dataset=dataset,
                     location=pruned.location, needed_from=outcome.get("needed_from"),
                     deleted=len(outcome["deleted"]))
        pruned.report.deleted.extend(f"{dataset}/wal/{name}" for name in outcome["deleted"])
