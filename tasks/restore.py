"""Restore and verify tasks. Restores and verification run on the
dataset's region's data lane; the restore target travels as a reference (a directory, a
URL without password, ``env:VAR`` or ``file:PATH``) and is resolved on the worker."""

from __future__ import annotations

import contextlib
import time

from drfleet.settings import Limits
from drfleet.statuses import VerificationResult
from drfleet.workers.celery_app import app
from drfleet.workers.plan_context import current_plan

_limits = Limits.from_env()


@contextlib.contextmanager
def reading_progress(task, step: str, every: float = 1.0):
    """While inside, every BackupReader of this task reports the plaintext read so far (and
    the backup's size) as the task's PROGRESS state, at most once per ``every`` seconds, so
    ``drfleet restore|verify`` can show total, percentage, rate and ETA."""
    from drfleet.datapath.reading import read_progress

    last = [0.0]

    def report(backup_id: str, done: int, total: int) -> None:
        now = time.monotonic()
        if task.request.id and (now - last[0] >= every or done >= total):
            last[0] = now
            task.update_state(state="PROGRESS", meta={"step": step, "backup_id": backup_id, "bytes": done,
                                                      "total_bytes": total})

    token = read_progress.set(report)
    try:
        yield
    finally:
        read_progress.reset(token)


@app.task(bind=True, name="drfleet.restore", label="restore", lane="data", track_started=True, audited=True,
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def restore(self, backup_id: str, target: str, region: str, location: str | None = None) -> dict:
    from drfleet.datapath.restore import restore_backup
    from drfleet.datapath.restore_paths import check_directory_target, is_path_target, this_host

    plan = current_plan()
    dataset = backup_id.split("/")[0] if "/" in backup_id else None
    if is_path_target(target) and dataset in plan.datasets and plan.dataset(dataset).kind == "files":
        # the path was resolved where it was typed; refuse one this host cannot honour
        check_directory_target(plan, dataset, target, here=this_host())
    with reading_progress(self, "restore"):
        return restore_backup(plan, backup_id, target, location=location)


@app.task(bind=True, name="drfleet.verify", label="verify", lane="data", track_started=True, audited=True,
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def verify(self, backup_id: str, region: str, depth: str = "full", location: str | None = None) -> dict:
    """Verify one copy of a backup at ``depth`` and judge its size against the recent
    backups of its dataset and policy. A size anomaly is a problem: the backup is recorded
    as not verified (so it never counts as a recovery point or the newest good backup),
    flagged in ``state.outcomes`` for the size-anomaly alert, counted and audited."""
    from drfleet import metrics
    from drfleet.datapath.anomaly import size_check_for
    from drfleet.datapath.verify import verify_backup
    from drfleet.state import audit, outcomes
    from drfleet.state.verifications import record_result

    plan = current_plan()
    with reading_progress(self, "verify"):
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
                 outcome=VerificationResult.of(result["ok"], anomaly_only=anomaly and len(result["problems"]) == 1),
                 dataset=result["dataset"], backup_id=result["backup_id"], location=result["location"],
                 depth=depth, problems=len(result["problems"]), task_id=self.request.id)
    return result
