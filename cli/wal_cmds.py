"""`drfleet wal push|fetch|check|basebackup|lag|prune`, `drfleet standby create|promote|list`.

``wal push`` and ``wal fetch`` are PostgreSQL's archive_command and restore_command. They
run once per WAL file, so they import only what they need (no Celery, no Redis) and take
the plan and dataset from options or the server's environment:

    archive_command = 'drfleet wal push --plan /etc/drfleet/plan.yaml --dataset auth-db %p'
    restore_command = 'drfleet wal fetch --plan /etc/drfleet/plan.yaml --dataset auth-db %f %p'

(or DRFLEET_PLAN and DRFLEET_WAL_DATASET). Exit status 0 only when the file is durably
archived / fully restored; 1 otherwise, with the reason on stderr (PostgreSQL logs it).
"""

from __future__ import annotations

import json
import sys

import click

from drfleet.cli import output
from drfleet.cli.common import plan_option, reports_errors, send, use_plan

dataset_option = click.option("--dataset", "dataset", envvar="DRFLEET_WAL_DATASET",
                              help="Dataset whose archive this is (default: $DRFLEET_WAL_DATASET).")


def _wal_plan(plan_path: str | None, dataset: str | None):
    """The plan for push/fetch: never the demo plan (a wrong archive is worse than none)."""
    from drfleet.pitr.errors import WalPlanUnknown
    if not plan_path or not dataset:
        raise WalPlanUnknown("drfleet wal needs a plan and a dataset",
                             plan=plan_path or "(none)", dataset=dataset or "(none)")
    from drfleet.plan.loader import load_plan
    plan = load_plan(plan_path)
    plan.dataset(dataset)
    return plan


def _fail(exc: Exception, code: int = 1):
    click.echo(f"drfleet wal: {exc}", err=True)
    sys.exit(code)


@click.group("wal")
def wal_group():
    """PostgreSQL WAL archive: archive_command, restore_command, checks, base backups."""


@wal_group.command("push")
@plan_option
@dataset_option
@click.argument("path")
@click.option("-v", "--verbose", is_flag=True, help="Say what was done.")
def wal_push(plan_path, dataset, path, verbose):
    """Archive the WAL file PATH (archive_command's %p); exit 0 once durably stored."""
    from drfleet.errors import DrfleetError
    try:
        plan = _wal_plan(plan_path, dataset)
        from drfleet.pitr.wal import push_wal
        result = push_wal(plan, dataset, path)
    except DrfleetError as exc:
        _fail(exc)
    if verbose:
        click.echo(f"{result.name}: {result.status} ({result.plaintext_size} -> {result.stored_size} bytes "
                   f"in {result.seconds:.3f}s)", err=True)


from_option = click.option("--from", "location", default=None, metavar="LOCATION",
                           help="Read the archive copy at this storage location (default: the home store); "
                                "for recovery when the home region is lost.")


@wal_group.command("fetch")
@plan_option
@dataset_option
@from_option
@click.argument("name")
@click.argument("destination")
def wal_fetch(plan_path, dataset, location, name, destination):
    """Restore archived WAL file NAME to DESTINATION (restore_command's %f %p); exit 1
    when it is not archived, as PostgreSQL expects."""
    from drfleet.errors import DrfleetError
    from drfleet.pitr.errors import WalNotArchived
    try:
        plan = _wal_plan(plan_path, dataset)
        from drfleet.pitr.wal import fetch_wal
        from drfleet.pitr.walcopy import wal_store
        fetch_wal(plan, dataset, name, destination, store=wal_store(plan, dataset, location))
    except WalNotArchived:
        click.echo(f"drfleet wal fetch: {name} is not archived for {dataset}", err=True)
        sys.exit(1)
    except DrfleetError as exc:
        _fail(exc)


