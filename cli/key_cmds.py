"""``drfleet keys rewrap`` and ``drfleet keys check`` (added to the ``keys`` group of
cli/data_cmds.py). The work is in datapath/rewrap.py and datapath/key_checks.py."""

from __future__ import annotations

import json
import sys

import click

from drfleet.cli import output
from drfleet.cli.common import plan_option, reports_errors, use_plan
from drfleet.cli.data_cmds import keys_group
from drfleet.errors import DrfleetError

COMMANDS: list = []  # both commands join the existing `keys` group instead


class AuditUnavailable(DrfleetError):
    hint = "start Redis (DRFLEET_STATE_URL) so the operation is recorded, then run the command again"


@keys_group.command("rewrap")
@plan_option
@click.argument("category")
@click.option("--dry-run", is_flag=True, help="List the backups that would be re-wrapped; change nothing.")
@click.option("--yes", is_flag=True, help="Do it without asking (scripts, runbooks).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@reports_errors
def keys_rewrap(plan_path, category, dry_run, yes, as_json):
    """Move CATEGORY's old backups to its active key without re-uploading data.

    For every manifest (in every storage location) whose data key is wrapped under an
    older master key of CATEGORY: unwrap it with the old key, check the manifest's MAC,
    wrap it under the active key, sign again and replace the manifest atomically. Objects
    are not read or rewritten. Each re-wrapped manifest is recorded in the audit log.
    Run `drfleet keys rotate CATEGORY` first; remove an old key from the keyring only after
    this reports nothing pending. Exit 1 if any manifest could not be re-wrapped."""
    plan = use_plan(plan_path)
    from drfleet.datapath.rewrap import find_old_wrappings, rewrap_category

    found = find_old_wrappings(plan, category)
    if dry_run or not found.pending:
        _show(found, as_json, dry_run=True)
        sys.exit(1 if found.problems else 0)
    old = sorted({k for item in found.pending for k in item.old_key_ids})
    locations = sorted({item.location for item in found.pending})
    click.echo(f"will re-wrap {len(found.pending)} manifest(s) of {category} in {', '.join(locations)} "
               f"from {', '.join(old)} to {found.active_key_id}; data objects are not touched", err=True)
    if not yes:
        click.confirm("re-wrap now?", abort=True, err=True)
    from drfleet.state import audit
    try:
        audit.record("keys.rewrap", actor="cli", outcome="started", category=category,
                     manifests=len(found.pending), to_key=found.active_key_id)
    except Exception:  # noqa: BLE001 - redis errors of any kind: nothing has changed yet
        raise AuditUnavailable("the audit log is unreachable; refusing to re-wrap keys unrecorded",
                               category=category) from None

    def audited(item, new_key_id):
        try:
            audit.record("keys.rewrap.manifest", actor="cli", outcome="succeeded", category=category,
                         dataset=item.dataset, backup_id=item.backup_id, location=item.location,
                         from_key=",".join(item.old_key_ids), to_key=new_key_id)
        except Exception:  # noqa: BLE001 - stop: every re-wrap must be on record; re-running is safe
            raise AuditUnavailable("the audit log became unreachable; stopped after the last recorded "
                                   "re-wrap (this one is done but unrecorded)", category=category,
                                   backup_id=item.backup_id, location=item.location) from None

    report = rewrap_category(plan, category, on_rewrapped=audited)
    audit.record("keys.rewrap", actor="cli", outcome="failed" if report.pending else "succeeded",
                 category=category, rewrapped=len(report.rewrapped), pending=len(report.pending),
                 to_key=report.active_key_id)
    _show(report, as_json, dry_run=False)
    sys.exit(1 if report.pending or report.problems else 0)


def _show(report, as_json: bool, *, dry_run: bool) -> None:
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "dry_run": dry_run}, indent=2))
        return
    click.echo(f"{report.category}: active key {report.active_key_id}; "
               f"{report.current} manifest(s) already use it")
    for item in report.rewrapped:
        click.echo(f"  re-wrapped  {item.describe()}")
    for item in report.pending:
        click.echo(f"  {'would re-wrap' if dry_run else 'NOT done'}  {item.describe()}")
    if not report.pending and not report.rewrapped:
        click.echo("  nothing to re-wrap")
    for problem in report.problems:
        click.secho(f"problem: {problem}", fg="yellow", err=True)


@keys_group.command("check")
@plan_option
@click.option("--json", "as_json", is_flag=True)
@reports_errors
def keys_check(plan_path, as_json):
    """Check every key category's keyring: it loads, is private (mode 0600), belongs to
    its category, and shares neither its file, its variable nor any key with another
    category. Exit 1 on any problem."""
    plan = use_plan(plan_path)
    from drfleet.datapath.key_checks import check_key_separation

    report = check_key_separation(plan)
    if as_json:
        click.echo(json.dumps({"categories": report.categories, "problems": report.problems}, indent=2))
    else:
        output.table(["category", "active key", "keys"],
                     [(category, info.get("active", "UNUSABLE"), len(info.get("keys", [])))
                      for category, info in report.categories.items()], empty="no key categories")
        for problem in report.problems:
            click.secho(f"problem: {problem}", fg="red", err=True)
    sys.exit(0 if report.ok else 1)
