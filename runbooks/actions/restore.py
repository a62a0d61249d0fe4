"""Restoring a dataset's newest backup during a runbook.

Targets (``params.target``): a database reference (``env:VAR``, ``file:PATH`` or a URL
without password: restored with ``--clean``, so running it again is harmless), a local
directory, or ``host:PATH`` - restored into a private staging directory here, then mirrored
onto the step's host over SSH (rsync). ``params.locations`` limits where the backup is read
from (``offsite`` for offsite copies only, ``not-region:R`` for copies outside region R).
"""

from __future__ import annotations

import shutil

from drfleet.datapath.catalog import list_backups
from drfleet.datapath.errors import BackupNotFound
from drfleet.datapath.restore import restore_backup
from drfleet.providers.ssh import SshSession, rsync_push, with_retries
from drfleet.runbooks.actions import StepContext, action
from drfleet.runbooks.actions.hosts import _service_host


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
