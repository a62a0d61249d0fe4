"""PITR tasks (issue 5): base backups, standby creation and promotion, archive lag.

Messages carry names only (dataset, region, a data directory path); connections and keys
are resolved on the worker. The work lives in ``pitr``; these only adapt it to Celery.
"""

from __future__ import annotations

from drfleet.settings import Limits
from drfleet.workers.celery_app import app
from drfleet.workers.plan_context import current_plan

_limits = Limits.from_env()


@app.task(bind=True, name="drfleet.base_backup", label="base backup", lane="data", track_started=True,
          idempotent_on=("dataset", "policy", "slot"), audited=True,
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def base_backup(self, dataset: str, region: str, policy: str | None = None, slot: str | None = None,
                backup_type: str | None = None, workers: int | None = None) -> dict:
    """Take a physical base backup of PostgreSQL ``dataset``: with ``backup_type`` a
    file-level one (full, differential or incremental; see pitr.physical), else a
    pg_basebackup stream (see pitr.basebackup)."""
    if backup_type:
        from drfleet.pitr.physical import default_workers, run_physical_backup
        return run_physical_backup(current_plan(), dataset, backup_type=backup_type, policy=policy, region=region,
                                   slot=slot, task_id=self.request.id, workers=workers or default_workers())
    from drfleet.pitr.basebackup import run_base_backup
    return run_base_backup(current_plan(), dataset, policy=policy, region=region, slot=slot,
                           task_id=self.request.id)


@app.task(bind=True, name="drfleet.create_standby", label="create standby", lane="data", track_started=True,
          audited=True, soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def create_standby(self, dataset: str, region: str, data_dir: str, host: str | None = "local",
                   port: int | None = None, backup_id: str | None = None) -> dict:
    """Build a streaming standby of ``dataset`` in ``data_dir`` (see pitr.standby)."""
    from drfleet.pitr.standby import create_standby as create
    return create(current_plan(), dataset, data_dir=data_dir, host=host, port=port,
                  backup_id=backup_id).to_dict()


@app.task(bind=True, name="drfleet.promote_standby", label="promote standby", lane="control",
          track_started=True, audited=True)
def promote_standby(self, dataset: str, region: str, data_dir: str | None = None,
                    host: str | None = None, timeout: float = 60.0) -> dict:
    """Promote the standby of ``dataset`` and wait until it accepts writes (idempotent)."""
    from drfleet.pitr.standby import promote_standby as promote
    return promote(current_plan(), dataset, data_dir=data_dir, host=host, timeout=timeout)


@app.task(bind=True, name="drfleet.wal_lag", label="wal lag", lane="control")
def wal_lag(self, dataset: str, region: str) -> dict:
    """Measure the archive lag (achieved RPO) of ``dataset`` and export it as a metric."""
    from drfleet.pitr.rpo import measure_archive_lag
    return measure_archive_lag(current_plan(), dataset).to_dict()


@app.task(bind=True, name="drfleet.wal_copy", label="wal copy", lane="data", track_started=True,
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def wal_copy(self, dataset: str, region: str) -> dict:
    """Copy newly archived WAL of ``dataset`` to every other location its policies name,
    and export the copy lag and the per-region loss (see pitr.walcopy). Idempotent: a file
    already at a location is not copied again."""
    from drfleet.pitr.walcopy import copy_wal_everywhere, region_losses
    plan = current_plan()
    results = [r.as_dict() for r in copy_wal_everywhere(plan, dataset)]
    losses = region_losses(plan, dataset)
    return {"dataset": dataset, "copies": results,
            "if_region_lost": {loss.region: loss.loses_seconds for loss in losses}}
