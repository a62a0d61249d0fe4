"""``drfleet copies check [DATASET]``: every copy of every backup against its manifest;
missing or damaged copies re-seeded from a good one (``datapath.copies_check``)."""

from __future__ import annotations

import json
import sys

import click

from drfleet.cli import output
from drfleet.cli.common import plan_option, reports_errors, use_plan


@click.group("copies")
def copies_group():
    """Check the copies of backups in every storage location, and repair them."""


@copies_group.command("check")
@plan_option
@click.argument("dataset", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON document: every copy, what was repaired.")
@click.option("--repair/--no-repair", default=True, show_default=True,
              help="Re-seed missing or damaged copies from a good copy.")
@reports_errors
def copies_check(plan_path, dataset, as_json, repair):
    """Compare every copy of every backup of DATASET (or of every dataset) with its
    manifest: the manifest's MAC, each object's size and SHA-256. Copies the policy names
    but that are missing, and damaged copies, are re-seeded from a good copy (the home
    store's first) unless --no-repair. Runs here: this machine needs the plan's stores and
    keyrings. Exit 0 when every copy is good (after repair), 1 otherwise."""
    plan = use_plan(plan_path)
    from drfleet.datapath.copies_check import check_copies

    with output.Progress("copies check", unit="copies") as shown:
        report = check_copies(plan, dataset, repair=repair,
                              progress=lambda done, total, what: shown.update(done, total=total, step=what))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        _print(report)
    sys.exit(0 if report.healthy else 1)


def _print(report) -> None:
    for backup in report.backups:
        for copy in backup.copies:
            if copy.repaired:
                mark, color = "repaired", "green"
            elif copy.status in ("ok", "expired"):
                mark, color = copy.status, None
            else:
                mark, color = copy.status.upper(), "red"
            extra = "" if copy.expected else "  (not a policy location)"
            click.secho(f"{backup.dataset:20s} {backup.backup_id:26s} {copy.location:20s} {mark}{extra}", fg=color)
            shown = copy.problems if copy.status != "ok" or copy.repaired else []
            for problem in shown:
                click.echo(f"    {problem}")
            if copy.repair_error:
                click.secho(f"    not repaired: {copy.repair_error}", fg="red")
    if not report.backups:
        click.echo("no backups")
    for problem in report.problems:
        click.secho(f"problem: {problem}", fg="yellow", err=True)
    repaired = report.repaired
    click.echo(f"{len(repaired)} cop{'y' if len(repaired) == 1 else 'ies'} repaired"
               + (": " + ", ".join(repaired) if repaired else ""))


COMMANDS: list = [copies_group]
