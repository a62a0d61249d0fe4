"""`drfleet prune`, `drfleet hold` / `release` / `holds` (retention; issue 4)."""

from __future__ import annotations

import getpass
import json
import sys

import click

from drfleet.cli import output
from drfleet.cli.common import plan_option, reports_errors, use_plan


@click.command("prune")
@plan_option
@click.option("--dry-run", is_flag=True, help="List what would be deleted and why; delete nothing.")
@click.option("--dataset", help="Only this dataset.")
@click.option("--location", "locations", multiple=True, help="Only these storage locations (default: all).")
@click.option("--wait", "wait_seconds", default=0.0, show_default=True,
              help="Seconds to wait for another prune of the same location to finish.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document with every verdict.")
@click.option("--yes", is_flag=True, help="Delete without showing the dry run and asking first.")
@reports_errors
def prune_cmd(plan_path, dry_run, dataset, locations, wait_seconds, as_json, yes):
    """Apply retention now, in this process, to every storage location: delete what no
    policy keeps, never a held backup, the newest verified one, or a parent of a kept
    incremental. Without --yes it first shows what would go and asks. Exit 1 if a
    location could not be pruned completely."""
    plan = use_plan(plan_path)
    from drfleet.pitr.prune import prune_location

    if dataset:
        plan.dataset(dataset)
    for name in locations:
        if name not in plan.storage:
            raise click.BadParameter(f"unknown location {name!r} (plan has: {', '.join(plan.storage)})",
                                     param_hint="--location")
    targets = list(locations or plan.storage)
    if not dry_run and not yes:
        preview = [prune_location(plan, name, dataset=dataset, dry_run=True, actor="cli",
                                  wait_seconds=wait_seconds) for name in targets]
        doomed = sum(len(r.to_dict(verdicts=False)["deleted"]) + len(r.orphans) for r in preview)
        if not doomed:
            for report in preview:
                _print_report(report)
            click.echo("nothing to delete")
            sys.exit(1 if any(r.problems for r in preview) else 0)
        for report in preview:
            _print_report(report)
        click.confirm(f"delete these {doomed} backups/leftovers?", abort=True, err=True)
    reports = [prune_location(plan, name, dataset=dataset, dry_run=dry_run, actor="cli",
                              wait_seconds=wait_seconds)
               for name in targets]
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "locations": [r.to_dict() for r in reports]}, indent=2))
    else:
        for report in reports:
            _print_report(report)
    sys.exit(1 if any(r.problems for r in reports) else 0)


def _print_report(report) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    counts = report.to_dict(verdicts=False)
    click.secho(f"{report.location}: {verb} {len(counts['deleted'])}, kept {counts['kept']}", bold=True)
    for decision in report.decisions.values():
        for v in decision.verdicts:
            if v.keep and not report.dry_run:
                continue
            label = "keep  " if v.keep else ("delete" if report.dry_run else "gone  ")
            click.echo(f"  {label} {v.backup.dataset}/{v.backup.backup_id} {v.backup.policy:12s} "
                       f"{'; '.join(v.reasons)}")
    for orphan in report.orphans:
        click.echo(f"  {'orphan' if report.dry_run else 'cleaned'} {orphan} (objects without a manifest)")
    for problem in report.problems:
        click.secho(f"  problem: {problem}", fg="yellow", err=True)


@click.command("hold")
@plan_option
@click.argument("backup_id")
@click.option("--reason", default="", help="Why (a case or ticket reference; stored unencrypted).")
@click.option("--by", "by", default=None, help="Who places the hold (default: the current user).")
@reports_errors
def hold_cmd(plan_path, backup_id, reason, by):
    """Put BACKUP_ID (an id or DATASET/ID) on legal hold: prune never deletes it, in any
    location, until `drfleet release`. The hold is stored next to the backup in every store
    that has it, so it survives the loss of the fleet's Redis."""
    plan = use_plan(plan_path)
    from drfleet.datapath.holds import place_hold

    hold = place_hold(plan, backup_id, by=by or getpass.getuser(), reason=reason)
    _audit_quietly("hold", dataset=hold.dataset, backup_id=hold.backup_id, by=hold.by)
    output.done(hold.to_dict(), f"{hold.dataset}/{hold.backup_id} is on hold in {', '.join(hold.locations)} "
                                f"(by {hold.by}{': ' + reason if reason else ''})")


@click.command("release")
@plan_option
@click.argument("backup_id")
@reports_errors
def release_cmd(plan_path, backup_id):
    """Lift the legal hold on BACKUP_ID (an id or DATASET/ID) in every location; the next
    prune treats it like any other backup."""
    plan = use_plan(plan_path)
    from drfleet.datapath.holds import release_hold

    released = release_hold(plan, backup_id)
    if not released:
        output.done({"backup_id": backup_id, "released": []}, f"{backup_id} was not on hold")
        return
    _audit_quietly("release", backup_id=backup_id.rsplit("/", 1)[-1], locations=released)
    output.done({"backup_id": backup_id, "released": released},
                f"released the hold on {backup_id} in {', '.join(released)}")


@click.command("holds")
@plan_option
@click.argument("dataset", required=False)
@click.option("--json", "as_json", is_flag=True)
@reports_errors
def holds_cmd(plan_path, dataset, as_json):
    """List the backups on legal hold (of DATASET, or of every dataset)."""
    plan = use_plan(plan_path)
    from drfleet.datapath.holds import list_holds

    holds = list_holds(plan, dataset)
    if as_json:
        for hold in holds:
            click.echo(json.dumps(hold.to_dict(), sort_keys=True))
        return
    output.rows([h.to_dict() for h in holds], headers=["backup", "by", "at", "reason", "locations"], empty="no holds",
                render=lambda h: (f"{h['dataset']}/{h['backup_id']}", h["by"], output.timestamp(h["at"]), h["reason"],
                                  ", ".join(h["locations"])))


def _audit_quietly(action, **details):
    from drfleet.state import audit
    try:
        audit.record(action, actor="cli", outcome="succeeded", **details)
    except Exception:  # noqa: BLE001 - the hold itself is in the stores; say it was not logged
        click.secho(f"warning: the audit log (Redis) is unreachable; this {action} was not recorded",
                    fg="yellow", err=True)


COMMANDS: list = [prune_cmd, hold_cmd, release_cmd, holds_cmd]
