"""``drfleet.watch``: one look at a continuous or on-change policy's file tree, on the
dataset's region's control lane (beat fires it every few seconds; see
``beat_schedule.entries``). The work is ``datapath.watch.watch_policy``; this module gives
it the two Celery-facing pieces: sending the backup (``drfleet.backup`` with the slot the
watch chose, actor ``watch``) and reading that backup's outcome from the result backend."""

from __future__ import annotations

from datetime import datetime, timezone

from drfleet.statuses import JobStatus
from drfleet.workers.celery_app import app
from drfleet.workers.plan_context import current_plan

_RUNNING = ("STARTED", "PROGRESS", "RETRY", "RECEIVED")


# ignore_result: a watch runs every few seconds per policy; its summary is in the worker
# log and its state in drfleet:watch:*, not in thousands of result keys
@app.task(bind=True, name="drfleet.watch", label="watch", lane="control", ignore_result=True)
def watch(self, dataset: str, policy: str, region: str) -> dict:
    """Survey ``dataset``'s tree for ``policy``; send a backup when it changed (see
    datapath.watch for what is raised)."""
    from drfleet.datapath.watch import watch_policy

    return watch_policy(current_plan(), dataset, policy, region=region,
                        send_backup=lambda send: send_backup(dataset, policy, region, send),
                        outcome_of=backup_outcome)


def send_backup(dataset: str, policy: str, region: str, send) -> None:
    from drfleet.tasks.backup import backup

    backup.apply_async(kwargs={"dataset": dataset, "policy": policy, "region": region, "slot": send.slot},
                       task_id=send.task_id, headers={"drfleet_actor": "watch"})


def backup_outcome(task_id: str):
    """The outstanding backup's ``datapath.watch.Outcome``. A backup that found its slot
    taken by another message (``duplicate``) counts as failed: the watch sends a new one."""
    from celery.result import AsyncResult

    from drfleet.datapath.watch import Outcome

    result = AsyncResult(task_id, app=app)
    state = result.state
    if state == "SUCCESS":
        value = result.result if isinstance(result.result, dict) else {}
        if value.get("status") == JobStatus.DUPLICATE:
            return Outcome("failed")
        return Outcome("committed", finished_at=_epoch(result.date_done), backup_id=value.get("backup_id"))
    if state in ("FAILURE", "REVOKED", "REJECTED"):
        return Outcome("failed")
    return Outcome("running" if state in _RUNNING else "waiting")


def _epoch(when) -> float | None:
    if when is None:
        return None
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()
