"""One schedule entry per (dataset, policy, region that runs it), plus drills and checks.

Backups run in the dataset's home region, on its data lane; copies follow a committed
backup and are not scheduled themselves. Entries for ``continuous`` and ``on-change``
policies are listed (so an operator sees them) but fired by watchers, not by beat's clock:
for a files dataset (local, or on a plan host over SSH) a ``watch`` entry fires
``drfleet.watch`` on the region's control lane every ``watch_interval`` seconds, and the
watch sends the backup when the tree changed (database WAL/oplog policies are the WAL
archiver's). ``on-event`` policies run on ``drfleet trigger``. A PostgreSQL ``mode: wal``
policy (WAL shipped by ``archive_command``) gets a ``base-backup`` entry (daily at 01:00 UTC,
DRFLEET_BASEBACKUP_TRIGGER overrides) on the data lane and a ``wal-lag`` entry measuring the
achieved RPO every 60 s on the control lane. Retention runs as one
``prune`` entry per region, daily at 04:00 UTC, on the region's control lane, and a
``reconcile`` entry per region (every DRFLEET_RECONCILE_SECONDS, its control lane) that
sends again what the broker lost or a dead worker stranded (``workers.reconcile``); ``copies check``
re-seeds missing or damaged copies weekly (Sunday 05:00 UTC) from the primary region, and
daily (05:30 UTC) per region for the datasets homed there (``copies check REGION``, with
repair). What the plan's other words schedule: ``verification.deep_check`` a ``deep-verify``
entry per region (the newest backup of each of its datasets restored into scratch and its
fingerprint compared), a MongoDB ``mode: oplog`` policy an ``oplog`` entry on its trigger
(a slice of the oplog since the last one, ``pitr.oplog.capture_slice``), and the recovery
section a ``health`` entry per service and a ``db-check`` entry per PostgreSQL database; a
``queue-depth`` entry per region (every 15 s) exports how many messages wait in its queues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from drfleet import settings
from drfleet.plan.models import Plan
from drfleet.plan.triggers import Trigger, parse_trigger
from drfleet.workers.queues import queue_name

BACKUP_TASK = "drfleet.backup"
DRILL_TASK = "drfleet.drill"
VERIFY_COLD_TASK = "drfleet.verify_cold"
WATCH_TASK = "drfleet.watch"
PRUNE_TASK = "drfleet.prune"
PRUNE_TRIGGER = "daily at 04:00"
BASE_BACKUP_TASK = "drfleet.base_backup"
WAL_LAG_TASK = "drfleet.wal_lag"
WAL_LAG_SECONDS = 60
WAL_COPY_TASK = "drfleet.wal_copy"
COPIES_CHECK_TASK = "drfleet.copies_check"
RECONCILE_TASK = "drfleet.reconcile"
# fired every DRFLEET_RECONCILE_SECONDS, not on slots: a pass that was missed is no loss
RECONCILE_TRIGGER = Trigger(kind="periodic", text="every few seconds (DRFLEET_RECONCILE_SECONDS)")
COPIES_CHECK_TRIGGER = "weekly on sunday at 05:00"
HEALTH_TASK = "drfleet.health_check"
DB_CHECK_TASK = "drfleet.db_check"
DB_CHECK_SECONDS = 30
DEEP_VERIFY_TASK = "drfleet.deep_verify"
OPLOG_TASK = "drfleet.oplog_capture"
REGION_COPIES_TASK = "drfleet.copies_check_region"
REGION_COPIES_TRIGGER = "daily at 05:30"
QUEUE_DEPTH_TASK = "drfleet.queue_depth"
KEY_ROTATION_TASK = "drfleet.rotate_keys"
KEY_ROTATION_TRIGGER = "daily at 03:30"
QUEUE_DEPTH_SECONDS = 15
WATCH_INTERVALS = {"continuous": settings.WATCH_CONTINUOUS_SECONDS, "on-change": settings.WATCH_ON_CHANGE_SECONDS}


def watch_interval(trigger_kind: str) -> int:
    """Seconds between watches of a policy's tree: 15 for continuous (a change is in a
    committed backup within 60 s while the backup itself takes under ~30 s), 60 for
    on-change. DRFLEET_WATCH_CONTINUOUS_SECONDS / DRFLEET_WATCH_ON_CHANGE_SECONDS override
    them (compressed clocks in tests and soak runs)."""
    return int(WATCH_INTERVALS[trigger_kind].get())


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    kind: str  # backup | watch | base-backup | wal-lag | wal-copy | reconcile | prune | copies-check | drill |
    #            verify-cold | health | db-check | deep-verify | oplog | queue-depth | key-rotation
    task: str
    region: str
    queue: str
    trigger: Trigger
    dataset: str | None = None
    policy: str | None = None
    keep_seconds: int | None = None
    keep_versions: int | None = None
    copies: tuple[str, ...] = ()
    kwargs: dict = field(default_factory=dict)
    every_seconds: int | None = None  # watch entries: beat fires them this often

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "dataset": self.dataset, "policy": self.policy,
                "region": self.region, "queue": self.queue, "task": self.task,
                "trigger": self.trigger.kind, "cron": self.trigger.cron,
                "interval_seconds": self.trigger.interval_seconds, "event": self.trigger.event,
                "keep_seconds": self.keep_seconds, "keep_versions": self.keep_versions,
                "copies": list(self.copies), **({"every_seconds": self.every_seconds} if self.every_seconds else {})}


def schedule_entries(plan: Plan) -> list[ScheduleEntry]:
    """Every entry the plan implies, in plan order."""
    out: list[ScheduleEntry] = []
    for name, ds in plan.datasets.items():
        for policy in ds.policies:
            if policy.physical and ds.kind == "postgres":
                out.append(_physical_entry(name, ds.region, policy))
                continue
            out.append(ScheduleEntry(
                name=f"backup {name} {policy.name}", kind="backup", task=BACKUP_TASK,
                region=ds.region, queue=queue_name(ds.region, "data"), trigger=policy.trigger,
                dataset=name, policy=policy.name, keep_seconds=policy.keep.keep_seconds,
                keep_versions=policy.keep.keep_versions, copies=tuple(c.label for c in policy.copies),
                kwargs={"dataset": name, "policy": policy.name, "region": ds.region}))
            if policy.trigger.kind in WATCH_INTERVALS and ds.kind == "files":
                out.append(ScheduleEntry(
                    name=f"watch {name} {policy.name}", kind="watch", task=WATCH_TASK, region=ds.region,
                    queue=queue_name(ds.region, "control"), trigger=policy.trigger, dataset=name,
                    policy=policy.name, every_seconds=watch_interval(policy.trigger.kind),
                    kwargs={"dataset": name, "policy": policy.name, "region": ds.region}))
            if policy.mode == "wal" and ds.kind == "postgres":
                out += _wal_entries(plan, name, ds.region, policy)
            if policy.mode == "oplog" and ds.kind == "mongodb":
                out.append(ScheduleEntry(
                    name=f"oplog {name} {policy.name}", kind="oplog", task=OPLOG_TASK, region=ds.region,
                    queue=queue_name(ds.region, "data"), trigger=policy.trigger, dataset=name, policy=policy.name,
                    kwargs={"dataset": name, "policy": policy.name, "region": ds.region}))
    for region in plan.region_names:
        out.append(ScheduleEntry(
            name=f"reconcile {region}", kind="reconcile", task=RECONCILE_TASK, region=region,
            queue=queue_name(region, "control"), trigger=RECONCILE_TRIGGER,
            every_seconds=settings.RECONCILE_SECONDS.get(), kwargs={"region": region}))
        out.append(ScheduleEntry(
            name=f"prune {region}", kind="prune", task=PRUNE_TASK, region=region,
            queue=queue_name(region, "control"), trigger=parse_trigger(PRUNE_TRIGGER),
            kwargs={"region": region}))
    primary = plan.primary_region
    out.append(ScheduleEntry(
        name="copies check", kind="copies-check", task=COPIES_CHECK_TASK, region=primary,
        queue=queue_name(primary, "data"), trigger=parse_trigger(COPIES_CHECK_TRIGGER),
        kwargs={"region": primary}))
    for i, drill in enumerate(plan.drills):
        region = drill.region or primary
        out.append(ScheduleEntry(
            name=f"drill {drill.kind} {i}", kind="drill", task=DRILL_TASK, region=region,
            queue=queue_name(region, "data"), trigger=drill.trigger,
            kwargs={"kind": drill.kind, "region": region, "scope": drill.scope}))
    for region in plan.region_names:
        out.append(ScheduleEntry(
            name=f"queue-depth {region}", kind="queue-depth", task=QUEUE_DEPTH_TASK, region=region,
            queue=queue_name(region, "control"), trigger=RECONCILE_TRIGGER, every_seconds=QUEUE_DEPTH_SECONDS,
            kwargs={"region": region}))
        out.append(ScheduleEntry(
            name=f"copies check {region}", kind="copies-check", task=REGION_COPIES_TASK, region=region,
            queue=queue_name(region, "data"), trigger=parse_trigger(REGION_COPIES_TRIGGER),
            kwargs={"region": region}))
    rotated = [name for name, ref in plan.keys.items() if ref.rotate_every]
    if rotated:  # a daily check; a category is rotated once its active key is rotate_every old
        out.append(ScheduleEntry(
            name="key rotation", kind="key-rotation", task=KEY_ROTATION_TASK, region=primary,
            queue=queue_name(primary, "control"), trigger=parse_trigger(KEY_ROTATION_TRIGGER),
            kwargs={"region": primary, "categories": rotated}))
    out += _recovery_entries(plan)
    if plan.verification.deep_check is not None:
        for region in plan.region_names:
            out.append(ScheduleEntry(
                name=f"deep-verify {region}", kind="deep-verify", task=DEEP_VERIFY_TASK, region=region,
                queue=queue_name(region, "data"), trigger=plan.verification.deep_check,
                kwargs={"region": region}))
    if plan.verification.cold_storage is not None:
        out.append(ScheduleEntry(
            name="verify cold-storage", kind="verify-cold", task=VERIFY_COLD_TASK, region=primary,
            queue=queue_name(primary, "data"), trigger=plan.verification.cold_storage,
            kwargs={"region": primary}))
    return out


def _recovery_entries(plan: Plan) -> list[ScheduleEntry]:
    """A ``health`` entry per service of the recovery section (its probe's interval, the
    service's region's control lane) and a ``db-check`` entry per database there (primary
    connectivity, standby lag; every 30 s). A plan whose recovery section is invalid gets
    none (``plan check`` reports it)."""
    if not plan.recovery:
        return []
    from drfleet.plan.recovery import RecoveryConfigInvalid, recovery_config

    try:
        rec = recovery_config(plan)
    except RecoveryConfigInvalid:
        return []
    every = Trigger(kind="periodic", text="every few seconds (the probe's interval_seconds)")
    out = [ScheduleEntry(name=f"health {name}", kind="health", task=HEALTH_TASK, region=svc.region,
                         queue=queue_name(svc.region, "control"), trigger=every,
                         every_seconds=svc.probe.interval_seconds if svc.probe else 30,
                         kwargs={"service": name, "region": svc.region})
           for name, svc in sorted(rec.services.items())]
    for name in sorted(rec.databases):
        ds = plan.dataset(name)
        if ds.kind == "postgres":
            out.append(ScheduleEntry(name=f"db-check {name}", kind="db-check", task=DB_CHECK_TASK, region=ds.region,
                                     queue=queue_name(ds.region, "control"), trigger=every,
                                     every_seconds=DB_CHECK_SECONDS, dataset=name,
                                     kwargs={"dataset": name, "region": ds.region}))
    return out


def _physical_entry(dataset: str, region: str, policy) -> ScheduleEntry:
    """A file-level base backup (full, differential or incremental) on the policy's trigger."""
    kwargs = {"dataset": dataset, "policy": policy.name, "region": region, "backup_type": policy.physical,
              **({"workers": policy.workers} if policy.workers else {})}
    return ScheduleEntry(name=f"base-backup {dataset} {policy.name}", kind="base-backup", task=BASE_BACKUP_TASK,
                         region=region, queue=queue_name(region, "data"), trigger=policy.trigger, dataset=dataset,
                         policy=policy.name, keep_seconds=policy.keep.keep_seconds,
                         keep_versions=policy.keep.keep_versions, kwargs=kwargs)


