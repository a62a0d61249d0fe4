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
    """Verify one copy of a backup at ``depth`` and judge its size against the recent
    backups of its dataset and policy. A size anomaly is a problem: the backup is recorded
    as not verified (so it never counts as a recovery point or the newest good backup),
    flagged in ``state.outcomes`` for the size-anomaly alert, counted and audited."""
    from datapath.anomaly import size_check_for
    from datapath.verify import verify_backup
    from state import audit, outcomes
    from state.verifications import record_result
    from workers import metrics

    plan = current_plan()
    result = verify_backup(plan, backup_id, depth=depth, location=location)
    size = size_check_for(plan, result["dataset"], result["backup_id"], result["location"])
    anomaly = size is not None and size.flagged
    if size is not None:
        outcomes.record_size_check(size.dataset, size.policy, flagged=anomaly, backup_id=size.backup_id,
                                   size=size.size, baseline=size.baseline)
        result["size_check"] = size.describe()
    if anomaly:
        result["problems"] = [*result["problems"], size.describe()]
        result["ok"] = False
    record_result(result["dataset"], result["backup_id"], result["location"], depth=depth,
                  ok=result["ok"], problems=result["problems"])
    metrics.observe_verification(result["dataset"], depth, ok=result["ok"], anomaly=anomaly,
                                 policy=size.policy if size else None)
    headers = self.request.headers or {}
    audit.record("verification", actor=headers.get("drfleet_actor") or "api",
                 outcome="ok" if result["ok"] else ("size-anomaly" if anomaly and len(result["problems"]) == 1
                                                    else "damaged"),
                 dataset=result["dataset"], backup_id=result["backup_id"], location=result["location"],
                 depth=depth, problems=len(result["problems"]), task_id=self.request.id)
    return result


@app.task(bind=True, name="drfleet.trigger", label="trigger", audited=True)
def trigger(self, dataset: str, region: str, event: str | None = None, event_id: str | None = None) -> list[str]:
    """Start a backup of every on-event policy of ``dataset`` (matching ``event`` when
    given). ``event_id`` makes repeated deliveries of one event take one backup."""
    from tasks.backup import backup

    plan = current_plan()
    ds = plan.dataset(dataset)
    # Without an event id, the message's own id: a redelivered message takes no second backup.
    event_id = event_id or self.request.id or uuid.uuid4().hex
    sent = []
    for policy in ds.policies:
        if policy.trigger.kind == "on-event" and (event is None or policy.trigger.event == event):
            result = backup.apply_async(kwargs={"dataset": dataset, "policy": policy.name,
                                                "region": ds.region, "slot": f"event:{event_id}"})
            sent.append(result.id)
    return sent
