"""``drfleet backup|trigger|backups list|restore|verify|keys|audit``."""

from __future__ import annotations

import json
import sys
import time
import uuid

import click

from drfleet.cli import output
from drfleet.cli.common import plan_option, reports_errors, require_state, send, use_plan


def _wait(result, *, label: str, timeout: float, total: int | None = None, unit: str = "bytes"):
    """Follow a task until it ends, showing its progress (done, total, percentage, rate and
    ETA when a total is known; ``total``: an estimate until the task reports its own) on
    stderr; return its result."""
    deadline = time.monotonic() + timeout
    with output.Progress(label, total=total, unit=unit) as progress:
        progress.update(step="queued")
        while not result.ready():
            if time.monotonic() > deadline:
                raise click.ClickException(f"{label}: still running after {output.duration(timeout)} "
                                           f"(task {result.id})")
            state = result.state
            if state == "PROGRESS" and isinstance(result.info, dict):
                info = result.info
                done = info.get("bytes", info.get("done"))
                progress.update(done, total=info.get("total_bytes") or info.get("total"),
                                step=info.get("step") or "running")
            elif state == "STARTED":
                progress.update(step="running")
            time.sleep(0.2)
        value = result.get(propagate=True)
        if isinstance(value, dict):
            progress.update(value.get("plaintext_size") or value.get("bytes"), step=str(value.get("status") or "done"))
    return value


def _last_size(plan, dataset: str, policy: str) -> int | None:
    """The plaintext size of the newest backup of ``dataset`` under ``policy`` in its home
    location (an estimate of the next one's, for progress); None when there is none."""
    from drfleet.datapath.catalog import list_backups
    from drfleet.datapath.locations import home_location
    try:
        listing = list_backups(plan, dataset, locations=[home_location(plan, dataset)])
    except Exception:  # noqa: BLE001 - an estimate only
        return None
    sizes = [r.manifest.plaintext_size for r in listing.backups if r.manifest.policy == policy]
    return sizes[-1] if sizes else None


BACKUP_KEYS = ("status", "dataset", "policy", "backup_id", "location", "plaintext_size", "stored_size", "seconds",
               "slot", "followups")


@click.command("backup")
@plan_option
@click.argument("dataset")
@click.option("--policy", help="Policy to run (default: the dataset's first).")
@click.option("--wait/--no-wait", default=False, help="Follow progress until the backup ends.")
@click.option("--timeout", default=6 * 3600.0, show_default=True)
@reports_errors
def backup(plan_path, dataset, policy, wait, timeout):
    """Enqueue a backup of DATASET now, on its home region's data lane."""
    plan = use_plan(plan_path)
    from drfleet.tasks.backup import backup as backup_task

    ds = plan.dataset(dataset)
    policy = policy or ds.policies[0].name
    plan.policy(dataset, policy)
    result = send(backup_task, kwargs={"dataset": dataset, "policy": policy, "region": ds.region,
                                       "slot": f"manual:{uuid.uuid4().hex}"},
                  headers={"drfleet_actor": "cli"})
    if not wait:
        output.result({"status": "queued", "dataset": dataset, "policy": policy, "queue": f"{ds.region}.data",
                       "task_id": result.id})
        return
    output.note(f"backup of {dataset} ({policy}) queued on {ds.region}.data as task {result.id}")
    summary = _wait(result, label=f"backup {dataset}", timeout=timeout, total=_last_size(plan, dataset, policy))
    output.result(summary, keys=BACKUP_KEYS)


