"""Restore, verify and on-event trigger tasks. Restores and verification run on the
dataset's region's data lane; the restore target travels as a reference (a directory, a
URL without password, ``env:VAR`` or ``file:PATH``) and is resolved on the worker."""

from __future__ import annotations

import uuid

from workers.celery_app import app
from workers.plan_context import current_plan
from workers.settings import Limits

_limits = Limits.from_env()


@app.task(bind=True, name="drfleet.restore", label="restore", lane="data", track_started=True, audited=True,
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def restore(self, backup_id: str, target: str, region: str, location: str | None = None) -> dict:
    from datapath.restore import restore_backup
    return restore_backup(current_plan(), backup_id, target, location=location)


@app.task(bind=True, name="drfleet.verify", label="verify", lane="data", track_started=True, audited=True,
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def verify(self, backup_id: str, region: str, depth: str = "full", location: str | None = None) -> dict:
    from datapath.verify import verify_backup
    return verify_backup(current_plan(), backup_id, depth=depth, location=location)


@app.task(bind=True, name="drfleet.trigger", label="trigger", audited=True)
def trigger(self, dataset: str, region: str, event: str | None = None, event_id: str | None = None) -> list[str]:
    """Start a backup of every on-event policy of ``dataset`` (matching ``event`` when
    given). ``event_id`` makes repeated deliveries of one event take one backup."""
    from tasks.backup import backup

    plan = current_plan()
    ds = plan.dataset(dataset)
    event_id = event_id or uuid.uuid4().hex
    sent = []
    for policy in ds.policies:
        if policy.trigger.kind == "on-event" and (event is None or policy.trigger.event == event):
            result = backup.apply_async(kwargs={"dataset": dataset, "policy": policy.name,
                                                "region": ds.region, "slot": f"event:{event_id}"})
            sent.append(result.id)
    return sent
