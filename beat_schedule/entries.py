"""One schedule entry per (dataset, policy, region that runs it), plus drills and checks.

Backups run in the dataset's home region, on its data lane; copies follow a committed
backup and are not scheduled themselves. Entries for ``continuous`` and ``on-change``
policies are listed (so an operator sees them) but fired by watchers, not by beat's clock;
``on-event`` policies run on ``drfleet trigger``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from plan.models import Plan
from plan.triggers import Trigger
from workers.queues import queue_name

BACKUP_TASK = "drfleet.backup"
DRILL_TASK = "drfleet.drill"
VERIFY_COLD_TASK = "drfleet.verify_cold"


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    kind: str  # backup | drill | verify-cold | deep-check
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

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "dataset": self.dataset, "policy": self.policy,
                "region": self.region, "queue": self.queue, "task": self.task,
                "trigger": self.trigger.kind, "cron": self.trigger.cron,
                "interval_seconds": self.trigger.interval_seconds, "event": self.trigger.event,
                "keep_seconds": self.keep_seconds, "keep_versions": self.keep_versions,
                "copies": list(self.copies)}


def schedule_entries(plan: Plan) -> list[ScheduleEntry]:
    """Every entry the plan implies, in plan order."""
    out: list[ScheduleEntry] = []
    for name, ds in plan.datasets.items():
        for policy in ds.policies:
            out.append(ScheduleEntry(
                name=f"backup {name} {policy.name}", kind="backup", task=BACKUP_TASK,
                region=ds.region, queue=queue_name(ds.region, "data"), trigger=policy.trigger,
                dataset=name, policy=policy.name, keep_seconds=policy.keep.keep_seconds,
                keep_versions=policy.keep.keep_versions, copies=tuple(c.label for c in policy.copies),
                kwargs={"dataset": name, "policy": policy.name, "region": ds.region}))
    primary = plan.primary_region
    for i, drill in enumerate(plan.drills):
        region = drill.region or primary
        out.append(ScheduleEntry(
            name=f"drill {drill.kind} {i}", kind="drill", task=DRILL_TASK, region=region,
            queue=queue_name(region, "data"), trigger=drill.trigger,
            kwargs={"kind": drill.kind, "region": region, "scope": drill.scope}))
    if plan.verification.cold_storage is not None:
        out.append(ScheduleEntry(
            name="verify cold-storage", kind="verify-cold", task=VERIFY_COLD_TASK, region=primary,
            queue=queue_name(primary, "data"), trigger=plan.verification.cold_storage,
            kwargs={"region": primary}))
    return out


def beat_schedule(plan: Plan) -> dict:
    """Celery ``beat_schedule`` for the entries beat fires on a clock."""
    from celery.schedules import crontab, schedule

    out = {}
    for entry in schedule_entries(plan):
        if not entry.trigger.scheduled:
            continue
        if entry.trigger.kind == "cron":
            minute, hour, dom, month, dow = entry.trigger.cron.split()
            sched = crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow)
        else:
            sched = schedule(timedelta(seconds=entry.trigger.interval_seconds))
        out[entry.name] = {"task": entry.task, "schedule": sched, "kwargs": dict(entry.kwargs),
                           "options": {"queue": entry.queue, "routing_key": entry.queue, "exchange": "drfleet"}}
    return out