@click.command("trigger")
@plan_option
@click.argument("dataset")
@click.option("--event", help="Only policies triggered by this event (e.g. deployment).")
@click.option("--event-id", help="Id of the event; re-sending the same id takes no second backup.")
@reports_errors
def trigger(plan_path, dataset, event, event_id):
    """Take an on-event backup of DATASET now (e.g. after a deployment)."""
    plan = use_plan(plan_path)
    from drfleet.tasks.backup import trigger as trigger_task

    ds = plan.dataset(dataset)
    if not any(p.trigger.kind == "on-event" for p in ds.policies):
        raise click.ClickException(f"dataset {dataset} has no on-event policy; use `drfleet backup {dataset}`")
    events = sorted({p.trigger.event for p in ds.policies if p.trigger.kind == "on-event"})
    if event is not None and event not in events:
        raise click.ClickException(f"dataset {dataset} has no on-event policy for event {event!r} "
                                   f"(its events: {', '.join(events)}); nothing was sent")
    result = send(trigger_task, kwargs={"dataset": dataset, "region": ds.region, "event": event,
                                        "event_id": event_id})
    output.note(f"trigger for {dataset} sent as task {result.id}")
    output.result({"status": "sent", "dataset": dataset, "event": event, "event_id": event_id,
                   "task_id": result.id})


@click.group("backups")
def backups_group():
    """List committed backups."""


@backups_group.command("list")
@plan_option
@click.argument("dataset", required=False)
@click.option("--location", multiple=True, help="Only these storage locations.")
@reports_errors
def backups_list(plan_path, dataset, location):
    """List the backups of DATASET (or all datasets) in every storage location."""
    plan = use_plan(plan_path)
    from drfleet.datapath.catalog import list_backups

    if dataset is not None:
        plan.dataset(dataset)  # an unknown name is an error naming the known datasets
    for name in location:
        if name not in plan.storage:
            raise click.BadParameter(f"unknown storage location {name!r} (known: {', '.join(sorted(plan.storage))})",
                                     param_hint="--location")
    listing = list_backups(plan, dataset, locations=list(location) or None)
    records = [{"backup_id": r.manifest.backup_id, "dataset": r.manifest.dataset, "policy": r.manifest.policy,
                "location": r.location, "kind": r.manifest.kind, "created_at": r.manifest.created_at.isoformat(),
                "slot": r.manifest.slot, "plaintext_size": r.manifest.plaintext_size,
                "stored_size": sum(o.size for o in r.manifest.objects)} for r in listing.backups]
    output.rows(records, headers=["dataset", "backup", "policy", "location", "size", "stored", "taken"],
                render=lambda b: (b["dataset"], b["backup_id"], b["policy"], b["location"],
                                  output.size(b["plaintext_size"]), output.size(b["stored_size"]),
                                  output.timestamp(b["created_at"])),
                empty="no backups")
    for problem in listing.problems:
        click.secho(f"problem: {problem}", fg="yellow", err=True)


def _region_of(plan, backup_id):
    from drfleet.datapath.catalog import find_backup
    record = find_backup(plan, backup_id)
    return record, plan.dataset(record.dataset).region


@click.command("restore")
@plan_option
@click.argument("backup_id", required=False)
@click.option("--to", "target",
              help="Directory (files) or database: a URL without password, env:VAR or file:PATH. "
                   "With --all: the directory files datasets are restored under (DIR/DATASET).")
@click.option("--location", help="Restore from this storage location's copy.")
@click.option("--dry-run", is_flag=True, help="Print what would be restored, touch nothing.")
@click.option("--local", is_flag=True, help="Run here instead of on the region's worker.")
@click.option("--timeout", default=6 * 3600.0, show_default=True)
@click.option("--at", "at", help="Point in time: PostgreSQL latest, an LSN or a time (--to is a new data "
                                 "directory); MongoDB T:I or a time (dump + oplog; --to the target "
                                 "database); with --all, the newest backups at or before it.")
@click.option("--port", type=int, help="With --at: port of the restored cluster (default: a free one).")
@click.option("--yes", is_flag=True, help="Restore over a database target without asking.")
@click.option("--all", "everything", is_flag=True,
              help="Every dataset (of --service or --region, else the whole plan) to one point in time, in "
                   "dependency order, here; progress and one summary.")
