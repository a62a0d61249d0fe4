"""Backup tasks: ``backup`` (one dataset, one policy, one slot) on the dataset's region's
data lane. The work itself is ``datapath.backup.run_backup``; this module only adapts it to
Celery (progress as task state, so Flower and ``drfleet backup --wait`` show it)."""

from __future__ import annotations

from workers.celery_app import app
from workers.plan_context import current_plan
from workers.settings import Limits

_limits = Limits.from_env()


@app.task(bind=True, name="drfleet.backup", label="backup", lane="data", track_started=True,
          idempotent_on=("dataset", "policy", "slot"), audited=True,
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def backup(self, dataset: str, policy: str, region: str, slot: str | None = None) -> dict:
    """Back ``dataset`` up under ``policy``; returns the committed manifest's summary."""
    from datapath.backup import run_backup

    def progress(meta: dict) -> None:
        if self.request.id:
            self.update_state(state="PROGRESS", meta=meta)

    return run_backup(current_plan(), dataset, policy, region=region, slot=slot,
                      task_id=self.request.id, progress=progress)