def _wal_entries(plan: Plan, dataset: str, region: str, policy) -> list[ScheduleEntry]:
    """Base backups (the starting points of point-in-time recovery), the archive-lag
    measurement and, when the dataset's policies copy anywhere, the WAL copy pass of one
    WAL-archived PostgreSQL dataset."""
    from drfleet.pitr.walcopy import wal_locations

    trigger = parse_trigger(settings.BASEBACKUP_TRIGGER.get())
    kwargs = {"dataset": dataset, "policy": policy.name, "region": region}
    copies = [] if len(wal_locations(plan, dataset)) < 2 else [
        ScheduleEntry(name=f"wal-copy {dataset}", kind="wal-copy", task=WAL_COPY_TASK, region=region,
                      queue=queue_name(region, "data"), trigger=policy.trigger, dataset=dataset,
                      policy=policy.name, every_seconds=settings.WAL_COPY_SECONDS.get(),
                      kwargs={"dataset": dataset, "region": region})]
    return copies + [
        ScheduleEntry(name=f"base-backup {dataset} {policy.name}", kind="base-backup", task=BASE_BACKUP_TASK,
                      region=region, queue=queue_name(region, "data"), trigger=trigger, dataset=dataset,
                      policy=policy.name, keep_seconds=policy.keep.keep_seconds,
                      keep_versions=policy.keep.keep_versions, kwargs=kwargs),
        ScheduleEntry(name=f"wal-lag {dataset}", kind="wal-lag", task=WAL_LAG_TASK, region=region,
                      queue=queue_name(region, "control"), trigger=policy.trigger, dataset=dataset,
                      policy=policy.name, every_seconds=WAL_LAG_SECONDS,
                      kwargs={"dataset": dataset, "region": region}),
    ]


def beat_schedule(plan: Plan) -> dict:
    """Celery ``beat_schedule`` for the entries beat fires on a clock."""
    from celery.schedules import crontab, schedule

    out = {}
    for entry in schedule_entries(plan):
        options = {"queue": entry.queue, "routing_key": entry.queue, "exchange": "drfleet"}
        if entry.every_seconds:
            # a watch that waited a whole interval in the queue is stale: the next one is due
            sched = schedule(timedelta(seconds=entry.every_seconds))
            options["expires"] = entry.every_seconds
        elif not entry.trigger.scheduled:
            continue
        elif entry.trigger.kind == "cron":
            minute, hour, dom, month, dow = entry.trigger.cron.split()
            sched = crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow)
        else:
            sched = schedule(timedelta(seconds=entry.trigger.interval_seconds))
        out[entry.name] = {"task": entry.task, "schedule": sched, "kwargs": dict(entry.kwargs), "options": options}
    return out