@wal_group.command("check")
@plan_option
@from_option
@click.argument("dataset")
@click.option("--json", "as_json", is_flag=True)
@reports_errors
def wal_check(plan_path, location, dataset, as_json):
    """Find gaps and timeline breaks in DATASET's archived WAL, and which base backups can
    still be restored (at the home store, or the copy at --from). Exit 1 when something
    is wrong."""
    plan = use_plan(plan_path, need_fleet=False)
    from drfleet.pitr.archive import check_archive, reachable_end, scan_archive
    from drfleet.pitr.basebackup import list_base_backups
    from drfleet.pitr.walcopy import wal_store
    from drfleet.pitr.walnames import Segment

    store = wal_store(plan, dataset, location)
    report = check_archive(plan, dataset, store=store)
    report["location"] = location or "home"
    state = scan_archive(plan, dataset, store=store)
    newest = state.newest()
    report["base_backups"] = []
    for record in list_base_backups(plan, dataset, location=location):
        pos = record.manifest.source_position
        end = reachable_end(state, Segment.parse(pos["start_wal"], state.segment_size))
        restorable = end is not None and end.segno >= Segment.parse(pos["stop_wal"], state.segment_size).segno
        report["base_backups"].append({
            "backup_id": record.backup_id, "start_wal": pos["start_wal"], "stop_wal": pos["stop_wal"],
            "restorable": restorable, "reaches": end.name if end else None,
            "reaches_newest": bool(end and newest and (end.timeline, end.segno) == (newest.timeline, newest.segno))})
    if as_json:
        output.result(report)
    else:
        for tli, info in sorted(report["timelines"].items()):
            click.echo(f"timeline {tli}: {info['segments']} segments {info['first']} .. {info['last']}")
        for gap in report["gaps"]:
            click.secho(f"GAP on timeline {gap['timeline']}: {gap['missing']} segment(s) missing from "
                        f"{gap['first_missing']} (after {gap['after']}, before {gap['before']})", fg="red")
        for problem in report["timeline_problems"]:
            click.secho(f"TIMELINE: {problem}", fg="red")
        for bb in report["base_backups"]:
            click.echo(f"base backup {bb['backup_id']}: {'restorable' if bb['restorable'] else 'NOT restorable'}"
                       f", WAL continuous to {bb['reaches']}")
        if report["ok"]:
            click.echo("archive ok")
    sys.exit(0 if report["ok"] else 1)


@wal_group.command("basebackup")
@plan_option
@click.argument("dataset")
@click.option("--policy", help="Policy recorded in the manifest (default: the dataset's wal policy).")
@click.option("--local", is_flag=True, help="Run here instead of on the region's worker.")
@click.option("--timeout", default=6 * 3600.0, show_default=True)
@click.option("--type", "backup_type", type=click.Choice(["full", "differential", "incremental"]),
              help="A file-level base backup of this type, read from the data directory (run it on the "
                   "database host); without it, a pg_basebackup stream.")
@click.option("--workers", type=click.IntRange(1, 64), help="With --type: pieces processed at once.")
@click.option("--standby", "standby", metavar="env:VAR|file:PATH",
              help="With --type and --local: read the files from this standby (its connection: env:VAR or "
                   "file:PATH); pg_backup_start/stop run on the primary.")
@reports_errors
def wal_basebackup(plan_path, dataset, policy, local, timeout, backup_type, workers, standby):
    """Take a physical base backup of DATASET (WAL from the archive): a pg_basebackup stream,
    or with --type a file-level full, differential or incremental one."""
    plan = use_plan(plan_path)
    if standby and not (backup_type and local):
        raise click.UsageError("--standby goes with --type and --local")
    if local and backup_type:
        from drfleet.pitr.physical import run_physical_backup
        from drfleet.secrets import parse_target
        conn = parse_target(standby, what="the standby") if standby else None  # never printed
        click.echo(json.dumps(run_physical_backup(plan, dataset, backup_type=backup_type, policy=policy,
                                                  workers=workers, standby_conn=conn), indent=2, default=str))
        return
    if local:
        from drfleet.pitr.basebackup import run_base_backup
        output.result(run_base_backup(plan, dataset, policy=policy))
        return
    import uuid

    from drfleet.cli.data_cmds import _wait
    from drfleet.tasks.wal import base_backup
    region = plan.dataset(dataset).region
    extra = {"backup_type": backup_type, **({"workers": workers} if workers else {})} if backup_type else {}
    result = send(base_backup, kwargs={"dataset": dataset, "region": region, "policy": policy,
                                       "slot": f"manual:{uuid.uuid4().hex}", **extra})
    output.result(_wait(result, label=f"base backup {dataset}", timeout=timeout))


@wal_group.command("lag")
@plan_option
@click.argument("dataset")
@reports_errors
def wal_lag(plan_path, dataset):
    """Measure the archive lag (achieved RPO) of DATASET against its RPO target."""
    plan = use_plan(plan_path)
    from drfleet.pitr.rpo import measure_archive_lag
    lag = measure_archive_lag(plan, dataset)
    output.result(lag.to_dict())
    sys.exit(0 if lag.within_target else 1)


@wal_group.command("copy")
@plan_option
@click.argument("dataset")
@click.option("--to", "location", default=None, metavar="LOCATION",
              help="Only this location (default: every location the dataset's policies copy to).")