@click.option("--service", help="With --all: the datasets of this recovery service, into its restore targets.")
@click.option("--region", help="With --all: the datasets homed in this region.")
@click.option("--delta", is_flag=True, help="With --at and a file-level base backup: restore into the stopped data "
                                           "directory of the same cluster, writing only the files that differ.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="With --at and a file-level base backup: pieces restored at once.")
@reports_errors
def restore(plan_path, backup_id, target, location, dry_run, local, timeout, at=None, port=None, yes=False,
            everything=False, service=None, region=None, delta=False, workers=None):
    """Restore BACKUP_ID (an id, or DATASET/ID) into a target. With --at, restore a
    PostgreSQL dataset to a point in time into a new data directory and start it, or a
    MongoDB dataset to a timestamp (newest dump, then its oplog). With --all, restore every
    dataset to one point in time (the second seed's `restore.sh --all`).

    A database target is changed in place, so the command says what it will do and asks
    unless --yes is given; a directory target must be empty."""
    from drfleet.datapath.restore_paths import absolute_target, check_directory_target, is_path_target

    plan = use_plan(plan_path)
    if target:
        target = absolute_target(target)  # resolved here, where it was typed, before any message
    if everything:
        return _restore_all(plan, service, region, at, target, dry_run, yes)
    if not backup_id or not target:
        raise click.UsageError("give BACKUP_ID and --to TARGET (or --all)")
    if at is not None and plan.datasets.get(backup_id.split("/")[0]) is not None \
            and plan.dataset(backup_id.split("/")[0]).kind == "mongodb":
        from drfleet.pitr.oplog import restore_to_timestamp
        from drfleet.secrets import parse_target
        conn = parse_target(target, what="the restore target")   # env:/file: resolved here, never printed
        output.result(restore_to_timestamp(plan, backup_id.split("/")[0], conn, at, location=location))
        return
    if at is not None:  # point-in-time recovery (pitr.recovery), runs here
        from drfleet.pitr.physical import default_workers
        from drfleet.pitr.recovery import restore_to
        output.result(restore_to(plan, backup_id, target, at, port=port, timeout=timeout, delta=delta,
                                 workers=workers or default_workers(), location=location))
        return
    from drfleet.datapath.restore import describe_restore, restore_backup

    plan_of_restore = describe_restore(plan, backup_id, target, location=location)
    if plan_of_restore["kind"] == "files" and is_path_target(target):
        from drfleet.datapath.restore_paths import this_host
        check_directory_target(plan, plan_of_restore["dataset"], target, here=this_host() if local else None)
    if dry_run:
        output.result(plan_of_restore)
        return
    _confirm_restore(plan_of_restore, yes)
    if local:
        from drfleet.state import audit
        summary = restore_backup(plan, backup_id, target, location=location)
        _audit_quietly(audit, "drfleet.restore", dataset=summary["dataset"], backup_id=summary["backup_id"],
                       location=summary["location"], target=summary["target"], local=True)
        output.result(summary)
        return
    from drfleet.tasks.restore import restore as restore_task
    record, region = _region_of(plan, backup_id)
    result = send(restore_task, kwargs={"backup_id": f"{record.dataset}/{record.backup_id}",
                                        "target": target, "region": region, "location": location},
                  headers={"drfleet_actor": "cli"})
    output.result(_wait(result, label=f"restore {record.backup_id}", timeout=timeout,
                        total=record.manifest.plaintext_size))


def _restore_all(plan, service, region, at, to, dry_run, yes) -> None:
    """``restore --all``: plan, show, confirm, run with progress, one summary; exit 1 on a failure."""
    from drfleet.runbooks.restore_all import restore_all, restore_plan

    planned = restore_plan(plan, service=service, region=region, at=at, to=to)
    click.echo(f"restore --all of {planned.scope} to {planned.at}: {len(planned.steps)} dataset(s), in this order:",
               err=True)
    for n, step in enumerate(planned.steps, 1):
        click.echo(f"  {n:2d}. {step.dataset:22s} {step.kind:8s} {step.backup_id} ({output.timestamp(step.created_at)}) from "
                   f"{step.location} -> {step.target}", err=True)
    if dry_run:
        output.result(planned.summary())
        return
    if any(s.kind != "files" for s in planned.steps) and not yes:
        click.confirm("databases above are restored in place; go on?", abort=True, err=True)

    with output.Progress("restore --all", total=len(planned.steps), unit="datasets", every=0) as shown:
        def progress(i, step):
            where = f"[{i + 1}/{len(planned.steps)}] {step.dataset}"
            if step.seconds is None:
                shown.update(i, step=f"{where}...")
            else:
                shown.update(i + 1, step=f"{where} {step.status} in {output.duration(step.seconds)}"
                             + (f" ({step.error})" if step.error else ""))

        summary = restore_all(plan, planned, progress=progress).summary()
    output.result(summary)
    sys.exit(1 if summary["failed"] else 0)


_RESTORE_CONSEQUENCES = {
    "postgres": "objects in the dump are created in the target database; existing ones make it fail",
    "redis": "the target redis-server is shut down and its dataset replaced by the backup's",
    "mongodb": "the dumped collections are dropped in the target first",
}


def _confirm_restore(described: dict, yes: bool) -> None:
    """Say what a restore will do; ask before changing a database in place (not --yes)."""
    click.echo(f"will restore {described['kind']} backup {described['backup_id']} of {described['dataset']} "
               f"from {described['location']} into {described['target']}", err=True)
    consequence = _RESTORE_CONSEQUENCES.get(described["kind"])
    if consequence:
        click.echo(f"  {consequence}", err=True)
        if not yes:
            click.confirm("restore over this target?", abort=True, err=True)


@click.command("verify")
@plan_option
@click.argument("backup_id")
@click.option("--depth", type=click.Choice(["quick", "full", "deep"]), default="deep", show_default=True)
@click.option("--location")
@click.option("--local", is_flag=True, help="Run here instead of on the region's worker.")
@click.option("--timeout", default=6 * 3600.0, show_default=True)
@reports_errors
def verify(plan_path, backup_id, depth, location, local, timeout):
    """Re-read every object of BACKUP_ID, check every hash and AEAD tag, and (deep) compare
    a scratch restore's fingerprint with the one recorded at backup time. Exit 1 on damage."""
    plan = use_plan(plan_path)
    if local:
        from drfleet.datapath.verify import verify_backup
        report = verify_backup(plan, backup_id, depth=depth, location=location)
    else:
        from drfleet.tasks.restore import verify as verify_task
        record, region = _region_of(plan, backup_id)
        result = send(verify_task, kwargs={"backup_id": f"{record.dataset}/{record.backup_id}",
                                           "region": region, "depth": depth, "location": location})
        report = _wait(result, label=f"verify {record.backup_id}", timeout=timeout,
                       total=record.manifest.plaintext_size)
    output.result(report)
    sys.exit(0 if report["ok"] else 1)


@click.group("keys")
def keys_group():
    """Create and rotate the keyrings of the plan's key categories."""


@keys_group.command("create")
@plan_option
@click.argument("category")
@reports_errors
def keys_create(plan_path, category):
    """Create the keyring file of CATEGORY (mode 0600; refuses to overwrite)."""
    plan = use_plan(plan_path)
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.state import audit

    ref = _key_ref(plan, category)
    key_id = create_keyring(ref.file, category)
    _audit_quietly(audit, "keys.create", category=category, key_id=key_id)
    output.done({"category": category, "keyring": ref.file, "active_key": key_id, "status": "created"},
                f"created keyring {ref.file} for {category}: active key {key_id}")


@keys_group.command("rotate")
@plan_option
@click.argument("category")
@reports_errors
def keys_rotate(plan_path, category):
    """Add a new master key to CATEGORY's keyring and make it active; old backups stay
    readable while their key remains in the keyring."""
    plan = use_plan(plan_path)
    from drfleet.backup_format.keyring import rotate_keyring
    from drfleet.state import audit

    ref = _key_ref(plan, category)
    key_id = rotate_keyring(ref.file)
    _audit_quietly(audit, "keys.rotate", category=category, key_id=key_id)
    output.done({"category": category, "active_key": key_id, "status": "rotated"},
                f"rotated {category}: new active key {key_id}")


@keys_group.command("retire")
@plan_option
@click.argument("category")
@click.argument("key_id")
@reports_errors
def keys_retire(plan_path, category, key_id):
    """Remove old key KEY_ID from CATEGORY's keyring, only when no backup copy in any
    location still needs it (re-wrap them first with `drfleet keys rewrap CATEGORY`)."""
    plan = use_plan(plan_path)
    from drfleet.datapath.key_rotation import retire_key
    from drfleet.state import audit

    _key_ref(plan, category)
    from drfleet.errors import DrfleetError
    try:
        result = retire_key(plan, category, key_id)
    except DrfleetError as exc:
        _audit_quietly_outcome(audit, "keys.retire", "refused", category=category, key_id=key_id,
                               reason=exc.message)
        raise
    _audit_quietly(audit, "keys.retire", category=category, key_id=key_id)
    output.done(result, f"retired key {key_id} of {category}; active key {result['active_key']}")


def _key_ref(plan, category):
    if category not in plan.keys:
        raise click.ClickException(f"unknown key category {category!r} (plan has: {', '.join(sorted(plan.keys))})")
    ref = plan.keys[category]
    if not ref.file:
        raise click.ClickException(f"key category {category} lives in ${ref.env}; manage that variable's keyring yourself")
    import os
    os.makedirs(os.path.dirname(ref.file) or ".", mode=0o700, exist_ok=True)
    return ref


def _audit_quietly(audit, action, **details):
    _audit_quietly_outcome(audit, action, "succeeded", **details)


def _audit_quietly_outcome(audit, action, outcome, **details):
    try:
        audit.record(action, actor="cli", outcome=outcome, **details)
    except Exception:  # noqa: BLE001 - the key operation itself succeeded; say so
        click.secho("warning: the audit log (Redis) is unreachable; this key operation was not recorded",
                    fg="yellow", err=True)


def parse_since(text: str | None) -> float | None:
    """``--since``: a duration back from now (``2h``, ``7 days``) or a moment (ISO 8601,
    ``2026-12-01`` or ``2026-12-01T08:00``; local time when it names no zone); seconds since
    the epoch. Raises BadParameter saying what to write."""
    if not text:
        return None
    from datetime import datetime

    from drfleet.plan.durations import parse_duration
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a duration (2h, 7 days) nor a time (2026-12-01T08:00)",
                                 param_hint="--since") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time, as people type it
    return moment.timestamp()


