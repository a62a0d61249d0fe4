"""Prune task: retention for every storage location a region looks after
(``datapath.prune.locations_of_region``), on the region's control lane.

``drfleet.prune`` is idempotent on (region, slot): beat's two sends of one slot prune once.
The per-location prune lock keeps it from overlapping a CLI prune of the same location; a
location found busy is reported in the result (the other prune does the same job), not
failed. The result carries counts and ids only.
"""

from __future__ import annotations

from drfleet.settings import Limits
from drfleet.workers.celery_app import app
from drfleet.workers.plan_context import current_plan

_limits = Limits.from_env()
LOCK_WAIT_SECONDS = 30
RESULT_IDS = 100  # deleted ids listed in a result; the audit log has them all


@app.task(bind=True, name="drfleet.prune", label="prune", lane="control", track_started=True,
          idempotent_on=("region", "slot"), audited=True,
          soft_time_limit=_limits.control_soft, time_limit=_limits.control_hard)
def prune(self, region: str, slot: str | None = None, dry_run: bool = False) -> dict:
    """Apply retention to ``region``'s locations; returns one summary per location.

    Raises PruneIncomplete after trying every location when some failed (a store or the
    state unreachable, a lock lost); what was deleted is audited and the next run finishes
    the job. A location busy with another prune is reported in the result, not raised.
    """
    from drfleet.pitr.prune import prune_region

    headers = self.request.headers or {}
    actor = headers.get("drfleet_actor") or ("beat" if headers.get("celery_beat_task") else "api")
    reports = prune_region(current_plan(), region, dry_run=dry_run, actor=actor, wait_seconds=LOCK_WAIT_SECONDS)
    locations = []
    for report in reports:
        summary = report.to_dict(verdicts=False)
        summary["deleted_count"] = len(summary["deleted"])
        summary["deleted"] = summary["deleted"][:RESULT_IDS]
        locations.append(summary)
    return {"region": region, "slot": slot, "dry_run": dry_run, "locations": locations}
