"""Restoring a dataset's newest backup during a runbook.

Targets (``params.target``): a database reference (``env:VAR``, ``file:PATH`` or a URL
without password: restored with ``--clean``, so running it again is harmless), a local
directory, or ``host:PATH`` - restored into a private staging directory here, then mirrored
onto the step's host over SSH (rsync). ``params.locations`` limits where the backup is read
from (``offsite`` for offsite copies only, ``not-region:R`` for copies outside region R).
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

from drfleet.datapath.catalog import find_backup, list_backups
from drfleet.datapath.errors import BackupNotFound, DataPathError
from drfleet.datapath.restore import restore_backup
from drfleet.providers.datasources import open_source
from drfleet.providers.ssh import SshSession, rsync_push, with_retries
from drfleet.runbooks.actions import StepContext, action
from drfleet.runbooks.actions.hosts import _service_host
from drfleet.secrets import parse_target
from drfleet.state import verifications


class RestoredDataDiffers(DataPathError):
    hint = "the restored data does not match the backup: do not start the applications; restore an older backup"


def candidate_locations(ctx: StepContext, rule: str | None) -> list[str] | None:
    """The locations ``rule`` allows (None: every location). May be empty: the plan has no
    location the rule allows."""
    storage = ctx.plan.storage
    if not rule:
        return None
    if rule == "offsite":
        return [n for n, loc in storage.items() if loc.offsite]
    if rule.startswith("not-region:"):
        region = rule.split(":", 1)[1]
        return [n for n, loc in storage.items() if loc.offsite or loc.region != region]
    return [rule]


def newest_backup(ctx: StepContext, dataset: str, rule: str | None) -> tuple[str, str]:
    """(backup id, location) of the newest committed backup readable under ``rule``.
    Raises BackupNotFound naming where it looked, also when the plan has no location
    ``rule`` allows (an empty list must not widen to every location)."""
    locations = candidate_locations(ctx, rule)
    if locations == []:
        raise BackupNotFound(f"no storage location of the plan may serve {dataset} under {rule!r}",
                             dataset=dataset, rule=rule,
                             hint="add an offsite location (offsite: true) and copy backups there"
                             if rule == "offsite" else "copy the backups to a location outside that region")
    listing = list_backups(ctx.plan, dataset, locations=locations)
    if not listing.backups:
        raise BackupNotFound(f"no backup of {dataset} to restore", dataset=dataset,
                             looked_in=", ".join(locations or ctx.plan.storage),
                             problems=listing.problems or None)
    newest = listing.backups[-1]
    return newest.backup_id, newest.location


@action("restore")
def restore(ctx: StepContext) -> dict:
    """Restore the newest backup of ``params.dataset`` readable under ``params.locations``
    into ``params.target`` (a database, a directory, or ``host:PATH`` over SSH)."""
    dataset, target = ctx.p["dataset"], ctx.p["target"]
    chosen = ctx.output_of(ctx.p["backup"][5:]) if ctx.p.get("backup") else None
    if chosen:
        backup_id, location = chosen["backup_id"], chosen["location"]
    else:
        backup_id, location = newest_backup(ctx, dataset, ctx.p.get("locations"))
    kind = ctx.plan.dataset(dataset).kind
    if target.startswith("host:"):
        host = _service_host(ctx)
        remote = host.fill(target[5:])
        staging = ctx.workdir() / "restore" / dataset
        shutil.rmtree(staging, ignore_errors=True)
        summary = restore_backup(ctx.plan, f"{dataset}/{backup_id}", str(staging), location=location)
        with SshSession(host.target) as ssh:
            ssh.run(["mkdir", "-p", remote])
        pushed = with_retries(lambda: rsync_push(staging, host.target, remote, delete=True))
        shutil.rmtree(staging, ignore_errors=True)
        summary.update(target=f"{host.name}:{remote}", files_transferred=pushed.files_transferred)
        return summary
    options = {"clean": True} if kind == "postgres" else None
    if kind == "files":
        shutil.rmtree(target, ignore_errors=True)  # a partial earlier attempt; files restore needs empty
    return restore_backup(ctx.plan, f"{dataset}/{backup_id}", target, location=location, options=options)


def _parse_at(text: str) -> float:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BackupNotFound(f"--at {text!r} is not a time", hint="give an ISO time, e.g. 2026-11-21T03:15:00Z") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


@action("choose_backup")
def choose_backup(ctx: StepContext) -> dict:
    """The newest committed backup of the dataset whose latest verification passed (the
    "latest good backup"; the newest committed one if none was verified), taken before
    ``params.at`` when given. Raises BackupNotFound when there is none."""
    dataset = ctx.p["dataset"]
    listing = list_backups(ctx.plan, dataset)
    before = _parse_at(ctx.p["at"]) if ctx.p.get("at") else None
    backups = [b for b in listing.backups if before is None or b.manifest.created_at.timestamp() <= before]
    if not backups:
        raise BackupNotFound(f"no backup of {dataset} to restore" + (f" before {ctx.p['at']}" if before else ""),
                             dataset=dataset, problems=listing.problems or None)
    good = {(r.backup_id, r.location) for r in verifications.results(dataset) if r.ok}
    verified = [b for b in backups if (b.backup_id, b.location) in good]
    pick = (verified or backups)[-1]
    return {"backup_id": pick.backup_id, "location": pick.location, "verified": bool(verified),
            "created_at": pick.manifest.created_at.isoformat(), "candidates": len(backups)}


@action("verify_restore")
def verify_restore(ctx: StepContext) -> dict:
    """Compare the restored target with the fingerprint recorded at backup time (row or
    document counts and checksums per table/collection: `db.users.count()`, for every
    collection). Raises RestoredDataDiffers naming what differs."""
    chosen = ctx.output_of(ctx.p["backup"][5:]) or {}
    dataset = ctx.p["dataset"]
    record = find_backup(ctx.plan, f"{dataset}/{chosen['backup_id']}", location=chosen.get("location"))
    m = record.manifest
    module = open_source(m.kind)
    target = parse_target(ctx.p["target"], what=f"restore target of {dataset}")
    restored = module.fingerprint(target, {}, like=m.fingerprint)
    differs = sorted(k for k in set(restored) | set(m.fingerprint) if restored.get(k) != m.fingerprint.get(k))
    if differs:
        raise RestoredDataDiffers(f"the restored {dataset} differs from backup {m.backup_id}", dataset=dataset,
                                  backup_id=m.backup_id, differs_in=", ".join(differs[:10]))
    return {"backup_id": m.backup_id, "matches": True, "compared": sorted(m.fingerprint)[:50]}