@click.command("audit")
@plan_option
@click.option("--action", help="Only this action (e.g. drfleet.backup, keys.rotate).")
@click.option("--dataset", help="Only records about this dataset.")
@click.option("--actor", help="Only records of this actor (cli, beat, an operator's name).")
@click.option("--since", help="Only records since this duration ago (2h, 7 days) or this time (2026-12-01T08:00).")
@click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", default=100, show_default=True, help="At most this many records (after the filters).")
@reports_errors
def audit_cmd(plan_path, action, dataset, actor, since, oldest_first, as_json, limit):
    """Query the append-only audit log, newest first. The filters apply before --limit."""
    use_plan(plan_path)
    require_state()
    from drfleet.cli import output
    from drfleet.state import audit

    match = {"dataset": dataset} if dataset else {}
    records = list(audit.entries(action=action, actor=actor, since=parse_since(since), limit=limit,
                                 newest_first=not oldest_first, **match))
    if as_json:
        for rec in records:
            click.echo(json.dumps(rec, sort_keys=True))
        return

    def render(rec):
        details = "  ".join(f"{k}={output.human(k, v)}" for k, v in sorted(rec["details"].items()) if v is not None)
        return output.timestamp(rec["at"]), rec["action"], rec["outcome"], rec["actor"], details

    output.rows(records, render=render, headers=["when", "action", "outcome", "by", "details"],
                empty="no audit records match")