@click.option("--json", "as_json", is_flag=True)
@reports_errors
def wal_copy(plan_path, dataset, location, as_json):
    """Copy DATASET's newly archived WAL to the other locations its policies name (beat
    does this every DRFLEET_WAL_COPY_SECONDS), then say what losing each region would
    lose now. A region-only dataset's WAL never leaves its region."""
    plan = use_plan(plan_path, need_fleet=False)
    from drfleet.pitr.walcopy import copy_wal, copy_wal_everywhere, region_losses
    results = [copy_wal(plan, dataset, location)] if location else copy_wal_everywhere(plan, dataset)
    losses = region_losses(plan, dataset)
    if as_json:
        click.echo(json.dumps({"copies": [r.as_dict() for r in results],
                               "if_region_lost": {x.region: x.loses_seconds for x in losses}}, indent=2))
        return
    for r in results:
        click.echo(f"{dataset} -> {r.location}: {len(r.copied)} file(s) copied ({r.bytes} bytes), "
                   f"{r.already} already there, lag {r.lag_seconds:.0f} s")
    if not results:
        click.echo(f"{dataset}: no location besides home to copy WAL to (see its policies' copies)")
    for loss in losses:
        click.echo(loss.describe(dataset))


@wal_group.command("prune")
@plan_option
@click.argument("dataset")
@click.option("--keep", "keep", multiple=True, required=True, help="Base backup ids that are kept.")
@click.option("--dry-run", is_flag=True)
@click.option("--yes", is_flag=True, help="Delete without showing the dry run and asking first.")
@reports_errors
def wal_prune(plan_path, dataset, keep, dry_run, yes):
    """Delete archived WAL that none of the kept base backups (--keep ID ...) needs. Without
    --yes it first shows what would go and asks. (Scheduled prunes do this by themselves.)"""
    plan = use_plan(plan_path)
    from drfleet.pitr.archive import prune_wal
    if not dry_run and not yes:
        preview = prune_wal(plan, dataset, list(keep), dry_run=True)
        output.result(preview)
        if not preview.get("deleted"):
            return
        click.confirm(f"delete these {len(preview['deleted'])} archived WAL files?", abort=True, err=True)
    output.result(prune_wal(plan, dataset, list(keep), dry_run=dry_run))


@click.group("standby")
def standby_group():
    """Streaming-replication standbys built from drfleet's base backups and archive."""


@standby_group.command("create")
@plan_option
@click.argument("dataset")
@click.option("--on", "host", default="local", show_default=True, help="Plan host, or local.")
@click.option("--to", "data_dir", required=True, help="New (or empty) data directory.")
@click.option("--port", type=int, help="Port of the standby (default: a free one).")
@click.option("--backup", "backup_id", help="Base backup to build from (default: the newest).")
@reports_errors
def standby_create(plan_path, dataset, host, data_dir, port, backup_id):
    """Build a standby of DATASET that streams from the primary: here from a stored base
    backup and the archive, or --on a plan host over SSH (host key checked) with
    pg_basebackup from the primary."""
    import os
    if host == "local":
        data_dir = os.path.abspath(os.path.expanduser(data_dir))  # resolved here, where it was typed
    elif not os.path.isabs(data_dir):
        raise click.BadParameter(f"{data_dir!r} is relative: on host {host} give an absolute path", param_hint="--to")
    plan = use_plan(plan_path, need_fleet=False)
    from drfleet.pitr.standby import create_standby
    output.result(create_standby(plan, dataset, data_dir=data_dir, host=host, port=port,
                                         backup_id=backup_id).to_dict())


@standby_group.command("promote")
@plan_option
@click.argument("dataset")
@click.option("--data-dir", help="The standby's data directory (default: the registered one).")
@click.option("--timeout", default=60.0, show_default=True)
@reports_errors
def standby_promote(plan_path, dataset, data_dir, timeout):
    """Promote DATASET's standby to a primary and wait until it accepts writes."""
    plan = use_plan(plan_path)
    from drfleet.pitr.standby import promote_standby
    output.result(promote_standby(plan, dataset, data_dir=data_dir, timeout=timeout))


@standby_group.command("list")
@click.argument("dataset")
def standby_list(dataset):
    """The standbys drfleet built for DATASET."""
    from drfleet.pitr.standby import list_standbys
    for info in list_standbys(dataset):
        click.echo(json.dumps(info.to_dict()))


COMMANDS: list = [wal_group, standby_group]
